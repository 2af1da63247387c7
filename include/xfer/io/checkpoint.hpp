// Checkpoints: one safetensors file holding everything a run needs to continue — the model's
// state_dict under torchvision names (so the file also loads as plain weights), the optimizer's
// state tensors under "optimizer.<group>.<param>.<slot>", and a JSON document (optimizer meta,
// scheduler, loader position, RNG, history, anything the caller adds) in __metadata__. The JSON
// form of optimizer, scheduler and loader state is io/state_json.hpp.
//
// The one thing to know: the file is written to a temp file and renamed, so a run killed while
// writing leaves the previous checkpoint intact.
#pragma once

#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "xfer/io/safetensors.hpp"
#include "xfer/io/state_json.hpp"
#include "xfer/io/state_dict.hpp"
#include "xfer/optim/optimizer.hpp"

namespace xfer::io {

inline constexpr const char* kCheckpointMetaKey = "xfer.checkpoint";
inline constexpr const char* kOptimizerPrefix = "optimizer.";

// Options for load_safetensors that read only the model part of a checkpoint.
inline LoadOptions checkpoint_weights_options(LoadOptions base = {}) {
  auto prev = base.remap;
  base.remap = [prev](const std::string& k) -> std::string {
    if (k.rfind(kOptimizerPrefix, 0) == 0) return "";
    return prev ? prev(k) : k;
  };
  return base;
}

template <class T>
void save_checkpoint(const std::string& path, nn::Module<T>& model, const optim::Optimizer<T>* opt,
                     const nlohmann::json& state, std::map<std::string, std::string> extra_metadata = {}) {
  std::vector<TensorView> views = state_dict_views(model);
  nlohmann::json doc = {{"version", 1}, {"state", state}};
  optim::OptimizerState<T> ost;
  if (opt) {
    ost = opt->state_dict();
    doc["optimizer"] = ost;  // io/state_json.hpp
    for (const auto& [name, t] : ost.tensors) views.push_back(view(kOptimizerPrefix + name, t));
  }
  std::map<std::string, std::string> meta = std::move(extra_metadata);  // e.g. io::model_info_entry(info)
  meta["format"] = "pt";
  meta[kCheckpointMetaKey] = doc.dump();
  write_safetensors(path, views, meta);
}

// Loads model (strict) and optimizer state; returns the caller's `state` document.
template <class T>
nlohmann::json load_checkpoint(const std::string& path, nn::Module<T>& model, optim::Optimizer<T>* opt) {
  SafetensorsReader file(path);
  const auto& md = file.metadata();
  auto it = md.find(kCheckpointMetaKey);
  XFER_CHECK(it != md.end(), "load_checkpoint '", path, "': not an xfer checkpoint (no '", kCheckpointMetaKey,
             "' metadata; a plain weights file loads with io::load_safetensors)");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw Error(xfer::detail::concat("load_checkpoint '", path, "': metadata is not valid JSON (", e.what(), ")"));
  }
  // is_number_integer first: value("version", 0) on a string version threw nlohmann::type_error, not xfer::Error.
  XFER_CHECK(doc.is_object() && doc.contains("version") && doc["version"].is_number_integer() && doc["version"] == 1 &&
                 doc.contains("state"),
             "load_checkpoint '", path,
             "': unsupported checkpoint metadata (expected version 1 with a state)");
  optim::OptimizerState<T> ost;
  if (opt) {
    XFER_CHECK(doc.contains("optimizer"), "load_checkpoint '", path, "': the checkpoint has no optimizer state");
    optim::from_json(doc["optimizer"], ost);  // io/state_json.hpp
    for (const auto& info : file.tensors())
      if (info.name.rfind(kOptimizerPrefix, 0) == 0)
        ost.tensors.emplace_back(info.name.substr(std::string(kOptimizerPrefix).size()), file.read_tensor<T>(info.name));
  }
  // Each part validates completely before it changes anything (strict model load; the optimizer
  // checks kind, groups and every shape), and the optimizer goes first: a checkpoint from another
  // optimizer is refused before the model is touched.
  if (opt) opt->load_state_dict(ost);
  load_state_dict(model, file, checkpoint_weights_options());
  return doc["state"];
}

}  // namespace xfer::io
