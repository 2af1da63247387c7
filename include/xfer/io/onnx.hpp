// io::save_onnx / io::to_onnx: an eval-mode model as an ONNX file for ONNX Runtime, OpenVINO, ...
// Built with ONNX's own protobuf classes (Debian libonnx-dev), checked by onnx::checker and ONNX
// shape inference before anything is written; the file is written to a temp file and renamed.
//
// The one thing to know: the exporter walks the module tree by known types and registered child
// names (the forward order of each container is known here, not discovered by tracing), so it
// covers exactly: ResNet (BasicBlock, Bottleneck, downsample), VGG (incl. the CIFAR head),
// MobileNetV3 and EfficientNet (InvertedResidual / MBConv, SqueezeExcitation, StochasticDepth as
// the identity), Sequential (conv4) of Conv2d (groups, dilation), BatchNorm2d, ReLU, Hardsigmoid,
// Hardswish, SiLU, Sigmoid, MaxPool2d, AdaptiveAvgPool2d, Flatten, Linear and Dropout. Any
// other module is an xfer::Error naming its path and type, and no file is written. BatchNorm2d
// becomes BatchNormalization with the running statistics (eval form) by default;
// {.fold_batchnorm = true} folds it into the preceding Conv2d instead. The batch dimension is the
// symbolic "N"; initializers carry torchvision's parameter names ("layer1.0.conv1.weight").
// Needs the xfer::onnx CMake target (XFER_WITH_ONNX=1); xfer/xfer.hpp does not include this header.
#pragma once

#if !defined(XFER_WITH_ONNX)
#error "xfer/io/onnx.hpp needs the xfer::onnx target (Debian: apt-get install libonnx-dev), which defines XFER_WITH_ONNX"
#endif

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/io/atomic_file.hpp"
#include "xfer/models/features_classifier.hpp"
#include "xfer/models/inverted_residual.hpp"
#include "xfer/models/resnet.hpp"
#include "xfer/models/vgg.hpp"
#include "xfer/nn/activations.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/dropout.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/linear.hpp"
#include "xfer/nn/pooling.hpp"
#include "xfer/nn/relu.hpp"
#include "xfer/nn/sequential.hpp"
#include "xfer/nn/squeeze_excitation.hpp"
#include "xfer/nn/stochastic_depth.hpp"

namespace xfer::io {

struct OnnxOptions {
  std::vector<int64_t> input_shape = {3, 224, 224};  // C, H, W of one image; the batch is symbolic
  int64_t opset = 17;             // ONNX operator set (11 .. the newest the linked ONNX knows)
  bool fold_batchnorm = false;    // true: BN folded into the preceding conv (no BatchNormalization nodes)
  std::string input_name = "input";
  std::string output_name = "logits";
  std::string batch_name = "N";   // the symbolic batch dimension
};

namespace detail {

// A graph value: its name and its shape without the batch dimension ({C, H, W} or {F}).
struct OnnxValue {
  std::string name;
  Shape shape;
};

class OnnxBuilder {
 public:
  explicit OnnxBuilder(const OnnxOptions& o) : opt_(o) {}

  onnx::ModelProto build(nn::Module<float>& model) {
    const auto& s = opt_.input_shape;
    XFER_CHECK(s.size() == 3 && s[0] > 0 && s[1] > 0 && s[2] > 0, "save_onnx: input_shape must be {C, H, W} with positive sizes, got ",
               shape_str(Shape(s.begin(), s.end())));
    const auto range = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map().at(onnx::ONNX_DOMAIN);
    XFER_CHECK(opt_.opset >= 11 && opt_.opset <= range.second, "save_onnx: opset ", opt_.opset,
               " is not supported (expected 11 .. ", range.second, ", the newest this ONNX library knows)");
    OnnxValue x{opt_.input_name, Shape(s.begin(), s.end())};
    used_.insert({x.name, 1});
    OnnxValue y = module(model, "", x);
    XFER_CHECK(y.name != x.name, "save_onnx: the model ", model.type_name(), " has no layer to export");
    for (auto& node : *graph_.mutable_node())  // the last node's output becomes the graph output
      for (auto& out : *node.mutable_output())
        if (out == y.name) out = opt_.output_name;
    for (auto& init : inits_) {
      add_initializer(init);
      std::vector<float>().swap(init.data);  // the graph holds the only copy now
    }
    graph_.set_name(model.type_name());
    declare(*graph_.add_input(), opt_.input_name, x.shape);
    declare(*graph_.add_output(), opt_.output_name, y.shape);

    onnx::ModelProto m;
    m.set_ir_version(onnx::IR_VERSION);
    m.set_producer_name("xfer");
    m.set_producer_version("0.1.0");
    m.set_doc_string("exported by xfer::io::save_onnx from " + model.type_name());
    auto* op = m.add_opset_import();
    op->set_domain("");
    op->set_version(opt_.opset);
    *m.mutable_graph() = std::move(graph_);
    try {
      onnx::checker::check_model(m);
      // Strict shape inference: a node whose inferred output disagrees with the declared graph
      // output (the shapes this exporter tracked) is an error, not a silently wrong file.
      // Inferred in place (a copy would double the peak memory of VGG's 0.5 GB), then dropped again.
      onnx::ShapeInferenceOptions sio{true, 1, false};
      onnx::shape_inference::InferShapes(m, onnx::OpSchemaRegistry::Instance(), sio);
      m.mutable_graph()->clear_value_info();
    } catch (const std::exception& e) {
      throw Error(xfer::detail::concat("save_onnx: the ONNX checker rejected the graph of ", model.type_name(), ": ", e.what()));
    }
    return m;
  }

 private:
  struct Init {
    std::string name;
    Shape dims;
    std::vector<float> data;
  };
  struct LastConv {  // the conv that produced `output`, for BN folding
    std::string output;
    size_t node = 0, weight = 0;
    std::string bias_name;
  };

  // "[N, 3, 32, 32]" for a tracked shape; "'layer1.0.conv1' Conv2d(64, 64, ...)" for a module.
  static std::string batched(const Shape& s) {
    std::string out = "[N";
    for (int64_t d : s) out += ", " + std::to_string(d);
    return out + "]";
  }
  static std::string describe(nn::Module<float>& m, const std::string& path) {
    return "'" + (path.empty() ? std::string("<root>") : path) + "' " + m.type_name() + "(" + m.extra_repr() + ")";
  }
  static std::string join(const std::string& path, const std::string& name) {
    return path.empty() ? name : path + "." + name;
  }
  [[noreturn]] static void unsupported(nn::Module<float>& m, const std::string& path) {
    throw Error(xfer::detail::concat(
        "save_onnx: module '", path.empty() ? "<root>" : path, "' of type ", m.type_name(), "(", m.extra_repr(),
        ") is not supported by the ONNX exporter (known: ResNet, BasicBlock, Bottleneck, VGG, MobileNetV3, EfficientNet, "
        "InvertedResidual, MBConv, SqueezeExcitation, StochasticDepth, Sequential, Conv2d, BatchNorm2d, ReLU, "
        "Hardsigmoid, Hardswish, SiLU, Sigmoid, MaxPool2d, AdaptiveAvgPool2d, Flatten, Linear, Dropout)"));
  }

  OnnxValue module(nn::Module<float>& m, const std::string& path, OnnxValue x) {
    if (dynamic_cast<models::ResNet<float>*>(&m) || dynamic_cast<models::VGG<float>*>(&m)) {
      // Registered children in forward order; torch.flatten (not a module) runs before the head.
      const std::string head = dynamic_cast<models::ResNet<float>*>(&m) ? "fc" : "classifier";
      for (const auto& [name, child] : m.children()) {
        if (name == head) x = flatten(join(path, "flatten"), x);
        x = module(*child, join(path, name), x);
      }
      return x;
    }
    if (dynamic_cast<models::FeaturesClassifier<float>*>(&m)) {  // features, avgpool, flatten, classifier
      for (const auto& [name, child] : m.children()) x = module(*child, join(path, name), x);
      return x;
    }
    if (auto* block = dynamic_cast<models::BasicBlock<float>*>(&m)) return basic_block(*block, path, x);
    if (auto* block = dynamic_cast<models::Bottleneck<float>*>(&m)) return bottleneck(*block, path, x);
    if (auto* block = dynamic_cast<models::InvertedResidual<float>*>(&m)) {
      // block(x) (+ x); stochastic depth is the identity at inference.
      const OnnxValue h = module(block->block(), join(path, "block"), x);
      if (!block->has_residual()) return h;
      return residual_add(*block, path, h, x, false);
    }
    if (auto* se = dynamic_cast<nn::SqueezeExcitation<float>*>(&m)) return squeeze_excitation(*se, path, x);
    if (dynamic_cast<nn::StochasticDepth<float>*>(&m)) return x;
    if (dynamic_cast<nn::Sequential<float>*>(&m) && m.type_name() == "Sequential") {
      for (const auto& [name, child] : m.children()) x = module(*child, join(path, name), x);
      return x;
    }
    if (auto* c = dynamic_cast<nn::Conv2d<float>*>(&m)) return conv(*c, path, x);
    if (auto* b = dynamic_cast<nn::BatchNorm2d<float>*>(&m)) return batchnorm(*b, path, x);
    if (dynamic_cast<nn::ReLU<float>*>(&m)) return node("Relu", path, {x.name}, x.shape);
    if (dynamic_cast<nn::Hardsigmoid<float>*>(&m)) return hardsigmoid(path, x);
    if (dynamic_cast<nn::Hardswish<float>*>(&m)) {
      if (opt_.opset >= 14) return node("HardSwish", path, {x.name}, x.shape);
      const OnnxValue g = hardsigmoid(path + ".gate", x);  // before opset 14: x * hardsigmoid(x)
      return node("Mul", path, {x.name, g.name}, x.shape);
    }
    if (dynamic_cast<nn::Sigmoid<float>*>(&m)) return node("Sigmoid", path, {x.name}, x.shape);
    if (dynamic_cast<nn::SiLU<float>*>(&m)) {  // ONNX has no SiLU op: x * sigmoid(x)
      const OnnxValue g = node("Sigmoid", path + ".gate", {x.name}, x.shape);
      return node("Mul", path, {x.name, g.name}, x.shape);
    }
    if (auto* p = dynamic_cast<nn::MaxPool2d<float>*>(&m)) return maxpool(*p, path, x);
    if (auto* p = dynamic_cast<nn::AdaptiveAvgPool2d<float>*>(&m)) return avgpool(*p, path, x);
    if (dynamic_cast<nn::Flatten<float>*>(&m)) return flatten(path, x);
    if (auto* l = dynamic_cast<nn::Linear<float>*>(&m)) return linear(*l, path, x);
    if (dynamic_cast<nn::Dropout<float>*>(&m)) return x;  // identity at inference
    unsupported(m, path);
  }

  // torch's hardsigmoid is relu6(x + 3) / 6: ONNX HardSigmoid with alpha 1/6 (its default is 0.2).
  OnnxValue hardsigmoid(const std::string& path, const OnnxValue& x) {
    OnnxValue y = node("HardSigmoid", path, {x.name}, x.shape);
    auto& n = graph_.mutable_node()->at(graph_.node_size() - 1);
    for (auto [name, v] : {std::pair<const char*, float>{"alpha", 1.f / 6.f}, {"beta", 0.5f}}) {
      auto* a = n.add_attribute();
      a->set_name(name);
      a->set_type(onnx::AttributeProto::FLOAT);
      a->set_f(v);
    }
    return y;
  }

  // relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut = downsample or identity.
  OnnxValue basic_block(models::BasicBlock<float>& b, const std::string& path, const OnnxValue& x) {
    OnnxValue h = conv(b.conv1(), join(path, "conv1"), x);
    h = batchnorm(b.bn1(), join(path, "bn1"), h);
    h = node("Relu", join(path, "relu"), {h.name}, h.shape);
    h = conv(b.conv2(), join(path, "conv2"), h);
    h = batchnorm(b.bn2(), join(path, "bn2"), h);
    const OnnxValue s = b.downsample() ? module(*b.downsample(), join(path, "downsample"), x) : x;
    return residual_add(b, path, h, s, true);
  }

  // relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)).
  OnnxValue bottleneck(models::Bottleneck<float>& b, const std::string& path, const OnnxValue& x) {
    OnnxValue h = x;
    nn::Conv2d<float>* convs[] = {&b.conv1(), &b.conv2(), &b.conv3()};
    nn::BatchNorm2d<float>* bns[] = {&b.bn1(), &b.bn2(), &b.bn3()};
    for (int i = 0; i < 3; ++i) {
      h = conv(*convs[i], join(path, "conv" + std::to_string(i + 1)), h);
      h = batchnorm(*bns[i], join(path, "bn" + std::to_string(i + 1)), h);
      if (i < 2) h = node("Relu", join(path, "relu"), {h.name}, h.shape);
    }
    const OnnxValue s = b.downsample() ? module(*b.downsample(), join(path, "downsample"), x) : x;
    return residual_add(b, path, h, s, true);
  }

  // branch + shortcut (then ReLU for the ResNet blocks).
  OnnxValue residual_add(nn::Module<float>& b, const std::string& path, const OnnxValue& h, const OnnxValue& s, bool relu) {
    XFER_CHECK(s.shape == h.shape, "save_onnx: ", describe(b, path), ": shortcut shape ", batched(s.shape),
               " differs from the residual branch's ", batched(h.shape));
    const OnnxValue sum = node("Add", join(path, "add"), {h.name, s.name}, h.shape);
    return relu ? node("Relu", join(path, "relu"), {sum.name}, sum.shape) : sum;
  }

  // x * scale_activation(fc2(activation(fc1(avgpool(x))))), the product broadcast over H, W.
  OnnxValue squeeze_excitation(nn::SqueezeExcitation<float>& se, const std::string& path, const OnnxValue& x) {
    expect_image(se, path, x, se.options().input_channels);
    OnnxValue s = node("GlobalAveragePool", join(path, "avgpool"), {x.name}, {x.shape[0], 1, 1});
    for (const char* name : {"fc1", "activation", "fc2", "scale_activation"})
      for (const auto& [child_name, child] : se.children())
        if (child_name == name) s = module(*child, join(path, name), s);
    return node("Mul", join(path, "scale"), {x.name, s.name}, x.shape);
  }

  OnnxValue conv(nn::Conv2d<float>& c, const std::string& path, const OnnxValue& x) {
    const auto& o = c.options();
    expect_image(c, path, x, o.in_channels);
    const int64_t k = o.kernel_size, s = o.stride, p = o.padding, d = o.dilation, span = d * (k - 1) + 1;
    const int64_t oh = (x.shape[1] + 2 * p - span) / s + 1, ow = (x.shape[2] + 2 * p - span) / s + 1;
    XFER_CHECK(oh > 0 && ow > 0, "save_onnx: ", describe(c, path), " gets a ", batched(x.shape), " input: output would be empty");
    LastConv lc;
    lc.weight = param(join(path, "weight"), c.weight());
    std::vector<std::string> inputs{x.name, inits_[lc.weight].name};
    if (c.bias()) {
      param(join(path, "bias"), *c.bias());
      inputs.push_back(lc.bias_name = join(path, "bias"));
    }
    OnnxValue y = node("Conv", path, inputs, {o.out_channels, oh, ow});
    auto& n = graph_.mutable_node()->at(graph_.node_size() - 1);
    ints(n, "kernel_shape", {k, k});
    ints(n, "strides", {s, s});
    ints(n, "pads", {p, p, p, p});
    ints(n, "dilations", {d, d});
    if (o.groups != 1) {
      auto* a = n.add_attribute();
      a->set_name("group");
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(o.groups);
    }
    lc.output = y.name;
    lc.node = static_cast<size_t>(graph_.node_size() - 1);
    last_conv_ = lc;
    return y;
  }

  OnnxValue batchnorm(nn::BatchNorm2d<float>& b, const std::string& path, const OnnxValue& x) {
    const int64_t C = b.options().num_features;
    expect_image(b, path, x, C);
    if (opt_.fold_batchnorm && last_conv_.output == x.name) return fold(b, x);
    const std::vector<std::string> inputs{x.name, inits_[param(join(path, "weight"), b.weight())].name,
                                          inits_[param(join(path, "bias"), b.bias())].name,
                                          inits_[buffer(join(path, "running_mean"), b.running_mean())].name,
                                          inits_[buffer(join(path, "running_var"), b.running_var())].name};
    OnnxValue y = node("BatchNormalization", path, inputs, x.shape);
    auto* a = graph_.mutable_node()->at(graph_.node_size() - 1).add_attribute();
    a->set_name("epsilon");
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(b.options().eps));
    return y;
  }

  // W' = W * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma / sqrt(var + eps) + beta.
  OnnxValue fold(nn::BatchNorm2d<float>& b, const OnnxValue& x) {
    const int64_t C = b.options().num_features;
    const std::string& wname = inits_[last_conv_.weight].name;
    const int64_t per = static_cast<int64_t>(inits_[last_conv_.weight].data.size()) / C;
    if (last_conv_.bias_name.empty()) {  // a bias-free conv gets one: "<conv>.bias"
      last_conv_.bias_name = wname.substr(0, wname.size() - std::string("weight").size()) + "bias";
      index_[last_conv_.bias_name] = inits_.size();
      inits_.push_back({last_conv_.bias_name, {C}, std::vector<float>(static_cast<size_t>(C), 0.f)});
      graph_.mutable_node()->at(static_cast<int>(last_conv_.node)).add_input(last_conv_.bias_name);
    }
    std::vector<float>& w = inits_[last_conv_.weight].data;
    std::vector<float>& bias = inits_[index_.at(last_conv_.bias_name)].data;
    for (int64_t c = 0; c < C; ++c) {
      const double scale = static_cast<double>(b.weight().value[c]) /
                           std::sqrt(static_cast<double>(b.running_var()[c]) + b.options().eps);
      for (int64_t i = 0; i < per; ++i) w[static_cast<size_t>(c * per + i)] = static_cast<float>(w[static_cast<size_t>(c * per + i)] * scale);
      const double shifted = (static_cast<double>(bias[static_cast<size_t>(c)]) - b.running_mean()[c]) * scale;
      bias[static_cast<size_t>(c)] = static_cast<float>(shifted + b.bias().value[c]);
    }
    last_conv_ = {};
    return x;
  }

  OnnxValue maxpool(nn::MaxPool2d<float>& p, const std::string& path, const OnnxValue& x) {
    expect_image(p, path, x, x.shape.empty() ? 0 : x.shape[0]);
    const auto& o = p.options();
    const int64_t k = o.kernel_size, s = o.stride, pad = o.padding;
    const int64_t oh = (x.shape[1] + 2 * pad - k) / s + 1, ow = (x.shape[2] + 2 * pad - k) / s + 1;
    XFER_CHECK(oh > 0 && ow > 0, "save_onnx: ", describe(p, path), " gets a ", batched(x.shape), " input: output would be empty");
    OnnxValue y = node("MaxPool", path, {x.name}, {x.shape[0], oh, ow});
    auto& n = graph_.mutable_node()->at(graph_.node_size() - 1);
    ints(n, "kernel_shape", {k, k});
    ints(n, "strides", {s, s});
    ints(n, "pads", {pad, pad, pad, pad});
    return y;
  }

  // 1x1 output: GlobalAveragePool; an output that divides the input evenly: AveragePool; the same
  // size: nothing. ONNX has no adaptive pooling with uneven windows.
  OnnxValue avgpool(nn::AdaptiveAvgPool2d<float>& p, const std::string& path, const OnnxValue& x) {
    expect_image(p, path, x, x.shape.empty() ? 0 : x.shape[0]);
    const int64_t oh = p.options().output_height, ow = p.options().output_width, H = x.shape[1], W = x.shape[2];
    if (oh == 1 && ow == 1) return node("GlobalAveragePool", path, {x.name}, {x.shape[0], 1, 1});
    if (oh == H && ow == W) return x;
    XFER_CHECK(H % oh == 0 && W % ow == 0, "save_onnx: ", describe(p, path), " on a ", H, "x", W,
               " map has uneven windows, which ONNX cannot express (choose an input size that makes this map a multiple of ",
               oh, "x", ow, ", e.g. 224 px for VGG)");
    OnnxValue y = node("AveragePool", path, {x.name}, {x.shape[0], oh, ow});
    auto& n = graph_.mutable_node()->at(graph_.node_size() - 1);
    ints(n, "kernel_shape", {H / oh, W / ow});
    ints(n, "strides", {H / oh, W / ow});
    return y;
  }

  OnnxValue flatten(const std::string& path, const OnnxValue& x) {
    if (x.shape.size() == 1) return x;
    OnnxValue y = node("Flatten", path, {x.name}, {shape_numel(x.shape)});
    auto* a = graph_.mutable_node()->at(graph_.node_size() - 1).add_attribute();
    a->set_name("axis");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(1);
    return y;
  }

  OnnxValue linear(nn::Linear<float>& l, const std::string& path, const OnnxValue& x) {
    const auto& o = l.options();
    XFER_CHECK(x.shape.size() == 1 && x.shape[0] == o.in_features, "save_onnx: ", describe(l, path), " expects [N, ",
               o.in_features, "] input but gets ", batched(x.shape), " (is a Flatten missing?)");
    std::vector<std::string> inputs{x.name, inits_[param(join(path, "weight"), l.weight())].name};
    if (l.bias()) inputs.push_back(inits_[param(join(path, "bias"), *l.bias())].name);
    OnnxValue y = node("Gemm", path, inputs, {o.out_features});
    auto* a = graph_.mutable_node()->at(graph_.node_size() - 1).add_attribute();
    a->set_name("transB");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(1);
    return y;
  }

  // ---- graph pieces -------------------------------------------------------------------------
  void expect_image(nn::Module<float>& m, const std::string& path, const OnnxValue& x, int64_t channels) {
    XFER_CHECK(x.shape.size() == 3 && x.shape[0] == channels, "save_onnx: ", describe(m, path), " expects [N, ", channels,
               ", H, W] input but gets ", batched(x.shape));
  }
  std::string unique(const std::string& base) {
    const int n = used_[base]++;
    return n == 0 ? base : base + "_" + std::to_string(n);
  }
  OnnxValue node(const std::string& op, const std::string& path, const std::vector<std::string>& inputs, Shape shape) {
    const std::string out = unique(path.empty() ? op : path);
    auto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(out + "/" + op);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(out);
    return {out, std::move(shape)};
  }
  static void ints(onnx::NodeProto& n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t i : v) a->add_ints(i);
  }
  size_t add(const std::string& name, const Shape& dims, const float* data, int64_t n) {
    XFER_CHECK(!index_.count(name), "save_onnx: the initializer '", name, "' appears twice (a module shared in two places?)");
    index_[name] = inits_.size();
    inits_.push_back({name, dims, std::vector<float>(data, data + n)});
    return inits_.size() - 1;
  }
  size_t param(const std::string& name, nn::Parameter<float>& p) { return add(name, p.shape, p.value, p.numel); }
  size_t buffer(const std::string& name, Tensor<float>& t) { return add(name, t.shape(), t.data(), t.numel()); }
  void add_initializer(const Init& init) {
    auto* t = graph_.add_initializer();
    t->set_name(init.name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : init.dims) t->add_dims(d);
    // raw_data is little-endian float32, the host's layout on every platform xfer builds for.
    t->set_raw_data(std::string(reinterpret_cast<const char*>(init.data.data()), init.data.size() * sizeof(float)));
  }
  void declare(onnx::ValueInfoProto& v, const std::string& name, const Shape& shape) {
    v.set_name(name);
    auto* tt = v.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    auto* s = tt->mutable_shape();
    s->add_dim()->set_dim_param(opt_.batch_name);
    for (int64_t d : shape) s->add_dim()->set_dim_value(d);
  }

  OnnxOptions opt_;
  onnx::GraphProto graph_;
  std::vector<Init> inits_;
  std::map<std::string, size_t> index_;
  std::map<std::string, int> used_;
  LastConv last_conv_;
};

}  // namespace detail

// The model (in eval form: BN running statistics, no dropout) as a checked ONNX ModelProto.
inline onnx::ModelProto to_onnx(const nn::Module<float>& model, const OnnxOptions& opt = {}) {
  // The exporter only reads: the layer accessors it uses are non-const.
  return detail::OnnxBuilder(opt).build(const_cast<nn::Module<float>&>(model));
}

// Writes to_onnx(model, opt) to `path` atomically (temp file + rename): a failed export leaves no file.
inline void save_onnx(const nn::Module<float>& model, const std::filesystem::path& path, const OnnxOptions& opt = {}) {
  const onnx::ModelProto m = to_onnx(model, opt);
  std::string bytes;
  XFER_CHECK(m.SerializeToString(&bytes), "save_onnx: serialising the ONNX model for '", path.string(), "' failed");
  write_file_atomic(path, bytes);
}

}  // namespace xfer::io
