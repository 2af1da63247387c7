// Fault injection for the crash tests, from outside the program under test: an LD_PRELOAD library
// that replaces libc's rename(). With XFER_TEST_CRASH_ON_RENAME=<substring>:<n>, the n-th rename
// whose destination contains <substring> kills the process with status 137 (as `kill -9` would
// look to a shell) after the temp file is complete and before it replaces the target, i.e. at the
// worst moment of an atomic write. Every other rename is passed to the real one. std::filesystem::rename
// ends in rename(3), so the program and the library under test need no hook.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {
using RenameFn = int (*)(const char*, const char*);

RenameFn real_rename() {
  static RenameFn fn = reinterpret_cast<RenameFn>(dlsym(RTLD_NEXT, "rename"));
  return fn;
}

struct Plan {
  std::string needle;
  int nth = 0;
  int seen = 0;
};

Plan& plan() {
  static Plan p = [] {
    Plan q;
    if (const char* spec = std::getenv("XFER_TEST_CRASH_ON_RENAME")) {
      const std::string s = spec;
      const auto colon = s.rfind(':');
      if (colon == std::string::npos || colon == 0) {
        std::fprintf(stderr, "crash_on_rename: XFER_TEST_CRASH_ON_RENAME='%s', expected <substring>:<n>\n", spec);
        std::_Exit(2);
      }
      q.needle = s.substr(0, colon);
      q.nth = std::atoi(s.c_str() + colon + 1);
    }
    return q;
  }();
  return p;
}
}  // namespace

extern "C" int rename(const char* from, const char* to) {
  Plan& p = plan();
  if (p.nth > 0 && to != nullptr && std::strstr(to, p.needle.c_str()) != nullptr && ++p.seen == p.nth) {
    std::fprintf(stderr, "crash_on_rename: killing the process before rename #%d to '%s'\n", p.seen, to);
    std::fflush(nullptr);
    _exit(137);
  }
  return real_rename()(from, to);
}
