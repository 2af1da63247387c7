// Test helper: a committed JSON fixture from tests/fixtures/, parsed once per test program.
#pragma once

#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

inline const nlohmann::json& fixture_json(const std::string& file) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(file);
  if (it == cache.end()) {
    std::ifstream in(std::string(XFER_FIXTURE_DIR) + "/" + file);
    REQUIRE(in.good());
    it = cache.emplace(file, nlohmann::json::parse(in)).first;
  }
  return it->second;
}
