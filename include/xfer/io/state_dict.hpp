// Model <-> safetensors under torchvision's state_dict names: load_safetensors(model, path, opts)
// and save_safetensors(model, path). Files written by torch / timm / HF for resnet18, vgg*_bn
// load as they are (timm's resnet18.tv_in1k and .a1_in1k use torchvision's key names).
//
// The one thing to know: strict mode (the default) checks every key, dtype and shape first and
// throws one xfer::Error listing ALL problems without touching the model; non-strict mode loads
// what matches and reports the rest (the way to load ImageNet weights after replace_head(10):
// fc.* comes back as mismatched and keeps its fresh initialisation).
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "xfer/io/safetensors.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::io {

struct LoadOptions {
  bool strict = true;
  // Removed from the front of every file key that starts with it ("module." from DataParallel).
  std::string strip_prefix = {};
  // File key (after strip_prefix) -> model key; return "" to ignore that file tensor.
  std::function<std::string(const std::string&)> remap = {};
  // BatchNorm num_batches_tracked may be absent from the file (torchvision's own .pth weights
  // predate it; PyTorch tolerates this too): the counter keeps its value and the key is listed in
  // `missing` without being an error. Set true to make it an error in strict mode.
  bool require_counters = false;
  ReaderOptions reader = {};
};

struct LoadReport {
  std::vector<std::string> loaded;      // model keys written from the file
  std::vector<std::string> missing;     // model keys the file does not have (left unchanged)
  std::vector<std::string> unexpected;  // file keys the model does not have
  std::vector<std::string> mismatched;  // keys in both with different shapes (not loaded)
  std::vector<std::string> skipped;     // keys in both not loaded: mismatched + unusable dtype / duplicates
  std::vector<std::string> ignored;     // file keys the remap function dropped
  std::vector<std::string> problems;    // one readable line per problem (what strict mode throws)

  bool complete() const { return problems.empty(); }
  std::string summary() const {
    return xfer::detail::concat(loaded.size(), " loaded, ", missing.size(), " missing, ", unexpected.size(), " unexpected, ",
                         mismatched.size(), " shape-mismatched, ", skipped.size(), " skipped");
  }
};

namespace detail {
template <class T>
struct Slot {
  std::string name;
  Shape shape;
  T* values = nullptr;         // parameter value or buffer tensor data
  int64_t* counter = nullptr;  // num_batches_tracked
  bool matched = false;
};

template <class T>
std::vector<Slot<T>> model_slots(nn::Module<T>& model) {
  std::vector<Slot<T>> slots;
  for (auto& np : model.named_parameters()) slots.push_back({np.name, np.param->shape, np.param->value, nullptr});
  for (auto& nb : model.named_buffers()) {
    if (nb.buffer.counter) slots.push_back({nb.name, Shape{}, nullptr, nb.buffer.counter});
    else slots.push_back({nb.name, nb.buffer.tensor->shape(), nb.buffer.tensor->data(), nullptr});
  }
  return slots;
}
}  // namespace detail

// Loads the model's parameters and buffers from an open reader (checkpoints keep more tensors in
// the same file; keys the model does not own are "unexpected", so use strict = false or remap).
template <class T>
LoadReport load_state_dict(nn::Module<T>& model, const SafetensorsReader& file, const LoadOptions& opt = {}) {
  auto slots = detail::model_slots(model);
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < slots.size(); ++i) by_name.emplace(slots[i].name, i);

  LoadReport r;
  std::vector<std::pair<const TensorInfo*, size_t>> plan;
  std::map<size_t, std::string> source;  // slot -> file key that claimed it
  for (const TensorInfo& t : file.tensors()) {
    std::string key = t.name;
    if (!opt.strip_prefix.empty() && key.rfind(opt.strip_prefix, 0) == 0) key = key.substr(opt.strip_prefix.size());
    if (opt.remap) key = opt.remap(key);
    if (key.empty()) {
      r.ignored.push_back(t.name);
      continue;
    }
    const std::string shown = key == t.name ? "'" + key + "'" : "'" + key + "' (file key '" + t.name + "')";
    auto it = by_name.find(key);
    if (it == by_name.end()) {
      r.unexpected.push_back(t.name);
      r.problems.push_back("unexpected key " + shown + " " + dtype_name(t.dtype) + " " + shape_str(t.shape) +
                           ": the model has no such parameter or buffer");
      continue;
    }
    detail::Slot<T>& s = slots[it->second];
    if (s.matched) {
      r.skipped.push_back(key);
      r.problems.push_back("key " + shown + " is given twice (also by file key '" + source[it->second] + "')");
      continue;
    }
    s.matched = true;
    source[it->second] = t.name;
    if (s.counter) {
      const bool ok_dtype = t.dtype != Dtype::BOOL;
      if (!ok_dtype || t.numel() != 1) {
        r.skipped.push_back(key);
        r.problems.push_back("counter " + shown + ": expected one integer (I64, shape []), got " + dtype_name(t.dtype) +
                             " " + shape_str(t.shape));
        continue;
      }
    } else {
      if (!is_floating(t.dtype)) {
        r.skipped.push_back(key);
        r.problems.push_back("dtype of " + shown + ": expected a float tensor (F32, F64, F16, BF16), got " +
                             dtype_name(t.dtype));
        continue;
      }
      if (t.shape != s.shape) {
        r.mismatched.push_back(key);
        r.skipped.push_back(key);
        r.problems.push_back("shape mismatch for " + shown + ": file " + shape_str(t.shape) + ", model " +
                             shape_str(s.shape));
        continue;
      }
    }
    plan.emplace_back(&t, it->second);
  }
  for (auto& s : slots) {
    if (s.matched) continue;
    r.missing.push_back(s.name);
    if (s.counter && !opt.require_counters) continue;
    r.problems.push_back("missing key '" + s.name + "' " + shape_str(s.shape) + ": not in the file");
  }

  if (opt.strict && !r.problems.empty()) {
    std::string msg = "load_safetensors '" + file.path() + "' into " + model.type_name() + ": " +
                      std::to_string(r.problems.size()) +
                      " problem(s) in strict mode, nothing was loaded (LoadOptions{.strict = false} loads what matches):";
    for (const auto& p : r.problems) msg += "\n  " + p;
    throw Error(msg);
  }
  for (auto& [t, i] : plan) {
    detail::Slot<T>& s = slots[i];
    if (s.counter) {
      *s.counter = file.read<int64_t>(t->name).at(0);
    } else {
      file.read_into(t->name, s.values, shape_numel(s.shape));
    }
    r.loaded.push_back(s.name);
  }
  return r;
}

template <class T>
LoadReport load_safetensors(nn::Module<T>& model, const std::string& path, const LoadOptions& opt = {}) {
  SafetensorsReader file(path, opt.reader);
  return load_state_dict(model, file, opt);
}
template <class M>
LoadReport load_safetensors(const std::shared_ptr<M>& model, const std::string& path, const LoadOptions& opt = {}) {
  XFER_CHECK(model != nullptr, "load_safetensors '", path, "': null model");
  return load_safetensors(*model, path, opt);
}

// The model's state as tensors to write, in torch's state_dict order (module by module, each
// module's parameters then its buffers; counters as I64 scalars). Pointers stay valid while the
// model lives and is not re-flattened; append your own tensors (optimizer state) before calling
// write_safetensors.
template <class T>
std::vector<TensorView> state_dict_views(nn::Module<T>& model) {
  std::unordered_map<std::string, size_t> module_rank;
  for (auto& [name, m] : model.named_modules()) module_rank.emplace(name, module_rank.size());
  auto slots = detail::model_slots(model);  // all parameters, then all buffers
  const auto rank = [&](const std::string& key) {
    const auto dot = key.rfind('.');
    auto it = module_rank.find(dot == std::string::npos ? std::string() : key.substr(0, dot));
    return it == module_rank.end() ? module_rank.size() : it->second;
  };
  std::stable_sort(slots.begin(), slots.end(),
                   [&](const detail::Slot<T>& a, const detail::Slot<T>& b) { return rank(a.name) < rank(b.name); });
  std::vector<TensorView> out;
  for (auto& s : slots) {
    if (s.counter) out.push_back(view(s.name, s.counter, Shape{}));
    else out.push_back({s.name, dtype_of<T>(), s.shape, s.values});
  }
  return out;
}

// Writes every parameter and buffer (F32 for float models, F64 for double, I64 counters).
// metadata["format"] defaults to "pt", which Hugging Face loaders expect.
template <class T>
void save_safetensors(nn::Module<T>& model, const std::string& path, std::map<std::string, std::string> metadata = {}) {
  metadata.emplace("format", "pt");
  write_safetensors(path, state_dict_views(model), metadata);
}
template <class M>
void save_safetensors(const std::shared_ptr<M>& model, const std::string& path,
                      std::map<std::string, std::string> metadata = {}) {
  XFER_CHECK(model != nullptr, "save_safetensors '", path, "': null model");
  save_safetensors(*model, path, std::move(metadata));
}

}  // namespace xfer::io
