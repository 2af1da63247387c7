// classify: inference with pretrained safetensors weights (torchvision / timm key names).
//   classify --weights resnet18.safetensors --image cat.jpg [--top 5] [--model resnet18] [--num-classes 1000]
//   classify --weights W.safetensors --model resnet18 --num-classes N --input-tensor IN.safetensors --output OUT.safetensors
// Image mode applies ImageNet preprocessing (resize the shorter side to 256, bilinear with
// antialiasing as torchvision's Resize on tensors; center-crop 224; normalise with the ImageNet
// mean/std) and prints the top-k class indices and softmax probabilities. Tensor mode reads the
// NCHW float tensor `input`, runs the model in eval mode and writes the tensor `logits`.
#include <CLI/CLI.hpp>
#include <xfer/xfer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>

namespace {

std::vector<std::string> read_labels(const std::string& path) {
  std::vector<std::string> labels;
  if (path.empty()) return labels;
  std::ifstream in(path);
  XFER_CHECK(in.good(), "classify: cannot open the labels file '", path, "'");
  for (std::string line; std::getline(in, line);) labels.push_back(line);
  return labels;
}

xfer::Tensor<float> imagenet_preprocess(const std::string& path) {
  using namespace xfer::data;
  const Image img = decode_image(path);
  const Compose pipeline(Resize(256), CenterCrop(224), Normalize({0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}));
  xfer::Rng unused;
  xfer::Tensor<float> x = pipeline(img, unused);
  x.reshape({1, x.dim(0), x.dim(1), x.dim(2)});
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Classify an image (or a tensor file) with safetensors weights"};
  std::string weights, image, input_tensor, output, model = "resnet18", labels_file;
  int64_t num_classes = 1000;
  int top = 5, threads = 0;
  bool non_strict = false;
  app.add_option("--weights", weights, "safetensors file with torchvision/timm key names")->required()->check(CLI::ExistingFile);
  auto* img_opt = app.add_option("--image", image, "JPEG/PNG/BMP image to classify")->check(CLI::ExistingFile);
  auto* in_opt = app.add_option("--input-tensor", input_tensor, "safetensors file holding tensor 'input' (NCHW float)")
                     ->check(CLI::ExistingFile);
  auto* out_opt = app.add_option("--output", output, "with --input-tensor: write tensor 'logits' here");
  img_opt->excludes(in_opt);
  in_opt->needs(out_opt);
  out_opt->needs(in_opt);
  app.add_option("--model", model, "Model name")->check(CLI::IsMember(xfer::models::model_names()));
  app.add_option("--num-classes", num_classes, "Classes of the head in the weights file")->check(CLI::PositiveNumber);
  app.add_option("--top", top, "How many classes to print")->check(CLI::PositiveNumber);
  app.add_option("--labels", labels_file, "Optional text file with one class name per line");
  app.add_flag("--non-strict", non_strict, "Load what matches instead of requiring every key and shape");
  app.add_option("--threads", threads, "OpenMP threads (default: all cores or XFER_NUM_THREADS)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  if (image.empty() && input_tensor.empty()) {
    std::cerr << "classify: give --image IMG or --input-tensor IN --output OUT\n";
    return 2;
  }

  try {
    if (threads > 0) xfer::set_num_threads(threads);
    auto net = xfer::models::create<float>(model, {.num_classes = num_classes});
    const xfer::io::LoadReport report = xfer::io::load_safetensors(net, weights, {.strict = !non_strict});
    if (!report.complete()) std::cerr << "classify: partial load: " << report.summary() << "\n";
    net->eval();

    if (!input_tensor.empty()) {
      xfer::io::SafetensorsReader in(input_tensor);
      const xfer::Tensor<float> x = in.read_tensor<float>("input");
      XFER_CHECK(x.ndim() == 4 && x.dim(1) == 3, "classify: tensor 'input' in '", input_tensor,
                 "' must be NCHW with 3 channels, got shape ", xfer::shape_str(x.shape()));
      const xfer::Tensor<float>& logits = net->forward(x);
      xfer::io::write_safetensors(output, {xfer::io::view("logits", logits)}, {{"model", model}, {"weights", weights}});
      std::printf("wrote logits %s to %s\n", xfer::shape_str(logits.shape()).c_str(), output.c_str());
      return 0;
    }

    const auto labels = read_labels(labels_file);
    const xfer::Tensor<float>& logits = net->forward(imagenet_preprocess(image));
    const int64_t C = logits.dim(1);
    std::vector<double> prob(static_cast<size_t>(C));
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += prob[static_cast<size_t>(c)] = std::exp(logits[c] - mx);
    for (auto& p : prob) p /= sum;
    std::vector<int64_t> order(static_cast<size_t>(C));
    std::iota(order.begin(), order.end(), 0);
    const int64_t k = std::min<int64_t>(top, C);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return prob[static_cast<size_t>(a)] > prob[static_cast<size_t>(b)]; });
    std::printf("%-5s %-6s %-10s %s\n", "rank", "class", "prob", labels.empty() ? "" : "label");
    for (int64_t r = 0; r < k; ++r) {
      const int64_t c = order[static_cast<size_t>(r)];
      std::printf("%-5lld %-6lld %-10.6f %s\n", static_cast<long long>(r + 1), static_cast<long long>(c),
                  prob[static_cast<size_t>(c)], static_cast<size_t>(c) < labels.size() ? labels[static_cast<size_t>(c)].c_str() : "");
    }
  } catch (const std::exception& e) {
    std::cerr << "classify: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
