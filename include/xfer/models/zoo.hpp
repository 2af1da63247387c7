// The model zoo by name, for command-line tools: resnet18, resnet18-cifar, resnet34, resnet50,
// vgg11, vgg13, vgg16, mobilenet_v3_large, mobilenet_v3_small, efficientnet_b0 (torchvision
// layouts) and vgg11-cifar, vgg13-cifar, vgg16-cifar (512 -> classes head).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "xfer/models/efficientnet.hpp"
#include "xfer/models/mobilenet.hpp"
#include "xfer/models/resnet.hpp"
#include "xfer/models/vgg.hpp"

namespace xfer::models {

inline std::vector<std::string> model_names() {
  return {"resnet18",    "resnet18-cifar", "resnet34",    "resnet50",           "vgg11",
          "vgg13",       "vgg16",          "vgg11-cifar", "vgg13-cifar",        "vgg16-cifar",
          "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0"};
}

struct CreateOptions {
  int64_t num_classes = 1000;
  uint64_t seed = 0;
};

template <class T>
std::shared_ptr<Model<T>> create(const std::string& name, CreateOptions o = {}) {
  if (name == "resnet18") return resnet18<T>({.num_classes = o.num_classes, .stem = Stem::ImageNet, .seed = o.seed});
  if (name == "resnet18-cifar") return resnet18<T>({.num_classes = o.num_classes, .stem = Stem::Cifar, .seed = o.seed});
  if (name == "resnet34") return resnet34<T>({.num_classes = o.num_classes, .stem = Stem::ImageNet, .seed = o.seed});
  if (name == "resnet50") return resnet50<T>({.num_classes = o.num_classes, .stem = Stem::ImageNet, .seed = o.seed});
  if (name == "mobilenet_v3_large") return mobilenet_v3_large<T>({.num_classes = o.num_classes, .seed = o.seed});
  if (name == "mobilenet_v3_small") return mobilenet_v3_small<T>({.num_classes = o.num_classes, .seed = o.seed});
  if (name == "efficientnet_b0") return efficientnet_b0<T>({.num_classes = o.num_classes, .seed = o.seed});
  for (int depth : {11, 13, 16}) {
    const std::string base = "vgg" + std::to_string(depth);
    if (name == base || name == base + "-cifar")
      return vgg<T>({.depth = static_cast<VggDepth>(depth), .num_classes = o.num_classes,
                     .cifar = name != base, .seed = o.seed});
  }
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("models::create: unknown model '" + name + "' (known: " + known + ")");
}

}  // namespace xfer::models
