// models::load(path): a model rebuilt from its file alone — the architecture, head size and class
// names come from the file's "xfer.model" metadata (io/model_info.hpp), the weights are loaded
// strictly (optimizer state of a checkpoint is ignored).
// The one thing to know: the metadata is checked against the tensors, so a file whose metadata
// contradicts its weights (another architecture, another number of classes) is an xfer::Error
// naming the file and both values, never a model with garbage weights.
#pragma once

#include <memory>
#include <string>

#include "xfer/io/checkpoint.hpp"
#include "xfer/io/model_info.hpp"
#include "xfer/models/zoo.hpp"

namespace xfer::models {

template <class T>
struct LoadedModel {
  std::shared_ptr<Model<T>> net;
  io::ModelInfo info;
};

template <class T = float>
LoadedModel<T> load(const std::string& path) {
  io::SafetensorsReader file(path);
  io::ModelInfo info = io::read_model_info(file);
  const auto names = model_names();
  XFER_CHECK(std::find(names.begin(), names.end(), info.architecture) != names.end(), "model file ", path,
             ": its metadata names the architecture '", info.architecture, "', which models::create does not know");
  auto net = create<T>(info.architecture, {.num_classes = info.num_classes});
  const std::string head_w = net->head_name() + ".weight";
  XFER_CHECK(file.contains(head_w), "model file ", path, ": the metadata says ", info.architecture, " but the file has no '",
             head_w, "' tensor");
  const auto& hs = file.info(head_w).shape;
  XFER_CHECK(hs.size() == 2 && hs[0] == info.num_classes, "model file ", path, ": the metadata says ", info.num_classes,
             " classes but '", head_w, "' has shape ", shape_str(hs));
  auto report = io::load_state_dict(*net, file, io::checkpoint_weights_options({.strict = false}));
  XFER_CHECK(report.complete(), "model file ", path, ": the weights do not match the architecture '", info.architecture,
             "' its metadata names (", report.summary(), report.problems.empty() ? "" : "; first: " + report.problems.front(),
             ")");
  return {std::move(net), std::move(info)};
}

}  // namespace xfer::models
