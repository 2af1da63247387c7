// The fine-tune recipe as a library function: presets (`cifar`: 32 px, images squashed on load,
// crop+flip+jitter+rotation, CIFAR mean/std; `imagenet`: images keep their aspect, RandomResizedCrop
// + flip for training, Resize(256) + CenterCrop(224) for evaluation, ImageNet mean/std), the
// freeze-then-unfreeze schedule for pretrained weights, Adam + ReduceLROnPlateau, and the outputs
// a user reads: metrics.csv, curves.svg, confusion.csv/.svg, best.safetensors and last.safetensors
// whose metadata (io/model_info.hpp) makes them loadable with models::load alone.
// The one thing to know: without pretrained weights there is no frozen phase (a frozen *random*
// backbone learns nothing); `finetune` says so in its output.
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/data/dataset.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/data/transforms.hpp"
#include "xfer/io/checkpoint.hpp"
#include "xfer/io/model_info.hpp"
#include "xfer/models/model.hpp"
#include "xfer/optim/adam.hpp"
#include "xfer/optim/plateau.hpp"
#include "xfer/train/curves.hpp"
#include "xfer/train/epoch.hpp"
#include "xfer/train/metrics.hpp"
#include "xfer/train/report.hpp"

namespace xfer::train {

inline const std::vector<float>& imagenet_mean() {
  static const std::vector<float> m{0.485f, 0.456f, 0.406f};
  return m;
}
inline const std::vector<float>& imagenet_std() {
  static const std::vector<float> s{0.229f, 0.224f, 0.225f};
  return s;
}

inline std::vector<std::string> preset_names() { return {"cifar", "imagenet"}; }

// A preset: how images are loaded, augmented for training and prepared for evaluation.
struct Preset {
  std::string name;
  int64_t image_size = 0;      // the network's input side
  int64_t load_height = 0, load_width = 0;  // resize on load (0 = keep the decoded size)
  io::EvalPipeline eval;
  data::Compose train;         // with augment = false: the eval transforms (after the same load)
};

// `size` 0 takes the preset's own (32 for cifar, 224 for imagenet).
inline Preset make_preset(const std::string& name, int64_t size = 0, bool augment = true) {
  Preset p;
  p.name = name;
  if (name == "cifar") {
    p.image_size = size > 0 ? size : 32;
    p.load_height = p.load_width = p.image_size;
    p.eval = {.load_height = p.image_size, .load_width = p.image_size, .mean = data::cifar10_mean(), .std = data::cifar10_std()};
    if (p.image_size == 32) p.train = data::cifar10_train_transforms();
    else
      p.train = data::Compose(data::RandomCrop(p.image_size, p.image_size / 8), data::RandomHorizontalFlip(0.5),
                              data::ColorJitter(0.2, 0.2, 0.2, 0.1), data::RandomRotation(15.0),
                              data::Normalize(data::cifar10_mean(), data::cifar10_std()));
  } else if (name == "imagenet") {
    p.image_size = size > 0 ? size : 224;
    // torchvision's reference: Resize(256) + CenterCrop(224), i.e. resize to size * 256 / 224.
    p.eval = {.resize = (p.image_size * 256 + 112) / 224, .crop_height = p.image_size, .crop_width = p.image_size,
              .mean = imagenet_mean(), .std = imagenet_std()};
    p.train = data::Compose(data::RandomResizedCrop(p.image_size), data::RandomHorizontalFlip(0.5),
                            data::Normalize(imagenet_mean(), imagenet_std()));
  } else {
    throw Error("unknown preset '" + name + "' (known: cifar, imagenet)");
  }
  if (!augment) p.train = p.eval.transforms();
  return p;
}

// The preset a weights file asks for: its metadata's recipe.preset, or "" when it has none.
inline std::string preset_of(const std::string& weights_path) {
  io::SafetensorsReader f(weights_path);
  if (!io::has_model_info(f)) return "";
  const auto info = io::read_model_info(f);
  return info.recipe.value("preset", std::string());
}

// Loads every tensor of a weights file except the head (which stays freshly initialised) and the
// optimizer state of a checkpoint; an xfer::Error when nothing of the backbone matches.
template <class T>
io::LoadReport load_backbone(models::Model<T>& net, const std::string& path) {
  const std::string head = net.head_name() + ".";
  auto report = io::load_safetensors(
      net, path, io::checkpoint_weights_options({.strict = false, .remap = [head](const std::string& k) {
        return k.rfind(head, 0) == 0 ? std::string() : k;
      }}));
  size_t backbone_missing = 0;
  for (const auto& k : report.missing)
    backbone_missing += k.rfind(head, 0) != 0 && !k.ends_with("num_batches_tracked");
  XFER_CHECK(!report.loaded.empty() && backbone_missing == 0 && report.mismatched.empty() && report.unexpected.empty(),
             "weights '", path,
             "' do not fit the backbone of ", net.type_name(), " (", report.summary(),
             report.problems.empty() ? "" : "; first: " + report.problems.front(), ")");
  return report;
}

struct FinetuneOptions {
  Preset preset = make_preset("cifar");
  bool pretrained = false;  // false: no frozen phase, lr stays `lr` (from-scratch recipe)
  int epochs = 40, freeze_epochs = 5;
  double lr = 1e-3, unfreeze_lr = 1e-4, weight_decay = 1e-4;
  int64_t batch = 64;
  double plateau_factor = 0.5;
  int plateau_patience = 2;
  bool freeze_bn_stats = false;
  uint64_t seed = 0;
  bool progress = true;
  bool verbose = true;                       // epoch lines on stdout
  std::filesystem::path out;                 // output directory (created)
  std::string architecture = "resnet18";     // recorded in the model files
  nlohmann::json recipe = nlohmann::json::object();  // extra fields for the metadata (method, data, ...)
};

struct FinetuneResult {
  std::vector<EpochMetrics> history;
  double best_val_acc = -1;
  int best_epoch = 0;
  ClassReport report;  // the best weights on the validation set (they are left in the model)
  double seconds = 0;
};

inline io::ModelInfo model_info(const FinetuneOptions& o, const std::vector<std::string>& classes) {
  nlohmann::json recipe = o.recipe;
  recipe["preset"] = o.preset.name;
  recipe["pretrained"] = o.pretrained;
  recipe["epochs"] = o.epochs;
  recipe["freeze_epochs"] = o.pretrained ? o.freeze_epochs : 0;
  recipe["lr"] = o.lr;
  recipe["unfreeze_lr"] = o.unfreeze_lr;
  recipe["weight_decay"] = o.weight_decay;
  recipe["batch"] = o.batch;
  recipe["seed"] = o.seed;
  recipe["train_transform"] = o.preset.train.describe();
  return {.architecture = o.architecture, .num_classes = static_cast<int64_t>(classes.size()), .class_names = classes,
          .input_height = o.preset.image_size, .input_width = o.preset.image_size, .eval = o.preset.eval, .recipe = recipe};
}

// Trains `net` (its head already sized for train's classes) and keeps the best validation weights.
template <class T>
FinetuneResult finetune(models::Model<T>& net, const data::Dataset& train, const data::Dataset& val,
                        const FinetuneOptions& o) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  XFER_CHECK(!o.out.empty(), "finetune: no output directory");
  XFER_CHECK(train.class_names() == val.class_names(), "finetune: train and validation sets have different classes");
  XFER_CHECK(net.num_classes() == train.num_classes(), "finetune: the model's head has ", net.num_classes(),
             " outputs for ", train.num_classes(), " classes");
  XFER_CHECK(val.size() > 0, "finetune: the validation set is empty");
  fs::create_directories(o.out);
  const fs::path best = o.out / "best.safetensors", last = o.out / "last.safetensors";
  const int freeze = o.pretrained ? o.freeze_epochs : 0;
  const io::ModelInfo info = model_info(o, train.class_names());
  auto say = [&](auto... args) {
    if (o.verbose) {
      std::printf(args...);
      std::fflush(stdout);
    }
  };
  if (!o.pretrained)
    say("no pretrained weights: training from random initialisation, no frozen phase, lr %g throughout "
        "(plateau-reduced)\n", o.lr);
  else
    say("pretrained weights: %d epoch(s) train only the head, then everything at lr %g\n", freeze, o.unfreeze_lr);

  data::Loader<T> train_loader(train, o.preset.train, {.batch_size = o.batch, .shuffle = true, .seed = o.seed});
  data::Loader<T> val_loader(val, o.preset.eval.transforms(), data::LoaderOptions{.batch_size = 256});
  optim::Adam<T> opt(net.parameters(), {.lr = o.lr, .weight_decay = o.weight_decay});
  optim::ReduceLROnPlateau plateau(opt, {.factor = o.plateau_factor, .patience = o.plateau_patience});

  FinetuneResult r;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    const bool frozen = epoch <= freeze;
    net.unfreeze_all();
    if (frozen) net.freeze_backbone({.bn_stats = o.freeze_bn_stats});
    if (!frozen && freeze > 0 && epoch == freeze + 1) {
      opt.set_lr(o.unfreeze_lr);
      say("epoch %d: backbone unfrozen, lr set to %g\n", epoch, o.unfreeze_lr);
    }
    train_loader.set_epoch(epoch - 1);
    const double lr = opt.lr(0);
    auto tr = train_epoch(net, opt, train_loader, {.epoch = epoch, .progress = o.progress});
    auto va = evaluate(net, val_loader);
    plateau.step(va.loss);
    r.history.push_back({.epoch = epoch, .train_loss = tr.loss, .train_acc = tr.accuracy, .val_loss = va.loss,
                         .val_acc = va.accuracy, .lr = lr, .seconds = tr.seconds + va.seconds,
                         .img_per_s = tr.img_per_s, .backbone_frozen = frozen});
    say("epoch %2d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  lr %.1e  %.1fs%s\n", epoch, o.epochs,
        tr.loss, 100 * tr.accuracy, va.loss, 100 * va.accuracy, lr, tr.seconds + va.seconds,
        frozen ? "  [backbone frozen]" : "");
    write_metrics_csv(o.out / "metrics.csv", r.history);
    write_curves_svg(o.out / "curves.svg", r.history);
    nlohmann::json state = {{"epoch", epoch}, {"history", r.history}, {"best_val_acc", r.best_val_acc},
                            {"plateau", plateau.state()}, {"seed", o.seed}, {"model", o.architecture}};
    if (va.accuracy > r.best_val_acc) {
      r.best_val_acc = va.accuracy;
      r.best_epoch = epoch;
      state["best_val_acc"] = va.accuracy;
      io::save_model(net, info, best.string(), {{"epoch", std::to_string(epoch)}, {"val_acc", std::to_string(va.accuracy)}});
    }
    io::save_checkpoint(last.string(), net, &opt, state, {io::model_info_entry(info)});
  }
  io::load_safetensors(net, best.string());
  r.report = class_report(net, val_loader);
  write_class_report(o.out, r.report);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.verbose) {
    std::printf("best weights (epoch %d) on %lld validation images: ", r.best_epoch, static_cast<long long>(val.size()));
    print_class_report(r.report);
    std::printf("wrote %s: metrics.csv curves.svg confusion.csv confusion.svg best.safetensors last.safetensors (%.1fs)\n",
                o.out.string().c_str(), r.seconds);
    std::fflush(stdout);
  }
  return r;
}

}  // namespace xfer::train
