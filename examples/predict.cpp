// predict: classify images with a model file alone (architecture, classes and preprocessing come
// from its metadata; see io/model_info.hpp).
//
//   predict --model runs/ft/best.safetensors photo.jpg photos/ [--top 5] [--json]
//   predict --model runs/ft/best.safetensors --eval labelled_root/ [--out DIR]
//
// One line (or JSON object) per image: the top classes with softmax probabilities. Folders are
// searched recursively and classified in batches. An image that does not decode is reported on its
// own line and the run goes on (exit status 2 at the end if any failed). --eval prints top-1/top-5,
// per-class accuracy and writes DIR/confusion.csv and DIR/confusion.svg.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <xfer/xfer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;
using namespace xfer;

struct Config {
  std::string model, eval_dir, out;
  std::vector<std::string> inputs;
  int top = 5, threads = 0;
  int64_t batch = 64;
  bool json = false;
};

std::vector<fs::path> collect(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const auto& in : inputs) {
    XFER_CHECK(fs::exists(in), "predict: ", in, " does not exist");
    if (!fs::is_directory(in)) {
      files.emplace_back(in);
      continue;
    }
    std::vector<fs::path> found;
    for (const auto& e : fs::recursive_directory_iterator(in, fs::directory_options::follow_directory_symlink))
      if (e.is_regular_file() && data::ImageFolder::is_image_file(e.path())) found.push_back(e.path());
    std::sort(found.begin(), found.end());
    XFER_CHECK(!found.empty(), "predict: no images in ", in);
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

int classify(const Config& c, models::LoadedModel<float>& m) {
  const auto files = collect(c.inputs);
  const auto tf = m.info.eval.transforms();
  const int k = std::min<int>(c.top, static_cast<int>(m.info.num_classes));
  int failed = 0;
  for (size_t start = 0; start < files.size(); start += static_cast<size_t>(c.batch)) {
    const size_t n = std::min(files.size() - start, static_cast<size_t>(c.batch));
    std::vector<Tensor<float>> inputs(n);
    std::vector<std::string> errors(n);
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      try {
        Rng unused(0);
        tf(m.info.eval.load(data::decode_image(files[start + static_cast<size_t>(i)])), unused, inputs[static_cast<size_t>(i)]);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(i)] = e.what();
      }
    }
    // Stack runs of equally sized inputs into batches (sizes differ only without a crop).
    size_t i = 0;
    while (i < n) {
      if (!errors[i].empty()) {
        ++failed;
        if (c.json) std::cout << nlohmann::json{{"file", files[start + i].string()}, {"error", errors[i]}}.dump() << "\n";
        else std::cout << files[start + i].string() << "\terror: " << errors[i] << "\n";
        ++i;
        continue;
      }
      size_t j = i;
      while (j < n && errors[j].empty() && inputs[j].shape() == inputs[i].shape()) ++j;
      const Shape& s = inputs[i].shape();
      Tensor<float> x({static_cast<int64_t>(j - i), s[0], s[1], s[2]});
      for (size_t q = i; q < j; ++q) std::copy(inputs[q].begin(), inputs[q].end(), x.data() + (q - i) * inputs[q].numel());
      const Tensor<float>& logits = m.net->forward(x);
      const int64_t C = logits.dim(1);
      for (size_t q = i; q < j; ++q) {
        const float* z = logits.data() + static_cast<int64_t>(q - i) * C;
        const float mx = *std::max_element(z, z + C);
        std::vector<double> p(static_cast<size_t>(C));
        double sum = 0;
        for (int64_t t = 0; t < C; ++t) sum += p[static_cast<size_t>(t)] = std::exp(static_cast<double>(z[t] - mx));
        std::vector<int64_t> order(static_cast<size_t>(C));
        for (int64_t t = 0; t < C; ++t) order[static_cast<size_t>(t)] = t;
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return z[a] > z[b]; });
        const std::string file = files[start + q].string();
        if (c.json) {
          nlohmann::json top = nlohmann::json::array();
          for (int t = 0; t < k; ++t)
            top.push_back({{"class", m.info.class_names[static_cast<size_t>(order[static_cast<size_t>(t)])]},
                           {"index", order[static_cast<size_t>(t)]},
                           {"prob", p[static_cast<size_t>(order[static_cast<size_t>(t)])] / sum}});
          std::cout << nlohmann::json{{"file", file}, {"top", top}}.dump() << "\n";
        } else {
          std::cout << file;
          for (int t = 0; t < k; ++t) {
            const auto o = static_cast<size_t>(order[static_cast<size_t>(t)]);
            std::printf("\t%s %.4f", m.info.class_names[o].c_str(), p[o] / sum);
            std::fflush(stdout);
          }
          std::cout << "\n";
        }
      }
      i = j;
    }
    std::cout.flush();
  }
  if (failed) std::fprintf(stderr, "predict: %d of %zu image(s) could not be read\n", failed, files.size());
  return failed ? 2 : 0;
}

int evaluate(const Config& c, models::LoadedModel<float>& m) {
  data::ImageFolder folder(c.eval_dir, {.height = m.info.eval.load_height, .width = m.info.eval.load_width});
  XFER_CHECK(folder.class_names() == m.info.class_names, "predict --eval: ", c.eval_dir,
             " has other classes than the model (the folder's sub-folders must be exactly the model's ",
             m.info.num_classes, " classes)");
  data::Loader<float> loader(folder, m.info.eval.transforms(), data::LoaderOptions{.batch_size = c.batch});
  auto r = train::class_report(*m.net, loader);
  train::print_class_report(r);
  const fs::path out = c.out.empty() ? fs::path(".") : fs::path(c.out);
  fs::create_directories(out);
  train::write_class_report(out, r);
  std::printf("wrote %s and %s\n", (out / "confusion.csv").c_str(), (out / "confusion.svg").c_str());
  if (c.json) std::cout << train::to_json(r).dump() << std::endl;
  return 0;
}

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Classify images with a self-describing model file"};
  app.add_option("--model", c.model, "Model file written by finetune/pretrain (best.safetensors)")->required();
  app.add_option("inputs", c.inputs, "Image files and/or folders");
  app.add_option("--data,--eval", c.eval_dir, "Evaluate on a labelled folder root/<class>/<image> instead");
  app.add_option("--out", c.out, "Where --eval writes confusion.csv/.svg (default: .)");
  app.add_option("--top", c.top, "Classes per image")->check(CLI::Range(1, 100000));
  app.add_option("--batch", c.batch, "Batch size")->check(CLI::Range(1, 65536));
  app.add_option("--threads", c.threads, "OpenMP threads (default: all cores or XFER_NUM_THREADS)");
  app.add_flag("--json", c.json, "One JSON object per image");
  CLI11_PARSE(app, argc, argv);
  try {
    if (c.threads > 0) set_num_threads(c.threads);
    else threads_from_env();
    XFER_CHECK(!c.inputs.empty() || !c.eval_dir.empty(), "predict: give image files/folders or --eval DIR");
    auto m = models::load<float>(c.model);
    nn::prepare_inference(*m.net);
    return c.eval_dir.empty() ? classify(c, m) : evaluate(c, m);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "predict: error: %s\n", e.what());
    return 1;
  }
}
