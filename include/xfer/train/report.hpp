// Evaluation you can read: top-1 and top-5 accuracy, per-class accuracy, a confusion matrix (rows =
// true class, columns = predicted) and each sample's prediction, from one eval-mode pass; written as
// confusion.csv and a confusion.svg heat map, printed as a short table.
// The one thing to know: the loader must not shuffle — predictions[i] belongs to dataset sample i.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/data/loader.hpp"
#include "xfer/io/atomic_file.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::train {

struct ClassReport {
  std::vector<std::string> class_names;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  std::vector<int32_t> predictions;             // argmax per sample, in dataset order
  int64_t samples = 0, top1_correct = 0, top5_correct = 0;
  double loss = NAN;

  double top1() const { return samples ? static_cast<double>(top1_correct) / static_cast<double>(samples) : NAN; }
  double top5() const { return samples ? static_cast<double>(top5_correct) / static_cast<double>(samples) : NAN; }
  int64_t class_total(size_t c) const {
    int64_t n = 0;
    for (int64_t v : confusion[c]) n += v;
    return n;
  }
  double class_accuracy(size_t c) const {
    const int64_t n = class_total(c);
    return n ? static_cast<double>(confusion[c][c]) / static_cast<double>(n) : NAN;
  }
};

// Top-k with k = min(5, classes): the label is among the k largest logits (ties counted against).
template <class T>
ClassReport class_report(nn::Module<T>& model, data::Loader<T>& loader) {
  XFER_CHECK(!loader.options().shuffle, "class_report: the loader shuffles; predictions must follow dataset order");
  model.eval();
  loader.set_state({loader.epoch(), 0});
  ClassReport r;
  r.class_names = loader.dataset().class_names();
  const size_t C = r.class_names.size();
  r.confusion.assign(C, std::vector<int64_t>(C, 0));
  double loss_sum = 0;
  for (auto& batch : loader) {
    const Tensor<T>& logits = model.forward(batch.x);
    XFER_CHECK(logits.ndim() == 2 && logits.dim(1) == static_cast<int64_t>(C), "class_report: the model gives ",
               shape_str(logits.shape()), " logits for ", C, " classes");
    loss_sum += static_cast<double>(nn::cross_entropy(logits, batch.y).loss) * static_cast<double>(batch.x.dim(0));
    const auto pred = nn::argmax(logits);
    for (int64_t i = 0; i < logits.dim(0); ++i) {
      const T* z = logits.data() + i * static_cast<int64_t>(C);
      const int32_t y = batch.y[static_cast<size_t>(i)];
      int64_t above = 0;
      for (size_t c = 0; c < C; ++c) above += z[c] > z[y] || (z[c] == z[y] && static_cast<int32_t>(c) < y);
      r.top5_correct += above < 5;
      r.top1_correct += pred[static_cast<size_t>(i)] == y;
      ++r.confusion[static_cast<size_t>(y)][static_cast<size_t>(pred[static_cast<size_t>(i)])];
      r.predictions.push_back(pred[static_cast<size_t>(i)]);
    }
    r.samples += logits.dim(0);
  }
  r.loss = r.samples ? loss_sum / static_cast<double>(r.samples) : NAN;
  return r;
}

inline std::string confusion_csv(const ClassReport& r) {
  std::string s = "true\\predicted";
  for (const auto& n : r.class_names) s.append(",").append(n);
  s += ",accuracy\n";
  char buf[32];
  for (size_t i = 0; i < r.class_names.size(); ++i) {
    s += r.class_names[i];
    for (int64_t v : r.confusion[i]) s.append(",").append(std::to_string(v));
    std::snprintf(buf, sizeof buf, ",%.4f\n", r.class_accuracy(i));
    s += buf;
  }
  return s;
}

inline std::string svg_escape(const std::string& in) {
  std::string s;
  for (char c : in) {
    if (c == '<') s += "&lt;";
    else if (c == '>') s += "&gt;";
    else if (c == '&') s += "&amp;";
    else if (c == '"') s += "&quot;";
    else s += c;
  }
  return s;
}

// A heat map of the row-normalised confusion matrix, counts written in the cells.
inline std::string confusion_svg(const ClassReport& r) {
  const int C = static_cast<int>(r.class_names.size());
  const int cell = C <= 10 ? 44 : C <= 30 ? 24 : 12, left = 110, top = 110;
  const int W = left + C * cell + 20, H = top + C * cell + 40;
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(W) + "\" height=\"" +
                  std::to_string(H) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  char buf[512];
  std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"16\" font-size=\"13\">confusion (top-1 %.2f%%, top-5 %.2f%%, %lld images)</text>\n",
                8, 100 * r.top1(), 100 * r.top5(), static_cast<long long>(r.samples));
  s += buf;
  s += "<text x=\"" + std::to_string(left) + "\" y=\"34\">predicted &#8594;</text>\n";
  s += "<text x=\"8\" y=\"" + std::to_string(top - 6) + "\">true &#8595;</text>\n";
  for (int i = 0; i < C; ++i) {
    const std::string name = svg_escape(r.class_names[static_cast<size_t>(i)]);
    std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 4,
                  top + i * cell + cell / 2 + 4, name.c_str());
    s += buf;
    std::snprintf(buf, sizeof buf, "<text transform=\"translate(%d,%d) rotate(-60)\">%s</text>\n",
                  left + i * cell + cell / 2, top - 4, name.c_str());
    s += buf;
    const int64_t total = r.class_total(static_cast<size_t>(i));
    for (int j = 0; j < C; ++j) {
      const int64_t v = r.confusion[static_cast<size_t>(i)][static_cast<size_t>(j)];
      const double f = total ? static_cast<double>(v) / static_cast<double>(total) : 0.0;
      const int shade = static_cast<int>(std::lround(255 * (1 - f)));
      std::snprintf(buf, sizeof buf,
                    "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,255)\" stroke=\"#ccc\"/>\n",
                    left + j * cell, top + i * cell, cell, cell, shade, shade);
      s += buf;
      if (cell >= 24) {
        std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%lld</text>\n",
                      left + j * cell + cell / 2, top + i * cell + cell / 2 + 4, f > 0.5 ? "white" : "black",
                      static_cast<long long>(v));
        s += buf;
      }
    }
  }
  return s + "</svg>\n";
}

// Writes DIR/confusion.csv and DIR/confusion.svg (each atomically).
inline void write_class_report(const std::filesystem::path& dir, const ClassReport& r) {
  io::write_file_atomic(dir / "confusion.csv", confusion_csv(r));
  io::write_file_atomic(dir / "confusion.svg", confusion_svg(r));
}

// "top-1 71.20%  top-5 100.00%" and one "  class  acc  (n)" line per class.
inline void print_class_report(const ClassReport& r, FILE* out = stdout) {
  std::fprintf(out, "top-1 %.2f%%  top-5 %.2f%%  (%lld images)\n", 100 * r.top1(), 100 * r.top5(),
               static_cast<long long>(r.samples));
  for (size_t c = 0; c < r.class_names.size(); ++c)
    std::fprintf(out, "  %-16s %6.2f%%  (%lld)\n", r.class_names[c].c_str(), 100 * r.class_accuracy(c),
                 static_cast<long long>(r.class_total(c)));
}

inline nlohmann::json to_json(const ClassReport& r) {
  nlohmann::json per = nlohmann::json::object();
  for (size_t c = 0; c < r.class_names.size(); ++c) per[r.class_names[c]] = r.class_accuracy(c);
  return {{"top1", r.top1()}, {"top5", r.top5()}, {"samples", r.samples}, {"per_class", per}, {"confusion", r.confusion}};
}

}  // namespace xfer::train
