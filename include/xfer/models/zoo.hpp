// The model zoo by name, for command-line tools: resnet18, resnet18-cifar, resnet34, vgg11, vgg13,
// vgg16 (torchvision layouts) and vgg11-cifar, vgg13-cifar, vgg16-cifar (512 -> classes head).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "xfer/models/resnet.hpp"
#include "xfer/models/vgg.hpp"

namespace xfer::models {

inline std::vector<std::string> model_names() {
  return {"resnet18", "resnet18-cifar", "resnet34", "vgg11", "vgg13", "vgg16", "vgg11-cifar", "vgg13-cifar", "vgg16-cifar"};
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
