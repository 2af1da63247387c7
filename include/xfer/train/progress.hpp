// ProgressBar: one line per epoch that redraws in place on a terminal (batches, loss, img/s, ETA)
// and degrades to a plain line every 10% when stdout is a pipe or a file (CI logs, `| tee`).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace xfer::train {

struct ProgressOptions {
  std::string label = "train";
  int64_t total_batches = 0;
  FILE* out = stdout;
  // Redraw in place (terminal) or print plain lines; defaults to whether `out` is a terminal.
  int interactive = -1;
  int plain_every_percent = 10;
  int width = 28;
};

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

class ProgressBar {
 public:
  explicit ProgressBar(ProgressOptions o) : opt_(std::move(o)), start_(clock::now()) {
    if (opt_.interactive < 0) opt_.interactive = ::isatty(::fileno(opt_.out)) ? 1 : 0;
    if (opt_.plain_every_percent < 1) opt_.plain_every_percent = 1;
    next_percent_ = opt_.plain_every_percent;
  }

  // Call after each batch with the number of batches and images done so far and the running loss.
  void update(int64_t batches_done, int64_t images_done, double running_loss) {
    const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    const double ips = elapsed > 0 ? static_cast<double>(images_done) / elapsed : 0;
    const double eta = batches_done > 0 ? elapsed / static_cast<double>(batches_done) *
                                              static_cast<double>(opt_.total_batches - batches_done)
                                        : -1;
    const int percent = opt_.total_batches > 0 ? static_cast<int>(100 * batches_done / opt_.total_batches) : 100;
    if (opt_.interactive) {
      const int filled = opt_.total_batches > 0 ? static_cast<int>(opt_.width * batches_done / opt_.total_batches) : opt_.width;
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(static_cast<size_t>(opt_.width), '.');
      std::fprintf(opt_.out, "\r%s [%s] %lld/%lld loss %.4f  %.0f img/s  ETA %s ", opt_.label.c_str(), bar.c_str(),
                   static_cast<long long>(batches_done), static_cast<long long>(opt_.total_batches), running_loss, ips,
                   format_duration(eta).c_str());
      std::fflush(opt_.out);
      drawn_ = true;
    } else if (percent >= next_percent_ || batches_done == opt_.total_batches) {
      std::fprintf(opt_.out, "%s %3d%% %lld/%lld loss %.4f  %.0f img/s  ETA %s\n", opt_.label.c_str(), percent,
                   static_cast<long long>(batches_done), static_cast<long long>(opt_.total_batches), running_loss, ips,
                   format_duration(eta).c_str());
      std::fflush(opt_.out);
      while (next_percent_ <= percent) next_percent_ += opt_.plain_every_percent;
    }
  }
  // Ends the in-place line (no-op for plain output).
  void finish() {
    if (opt_.interactive && drawn_) {
      std::fputc('\n', opt_.out);
      std::fflush(opt_.out);
      drawn_ = false;
    }
  }
  double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

 private:
  using clock = std::chrono::steady_clock;
  ProgressOptions opt_;
  clock::time_point start_;
  int next_percent_ = 10;  // set from the options in the constructor
  bool drawn_ = false;
};

}  // namespace xfer::train
