#include <xfer/xfer.hpp>

#include <iostream>

int main() {
  auto net = xfer::models::resnet18<float>({.num_classes = 10, .stem = xfer::models::Stem::Cifar});
  net->freeze_backbone();
  xfer::Tensor<float> x({2, 3, 32, 32}, 0.5f);
  const auto& y = net->forward(x);
  std::cout << "logits=" << xfer::shape_str(y.shape()) << " trainable=" << net->num_trainable_parameters() << "\n";
  return y.dim(1) == 10 ? 0 : 1;
}
