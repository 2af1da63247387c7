// xfer::Error and the XFER_CHECK macro.
// Every failure the library can diagnose throws xfer::Error with a message that says what was
// wrong, where (layer, file, key) and what was expected versus what was found.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace xfer {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

}  // namespace xfer

// Throws xfer::Error built from the streamed pieces when `cond` is false.
#define XFER_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) throw ::xfer::Error(::xfer::detail::concat(__VA_ARGS__)); \
  } while (0)
