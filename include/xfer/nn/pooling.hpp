// Pooling layers: MaxPool2d (kernel, stride, padding; padding acts as -inf like PyTorch) and
// AdaptiveAvgPool2d (PyTorch's bins: start = floor(i*H/out), end = ceil((i+1)*H/out)).
#pragma once

#include <algorithm>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/kernels/pool.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::nn {

struct MaxPool2dOptions {
  int64_t kernel_size = 2;
  int64_t stride = 0;  // 0 means "same as kernel_size", as in PyTorch
  int64_t padding = 0;
};

template <class T>
class MaxPool2d : public Module<T> {
 public:
  explicit MaxPool2d(MaxPool2dOptions o) : opt_(o) {
    if (opt_.stride == 0) opt_.stride = opt_.kernel_size;
    XFER_CHECK(opt_.kernel_size > 0 && opt_.stride > 0 && opt_.padding >= 0 && 2 * opt_.padding <= opt_.kernel_size,
               "MaxPool2d: invalid kernel_size=", opt_.kernel_size, " stride=", opt_.stride, " padding=", opt_.padding,
               " (padding must be at most half the kernel)");
  }
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override {
    return xfer::detail::concat("kernel=", opt_.kernel_size, ", stride=", opt_.stride, ", padding=", opt_.padding);
  }
  const MaxPool2dOptions& options() const { return opt_; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() == 4, this->label(), ": expected a 4-D NCHW input, got shape ", shape_str(x.shape()));
    const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
    const int64_t k = opt_.kernel_size, s = opt_.stride, p = opt_.padding;
    const int64_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
    XFER_CHECK(H + 2 * p >= k && W + 2 * p >= k, this->label(), ": input ", shape_str(x.shape()),
               " is smaller than the pooling window");
    in_shape_ = x.shape();
    y_.resize({N, C, OH, OW});
    argmax_.resize(static_cast<size_t>(N * C * OH * OW));
    kernels::maxpool2d_forward(kernels::Pool2dGeometry{.planes = N * C, .h = H, .w = W, .k = k, .s = s, .p = p,
                                                       .oh = OH, .ow = OW},
                               x.data(), y_.data(), argmax_.data());
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_tensor();
    this->check_output_grad(dy, y_.shape());
    dx_.resize(in_shape_);
    const int64_t NC = in_shape_[0] * in_shape_[1], HW = in_shape_[2] * in_shape_[3];
    const int64_t OP = y_.dim(2) * y_.dim(3);
    const T* g = dy.data();
    T* d = dx_.data();
    XFER_OMP_FOR(NC * (HW + OP))
    for (int64_t nc = 0; nc < NC; ++nc) {
      T* plane = d + nc * HW;
      std::fill(plane, plane + HW, T(0));
      for (int64_t o = 0; o < OP; ++o) plane[argmax_[static_cast<size_t>(nc * OP + o)]] += g[nc * OP + o];
    }
    return dx_;
  }

 private:
  MaxPool2dOptions opt_;
  Shape in_shape_;
  std::vector<int32_t> argmax_;
  Tensor<T> y_, dx_;
};

struct AdaptiveAvgPool2dOptions {
  int64_t output_height = 1;
  int64_t output_width = 1;
};

template <class T>
class AdaptiveAvgPool2d : public Module<T> {
 public:
  explicit AdaptiveAvgPool2d(AdaptiveAvgPool2dOptions o = {}) : opt_(o) {
    XFER_CHECK(o.output_height > 0 && o.output_width > 0, "AdaptiveAvgPool2d: output size must be positive, got ",
               o.output_height, "x", o.output_width);
  }
  explicit AdaptiveAvgPool2d(int64_t size) : AdaptiveAvgPool2d(AdaptiveAvgPool2dOptions{size, size}) {}
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override { return xfer::detail::concat(opt_.output_height, "x", opt_.output_width); }
  const AdaptiveAvgPool2dOptions& options() const { return opt_; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() == 4, this->label(), ": expected a 4-D NCHW input, got shape ", shape_str(x.shape()));
    in_shape_ = x.shape();
    const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
    const int64_t OH = opt_.output_height, OW = opt_.output_width;
    y_.resize({x.dim(0), x.dim(1), OH, OW});
    const T* xd = x.data();
    T* yd = y_.data();
    XFER_OMP_FOR(NC * H * W)
    for (int64_t nc = 0; nc < NC; ++nc)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          const int64_t y0 = oy * H / OH, y1 = ((oy + 1) * H + OH - 1) / OH;
          const int64_t x0 = ox * W / OW, x1 = ((ox + 1) * W + OW - 1) / OW;
          T s = 0;
          for (int64_t iy = y0; iy < y1; ++iy)
            for (int64_t ix = x0; ix < x1; ++ix) s += xd[(nc * H + iy) * W + ix];
          yd[(nc * OH + oy) * OW + ox] = s / static_cast<T>((y1 - y0) * (x1 - x0));
        }
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_tensor();
    this->check_output_grad(dy, y_.shape());
    dx_.resize(in_shape_);
    const int64_t NC = in_shape_[0] * in_shape_[1], H = in_shape_[2], W = in_shape_[3];
    const int64_t OH = opt_.output_height, OW = opt_.output_width;
    const T* g = dy.data();
    T* d = dx_.data();
    XFER_OMP_FOR(NC * H * W)
    for (int64_t nc = 0; nc < NC; ++nc) {
      std::fill(d + nc * H * W, d + (nc + 1) * H * W, T(0));
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          const int64_t y0 = oy * H / OH, y1 = ((oy + 1) * H + OH - 1) / OH;
          const int64_t x0 = ox * W / OW, x1 = ((ox + 1) * W + OW - 1) / OW;
          const T v = g[(nc * OH + oy) * OW + ox] / static_cast<T>((y1 - y0) * (x1 - x0));
          for (int64_t iy = y0; iy < y1; ++iy)
            for (int64_t ix = x0; ix < x1; ++ix) d[(nc * H + iy) * W + ix] += v;
        }
    }
    return dx_;
  }

 private:
  AdaptiveAvgPool2dOptions opt_;
  Shape in_shape_;
  Tensor<T> y_, dx_;
};

}  // namespace xfer::nn
