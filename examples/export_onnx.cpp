// export_onnx: writes a model as an ONNX file (io::save_onnx) for ONNX Runtime, OpenVINO, TensorRT...
//
//   export_onnx --weights runs/ft/best.safetensors --out model.onnx          (architecture from the file)
//   export_onnx --model resnet18 --num-classes 10 --weights w.safetensors --image-size 224 --out r18.onnx
//   export_onnx --model conv4 --num-classes 5 --image-size 84 --out conv4.onnx    (random weights)
//
// The batch dimension is symbolic ("N"); BatchNorm2d becomes BatchNormalization unless --fold-bn.
#include <CLI/CLI.hpp>
#include <xfer/io/onnx.hpp>
#include <xfer/xfer.hpp>

#include <cstdio>

using namespace xfer;

int main(int argc, char** argv) {
  std::string model, weights, out = "model.onnx";
  int64_t num_classes = 1000, image_size = 0, opset = 17;
  bool fold_bn = false;
  CLI::App app{"Export an xfer model to ONNX"};
  std::vector<std::string> names = models::model_names();
  names.push_back("conv4");
  app.add_option("--model", model, "Architecture (default: from --weights' metadata)")->check(CLI::IsMember(names));
  app.add_option("--weights", weights, "xfer model file or safetensors with torchvision names (default: random weights)");
  app.add_option("--num-classes", num_classes, "Classes of the head (with --model)")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--image-size", image_size, "Input side (default: the file's input size, else 224; 32 for -cifar and conv4)")
      ->check(CLI::Range(8, 4096));
  app.add_option("--opset", opset, "ONNX opset")->check(CLI::Range(11, 17));
  app.add_flag("--fold-bn", fold_bn, "Fold BatchNorm into the convolutions");
  app.add_option("--out", out, "Output .onnx file");
  CLI11_PARSE(app, argc, argv);
  try {
    std::shared_ptr<nn::Module<float>> net;
    if (model.empty()) {  // the file says what it is
      XFER_CHECK(!weights.empty(), "give --model, or --weights with an xfer model file");
      auto loaded = models::load<float>(weights);
      net = loaded.net;
      model = loaded.info.architecture;
      if (image_size == 0) image_size = loaded.info.input_height;
    } else {
      if (image_size == 0) image_size = model == "conv4" || model.ends_with("-cifar") ? 32 : 224;
      if (model == "conv4") net = models::conv4<float>({.image_size = image_size, .num_classes = num_classes});
      else net = models::create<float>(model, {.num_classes = num_classes});
      if (!weights.empty()) std::printf("weights %s: %s\n", weights.c_str(), io::load_safetensors(*net, weights).summary().c_str());
    }
    net->eval();
    io::save_onnx(*net, out, {.input_shape = {3, image_size, image_size}, .opset = opset, .fold_batchnorm = fold_bn});
    std::printf("wrote %s: %s, input [N, 3, %lld, %lld], %lld parameters, opset %lld%s\n", out.c_str(), model.c_str(),
                static_cast<long long>(image_size), static_cast<long long>(image_size),
                static_cast<long long>(net->num_parameters()), static_cast<long long>(opset), fold_bn ? ", BN folded" : "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "export_onnx: error: %s\n", e.what());
    return 1;
  }
}
