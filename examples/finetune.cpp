// finetune: fine-tune (or train from scratch) a classifier on any root/<class>/<image> folder with
// the library recipe (train/finetune.hpp). The preset comes from --weights' metadata, or --preset.
//
//   finetune --data /tmp/cifar10/train --classes dog,frog,horse,ship,truck --labels-per-class 100
//            --weights runs/pretrain/best.safetensors --out runs/ft
//
// Validation is the held-out split by file name (--val-fraction, --split-seed), the same images
// pretrain leaves out. Writes OUT/best.safetensors (loadable by `predict` alone), last.safetensors,
// metrics.csv, curves.svg, confusion.csv, confusion.svg and predictions.csv (file, label, predicted);
// with --onnx OUT.onnx also the best model as ONNX (io/onnx.hpp).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <xfer/xfer.hpp>
#if XFER_WITH_ONNX
#include <xfer/io/onnx.hpp>
#endif

#include <cstdio>
#include <iostream>

using namespace xfer;

struct Config {
  std::string data, classes, weights, preset, model = "resnet18", out = "runs/finetune", onnx;
  int64_t labels_per_class = 0, batch = 64, image_size = 0;
  int epochs = 30, freeze_epochs = 5, threads = 0;
  double lr = 1e-3, unfreeze_lr = 1e-4, weight_decay = 1e-4, val_fraction = 0.1;
  uint64_t seed = 0, split_seed = 0;
  bool json = false, progress = true, augment = true;
};

int run(const Config& c) {
#if !XFER_WITH_ONNX
  XFER_CHECK(c.onnx.empty(), "--onnx: this finetune was built without ONNX (Debian: apt-get install libonnx-dev, then rebuild)");
#endif
  if (c.threads > 0) set_num_threads(c.threads);
  else threads_from_env();
  std::string preset = c.preset;
  if (!c.weights.empty()) {
    const std::string from_file = train::preset_of(c.weights);
    if (preset.empty()) preset = from_file;
    else if (!from_file.empty() && from_file != preset)
      std::printf("note: --preset %s overrides the weights' preset %s\n", preset.c_str(), from_file.c_str());
  }
  if (preset.empty()) preset = "cifar";
  auto p = train::make_preset(preset, c.image_size, c.augment);
  std::printf("preset %s: %lld px, eval %s\n", p.name.c_str(), static_cast<long long>(p.image_size),
              p.eval.describe().c_str());

  auto sel = data::select_images(c.data, {.classes = data::parse_class_list(c.classes), .labels_per_class = c.labels_per_class,
                                          .val_fraction = c.val_fraction, .split_seed = c.split_seed, .seed = c.seed,
                                          .load_height = p.load_height, .load_width = p.load_width});
  data::Subset train_set(*sel.folder, sel.train), val_set(*sel.folder, sel.val);
  std::printf("data %s: %lld classes, %lld training images%s, %lld held-out validation images\n", c.data.c_str(),
              static_cast<long long>(sel.folder->num_classes()), static_cast<long long>(train_set.size()),
              c.labels_per_class > 0 ? (" (" + std::to_string(c.labels_per_class) + " per class)").c_str() : "",
              static_cast<long long>(val_set.size()));

  auto net = models::create<float>(c.model, {.num_classes = sel.folder->num_classes(), .seed = c.seed});
  if (!c.weights.empty()) {
    auto report = train::load_backbone(*net, c.weights);
    std::printf("weights %s: %s (head '%s' freshly initialised)\n", c.weights.c_str(), report.summary().c_str(),
                net->head_name().c_str());
  }
  auto r = train::finetune(*net, train_set, val_set,
                           {.preset = p, .pretrained = !c.weights.empty(), .epochs = c.epochs,
                            .freeze_epochs = c.freeze_epochs, .lr = c.lr, .unfreeze_lr = c.unfreeze_lr,
                            .weight_decay = c.weight_decay, .batch = c.batch, .seed = c.seed, .progress = c.progress,
                            .out = c.out, .architecture = c.model,
                            .recipe = {{"data", c.data}, {"classes", sel.folder->class_names()},
                                       {"labels_per_class", c.labels_per_class}, {"weights", c.weights},
                                       {"split_seed", c.split_seed}, {"val_fraction", c.val_fraction}}});
  // The fine-tune's own verdict on every held-out image (best weights), for checking and for `predict`.
  std::string csv = "file,label,predicted\n";
  const auto& names = sel.folder->class_names();
  for (size_t i = 0; i < sel.val.size(); ++i)
    csv += sel.folder->path(sel.val[i]).string() + "," + names[static_cast<size_t>(sel.folder->label(sel.val[i]))] + "," +
           names[static_cast<size_t>(r.report.predictions[i])] + "\n";
  io::write_file_atomic(std::filesystem::path(c.out) / "predictions.csv", csv);
#if XFER_WITH_ONNX
  if (!c.onnx.empty()) {  // the best weights are in `net` (train::finetune leaves them there)
    net->eval();
    io::save_onnx(*net, c.onnx, {.input_shape = {3, p.image_size, p.image_size}});
    std::printf("onnx %s: best model (epoch %d), input [N, 3, %lld, %lld]\n", c.onnx.c_str(), r.best_epoch,
                static_cast<long long>(p.image_size), static_cast<long long>(p.image_size));
  }
#endif
  if (c.json)
    std::cout << nlohmann::json{{"best_val_acc", r.best_val_acc}, {"best_epoch", r.best_epoch},
                                {"report", train::to_json(r.report)}, {"seconds", r.seconds}}
                     .dump()
              << std::endl;
  return 0;
}

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Fine-tune a classifier on an image folder root/<class>/<image> (presets cifar, imagenet)"};
  app.add_option("--data", c.data, "ImageFolder root")->required();
  app.add_option("--classes", c.classes, "Comma-separated subset of the folder's classes (default: all)");
  app.add_option("--labels-per-class", c.labels_per_class, "Keep N labelled training images per class (seeded)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--val-fraction", c.val_fraction, "Held-out fraction (by file name)")->check(CLI::Range(0.01, 0.9));
  app.add_option("--split-seed", c.split_seed, "Seed of the held-out split (keep it equal to pretrain's)");
  app.add_option("--weights", c.weights, "Pretrained safetensors (head replaced); its metadata picks the preset");
  app.add_option("--preset", c.preset, "cifar | imagenet (default: from --weights, else cifar)")
      ->check(CLI::IsMember(train::preset_names()));
  app.add_option("--model", c.model, "Architecture")->check(CLI::IsMember(models::model_names()));
  app.add_option("--image-size", c.image_size, "Input side (default: the preset's, 32 or 224)")->check(CLI::Range(8, 1024));
  app.add_option("--epochs", c.epochs, "Epochs")->check(CLI::Range(1, 100000));
  app.add_option("--freeze-epochs", c.freeze_epochs, "Head-only epochs (with --weights only)")->check(CLI::Range(0, 100000));
  app.add_option("--batch", c.batch, "Batch size")->check(CLI::Range(1, 65536));
  app.add_option("--lr", c.lr, "Learning rate")->check(CLI::PositiveNumber);
  app.add_option("--unfreeze-lr", c.unfreeze_lr, "Learning rate once the backbone is unfrozen")->check(CLI::PositiveNumber);
  app.add_option("--weight-decay", c.weight_decay, "Weight decay")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", c.seed, "Seed (labelled subset, shuffling, augmentation, initialisation)");
  app.add_option("--threads", c.threads, "OpenMP threads (default: all cores or XFER_NUM_THREADS)");
  app.add_option("--out", c.out, "Output directory");
  app.add_option("--onnx", c.onnx, "Also export the best model to this ONNX file");
  app.add_flag("!--no-augment", c.augment, "Train with the eval transforms only");
  app.add_flag("!--no-progress", c.progress, "No progress bar");
  app.add_flag("--json", c.json, "Print a JSON summary as the last line");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finetune: error: %s\n", e.what());
    return 1;
  }
}
