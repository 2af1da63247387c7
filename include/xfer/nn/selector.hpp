// Selector: picks parameters (or modules) by dotted name, for freeze/unfreeze and optimizer groups.
// A plain string is a module prefix ("layer4" matches "layer4.0.conv1.weight", never "layer40.x");
// a string with '*' or '?' is a glob over the whole name ("layer*.bn?.weight").
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xfer::nn {

namespace detail {
inline bool glob_match(std::string_view pat, std::string_view s) {
  size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && (pat[p] == '?' || pat[p] == s[i])) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

inline bool prefix_match(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return true;
  if (name.size() < prefix.size() || name.substr(0, prefix.size()) != prefix) return false;
  return name.size() == prefix.size() || name[prefix.size()] == '.';
}
}  // namespace detail

class Selector {
 public:
  Selector(std::string description, std::function<bool(std::string_view)> match)
      : description_(std::move(description)), match_(std::move(match)) {}
  // A prefix, or a glob when the pattern contains '*' or '?'.
  Selector(std::string pattern) : description_("'" + pattern + "'") {  // NOLINT: implicit on purpose
    if (pattern.find_first_of("*?") != std::string::npos)
      match_ = [pattern](std::string_view n) { return detail::glob_match(pattern, n); };
    else
      match_ = [pattern](std::string_view n) { return detail::prefix_match(pattern, n); };
  }
  Selector(const char* pattern) : Selector(std::string(pattern)) {}  // NOLINT

  bool operator()(std::string_view name) const { return match_(name); }
  const std::string& description() const { return description_; }

 private:
  std::string description_;
  std::function<bool(std::string_view)> match_;
};

inline Selector all() {
  return Selector("all parameters", [](std::string_view) { return true; });
}
// Any of several patterns.
inline Selector any_of(std::vector<Selector> sels) {
  std::string d = "any of (";
  for (size_t i = 0; i < sels.size(); ++i) d += (i ? ", " : "") + sels[i].description();
  d += ")";
  return Selector(d, [sels = std::move(sels)](std::string_view n) {
    for (const auto& s : sels)
      if (s(n)) return true;
    return false;
  });
}
// Everything the given pattern does not match: freeze(all_except("fc")) trains only the head.
inline Selector all_except(Selector keep) {
  std::string d = "all except " + keep.description();
  return Selector(d, [keep = std::move(keep)](std::string_view n) { return !keep(n); });
}

}  // namespace xfer::nn
