// Training curves as an SVG picture: loss per epoch (left) and accuracy per epoch (right), train
// versus validation — the two plots people look at. Self-contained SVG, viewable in any browser.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "xfer/io/atomic_file.hpp"
#include "xfer/train/metrics.hpp"

namespace xfer::train {

namespace detail {
struct Series {
  std::string name, color;
  std::vector<double> y;
};

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// "Nice" axis ticks covering [lo, hi].
inline std::vector<double> ticks(double lo, double hi, int target = 5) {
  const double span = std::max(hi - lo, 1e-12);
  const double raw = span / target, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3 ? 2 * mag : raw / mag < 7 ? 5 * mag : 10 * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) t.push_back(v);
  return t;
}

inline std::string panel(double x0, double y0, double w, double h, const std::string& title, const std::string& ylabel,
                         const std::vector<Series>& series, int epochs, bool percent) {
  // Curves fall (loss) or rise (accuracy) to the right: put the legend where they usually are not.
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series)
    for (double v : s.y)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
  if (percent) lo = std::max(lo, 0.0), hi = std::min(hi, 1.0);
  const double L = x0 + 60, R = x0 + w - 15, T = y0 + 30, B = y0 + h - 45;
  auto X = [&](double e) { return epochs > 1 ? L + (e - 1) / (epochs - 1) * (R - L) : (L + R) / 2; };
  auto Y = [&](double v) { return B - (v - lo) / (hi - lo) * (B - T); };
  std::string s;
  s += "<text x='" + fmt("%.1f", (L + R) / 2) + "' y='" + fmt("%.1f", y0 + 18) +
       "' text-anchor='middle' font-size='15' font-weight='bold'>" + title + "</text>\n";
  s += "<rect x='" + fmt("%.1f", L) + "' y='" + fmt("%.1f", T) + "' width='" + fmt("%.1f", R - L) + "' height='" +
       fmt("%.1f", B - T) + "' fill='none' stroke='#333'/>\n";
  for (double t : ticks(lo, hi)) {
    s += "<line x1='" + fmt("%.1f", L) + "' x2='" + fmt("%.1f", R) + "' y1='" + fmt("%.1f", Y(t)) + "' y2='" +
         fmt("%.1f", Y(t)) + "' stroke='#ddd'/>\n";
    s += "<text x='" + fmt("%.1f", L - 6) + "' y='" + fmt("%.1f", Y(t) + 4) + "' text-anchor='end' font-size='11'>" +
         (percent ? fmt("%.0f%%", 100 * t) : fmt("%.3g", t)) + "</text>\n";
  }
  const int step = std::max(1, epochs / 10);
  for (int e = 1; e <= epochs; e += step)
    s += "<text x='" + fmt("%.1f", X(e)) + "' y='" + fmt("%.1f", B + 16) + "' text-anchor='middle' font-size='11'>" +
         std::to_string(e) + "</text>\n";
  s += "<text x='" + fmt("%.1f", (L + R) / 2) + "' y='" + fmt("%.1f", B + 34) +
       "' text-anchor='middle' font-size='12'>epoch</text>\n";
  s += "<text transform='translate(" + fmt("%.1f", x0 + 16) + "," + fmt("%.1f", (T + B) / 2) +
       ") rotate(-90)' text-anchor='middle' font-size='12'>" + ylabel + "</text>\n";
  double ly = percent ? B - 14 - 16 * static_cast<double>(series.size() - 1) : T + 14;
  for (const auto& sr : series) {
    std::string pts;
    for (size_t i = 0; i < sr.y.size(); ++i)
      if (std::isfinite(sr.y[i])) pts += fmt("%.1f", X(static_cast<double>(i + 1))) + "," + fmt("%.1f", Y(sr.y[i])) + " ";
    s += "<polyline fill='none' stroke='" + sr.color + "' stroke-width='2' points='" + pts + "'/>\n";
    for (size_t i = 0; i < sr.y.size(); ++i)
      if (std::isfinite(sr.y[i]))
        s += "<circle cx='" + fmt("%.1f", X(static_cast<double>(i + 1))) + "' cy='" + fmt("%.1f", Y(sr.y[i])) +
             "' r='3' fill='" + sr.color + "'/>\n";
    s += "<line x1='" + fmt("%.1f", R - 110) + "' x2='" + fmt("%.1f", R - 90) + "' y1='" + fmt("%.1f", ly) + "' y2='" +
         fmt("%.1f", ly) + "' stroke='" + sr.color + "' stroke-width='2'/>\n";
    s += "<text x='" + fmt("%.1f", R - 85) + "' y='" + fmt("%.1f", ly + 4) + "' font-size='12'>" + sr.name + "</text>\n";
    ly += 16;
  }
  return s;
}
}  // namespace detail

// The SVG document for a history (at least one epoch).
inline std::string curves_svg(const std::vector<EpochMetrics>& history, const std::string& title = "training curves") {
  std::vector<double> tl, vl, ta, va;
  for (const auto& m : history) {
    tl.push_back(m.train_loss);
    vl.push_back(m.val_loss);
    ta.push_back(m.train_acc);
    va.push_back(m.val_acc);
  }
  const int epochs = static_cast<int>(history.size());
  std::string s = "<?xml version='1.0' encoding='UTF-8'?>\n"
                  "<svg xmlns='http://www.w3.org/2000/svg' width='900' height='380' font-family='sans-serif'>\n"
                  "<rect width='100%' height='100%' fill='white'/>\n<title>" + title + "</title>\n";
  s += detail::panel(0, 0, 450, 380, "Loss", "cross-entropy",
                     {{"train", "#1f77b4", tl}, {"validation", "#d62728", vl}}, epochs, false);
  s += detail::panel(450, 0, 450, 380, "Accuracy", "accuracy",
                     {{"train", "#1f77b4", ta}, {"validation", "#d62728", va}}, epochs, true);
  return s + "</svg>\n";
}

inline void write_curves_svg(const std::filesystem::path& path, const std::vector<EpochMetrics>& history) {
  io::write_file_atomic(path, curves_svg(history));
}

}  // namespace xfer::train
