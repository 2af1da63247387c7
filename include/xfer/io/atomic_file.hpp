// write_file_atomic: replaces a file's contents all at once (temp file in the same directory, then
// rename), so a reader or a crash never sees a half-written metrics file, plot or checkpoint sidecar.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "xfer/core/error.hpp"

namespace xfer::io {

inline void write_file_atomic(const std::filesystem::path& path, std::string_view content) {
  const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    XFER_CHECK(out.good(), "write_file_atomic: cannot open '", tmp.string(), "' for writing");
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out.good()) {
      out.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw Error("write_file_atomic: writing '" + tmp.string() + "' failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw Error("write_file_atomic: cannot rename '" + tmp.string() + "' to '" + path.string() + "'");
  }
}

}  // namespace xfer::io
