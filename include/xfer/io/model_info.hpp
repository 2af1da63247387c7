// ModelInfo: what a model file says about itself — architecture, classes and their names, input
// size, the evaluation pipeline (resize on load, Resize, CenterCrop, Normalize) and the recipe that
// produced it — stored as one JSON document under the safetensors `__metadata__` key "xfer.model".
// save_model() writes weights + ModelInfo atomically; read_model_info() parses it back strictly
// (every field present and of the right type, counts consistent), so `predict` needs nothing else.
// The one thing to know: a file without the key is an xfer::Error that says how to proceed
// (models::create + io::load_safetensors), never a silent default.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/core/error.hpp"
#include "xfer/data/image.hpp"
#include "xfer/data/transforms.hpp"
#include "xfer/io/safetensors.hpp"
#include "xfer/io/state_dict.hpp"

namespace xfer::io {

inline constexpr const char* kModelMetaKey = "xfer.model";

// How an image file becomes the network's input at evaluation time. Each step is optional (0 = off):
// load_size squashes the decoded image to exactly h x w on load (uint8, as the CIFAR recipe's
// dataset does), resize sets the shorter side (aspect kept), center_crop takes the centred window,
// then Normalize(mean, std).
struct EvalPipeline {
  int64_t load_height = 0, load_width = 0;
  int64_t resize = 0;
  int64_t crop_height = 0, crop_width = 0;
  std::vector<float> mean, std;

  data::Compose transforms() const {
    data::Compose c;
    if (resize > 0) c.add(std::make_shared<const data::Resize>(resize));
    if (crop_height > 0) c.add(std::make_shared<const data::CenterCrop>(crop_height, crop_width));
    c.add(std::make_shared<const data::Normalize>(mean, std));
    return c;
  }
  // The decoded image as the dataset stores it (squashed to load_size when set).
  data::Image load(data::Image img) const {
    if (load_height > 0 && (img.height != load_height || img.width != load_width))
      return data::resize_image(img, load_height, load_width);
    return img;
  }
  std::string describe() const {
    std::string s;
    if (load_height > 0) s += "ResizeOnLoad(" + std::to_string(load_height) + "x" + std::to_string(load_width) + ") -> ";
    s += "ToTensor";
    if (resize > 0) s += " -> Resize(" + std::to_string(resize) + ")";
    if (crop_height > 0) s += " -> CenterCrop(" + std::to_string(crop_height) + "x" + std::to_string(crop_width) + ")";
    return s + " -> Normalize";
  }
};

struct ModelInfo {
  std::string architecture;  // a models::create name: resnet18, resnet18-cifar, vgg11, ...
  int64_t num_classes = 0;
  std::vector<std::string> class_names;
  int64_t input_height = 0, input_width = 0;  // what the network sees after the eval pipeline
  EvalPipeline eval;
  nlohmann::json recipe = nlohmann::json::object();  // how it was trained (preset, method, epochs, ...)
};

inline nlohmann::json to_json(const ModelInfo& m) {
  const auto& e = m.eval;
  return {{"version", 1},
          {"architecture", m.architecture},
          {"num_classes", m.num_classes},
          {"class_names", m.class_names},
          {"input_size", {m.input_height, m.input_width}},
          {"mean", e.mean},
          {"std", e.std},
          {"eval_transform",
           {{"load_size", {e.load_height, e.load_width}},
            {"resize", e.resize},
            {"center_crop", {e.crop_height, e.crop_width}},
            {"describe", e.describe()}}},
          {"recipe", m.recipe}};
}

namespace detail {
inline void check_info(const ModelInfo& m, const std::string& where) {
  XFER_CHECK(!m.architecture.empty(), where, ": the architecture is empty");
  XFER_CHECK(m.num_classes > 0, where, ": num_classes must be positive, got ", m.num_classes);
  XFER_CHECK(static_cast<int64_t>(m.class_names.size()) == m.num_classes, where, ": ", m.class_names.size(),
             " class names for num_classes ", m.num_classes);
  XFER_CHECK(m.input_height > 0 && m.input_width > 0, where, ": input size ", m.input_height, "x", m.input_width,
             " must be positive");
  XFER_CHECK(m.eval.mean.size() == 3 && m.eval.std.size() == 3, where, ": mean and std need 3 values each, got ",
             m.eval.mean.size(), " and ", m.eval.std.size());
  for (float s : m.eval.std) XFER_CHECK(s > 0, where, ": std values must be > 0, got ", s);
  const auto& e = m.eval;
  XFER_CHECK(e.load_height >= 0 && e.load_width >= 0 && (e.load_height == 0) == (e.load_width == 0) && e.resize >= 0 &&
                 e.crop_height >= 0 && e.crop_width >= 0 && (e.crop_height == 0) == (e.crop_width == 0),
             where, ": the eval transform has negative or half-set sizes");
  // What the pipeline produces must be the declared input size whenever it fixes the size.
  int64_t h = e.crop_height > 0 ? e.crop_height : (e.resize == 0 ? e.load_height : 0);
  int64_t w = e.crop_width > 0 ? e.crop_width : (e.resize == 0 ? e.load_width : 0);
  XFER_CHECK(h == 0 || (h == m.input_height && w == m.input_width), where, ": the eval transform produces ", h, "x", w,
             " images but input_size says ", m.input_height, "x", m.input_width);
}
}  // namespace detail

inline ModelInfo model_info_from_json(const nlohmann::json& j, const std::string& where) {
  XFER_CHECK(j.is_object(), where, ": '", kModelMetaKey, "' is not a JSON object");
  auto need = [&](const char* k) -> const nlohmann::json& {
    XFER_CHECK(j.contains(k), where, ": '", kModelMetaKey, "' lacks the field '", k, "'");
    return j.at(k);
  };
  ModelInfo m;
  try {
    m.architecture = need("architecture").get<std::string>();
    m.num_classes = need("num_classes").get<int64_t>();
    m.class_names = need("class_names").get<std::vector<std::string>>();
    const auto in = need("input_size").get<std::vector<int64_t>>();
    XFER_CHECK(in.size() == 2, where, ": input_size needs [height, width]");
    m.input_height = in[0];
    m.input_width = in[1];
    m.eval.mean = need("mean").get<std::vector<float>>();
    m.eval.std = need("std").get<std::vector<float>>();
    const auto& t = need("eval_transform");
    XFER_CHECK(t.is_object() && t.contains("load_size") && t.contains("resize") && t.contains("center_crop"), where,
               ": eval_transform needs load_size, resize and center_crop");
    const auto ls = t.at("load_size").get<std::vector<int64_t>>(), cc = t.at("center_crop").get<std::vector<int64_t>>();
    XFER_CHECK(ls.size() == 2 && cc.size() == 2, where, ": load_size and center_crop need [height, width]");
    m.eval.load_height = ls[0];
    m.eval.load_width = ls[1];
    m.eval.resize = t.at("resize").get<int64_t>();
    m.eval.crop_height = cc[0];
    m.eval.crop_width = cc[1];
    m.recipe = j.value("recipe", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw Error(xfer::detail::concat(where, ": '", kModelMetaKey, "' has a field of the wrong type (", e.what(), ")"));
  }
  detail::check_info(m, where);
  return m;
}

inline bool has_model_info(const SafetensorsReader& file) { return file.metadata().count(kModelMetaKey) != 0; }

// The ModelInfo of an open file; an xfer::Error when it has none or it is malformed.
inline ModelInfo read_model_info(const SafetensorsReader& file) {
  const std::string where = "model file " + file.path();
  auto it = file.metadata().find(kModelMetaKey);
  XFER_CHECK(it != file.metadata().end(), where, " has no '", kModelMetaKey,
             "' metadata: it holds weights only, so the architecture, classes and preprocessing are unknown "
             "(write it with io::save_model / a fine-tune run, or build the model yourself with models::create and "
             "io::load_safetensors)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw Error(xfer::detail::concat(where, ": '", kModelMetaKey, "' is not valid JSON (", e.what(), ")"));
  }
  return model_info_from_json(j, where);
}
inline ModelInfo read_model_info(const std::string& path) { return read_model_info(SafetensorsReader(path)); }

// The metadata entry to add to a file's __metadata__ (checkpoints and plain weights alike).
inline std::pair<std::string, std::string> model_info_entry(const ModelInfo& m) {
  detail::check_info(m, "ModelInfo of " + m.architecture);
  return {kModelMetaKey, to_json(m).dump()};
}

// Weights + ModelInfo (+ extra metadata), written to a temp file and renamed.
template <class T>
void save_model(nn::Module<T>& model, const ModelInfo& info, const std::string& path,
                std::map<std::string, std::string> extra = {}) {
  extra.insert(model_info_entry(info));
  save_safetensors(model, path, std::move(extra));
}

}  // namespace xfer::io
