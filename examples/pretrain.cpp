// pretrain: make a source model on any machine, for `finetune --weights`.
//   --method supervised  trains a classifier on the labelled images of --classes (the recipe of
//                        train/finetune.hpp, no frozen phase); weights: OUT/best.safetensors
//   --method rotation    learns to predict 0/90/180/270 degree turns of unlabelled images
//                        (train/pretrain.hpp); weights: OUT/last.safetensors
// Both leave out the held-out split by file name (--val-fraction, --split-seed: keep them equal to
// finetune's), so no image a fine-tune validates on is ever seen here.
//
//   pretrain --data /tmp/cifar10/train --classes airplane,automobile,bird,cat,deer --method supervised --out runs/src
#include <CLI/CLI.hpp>
#include <xfer/xfer.hpp>

#include <cstdio>

using namespace xfer;

struct Config {
  std::string data, classes, method = "supervised", preset = "cifar", model = "resnet18", out = "runs/pretrain";
  int64_t labels_per_class = 0, batch = 64, image_size = 0, limit = 0;
  int epochs = 10, threads = 0;
  double lr = 1e-3, weight_decay = 1e-4, val_fraction = 0.1;
  uint64_t seed = 0, split_seed = 0;
  bool progress = true;
};

int run(const Config& c) {
  if (c.threads > 0) set_num_threads(c.threads);
  else threads_from_env();
  auto p = train::make_preset(c.preset, c.image_size);
  auto sel = data::select_images(c.data, {.classes = data::parse_class_list(c.classes),
                                          .labels_per_class = c.labels_per_class, .val_fraction = c.val_fraction,
                                          .split_seed = c.split_seed, .seed = c.seed,
                                          .load_height = p.load_height, .load_width = p.load_width});
  if (c.limit > 0 && c.limit < static_cast<int64_t>(sel.train.size())) {  // a seeded random subset
    Rng pick(splitmix64(c.seed ^ 0x4c494d4954ull));
    data::detail::shuffle(sel.train, pick);
    sel.train.resize(static_cast<size_t>(c.limit));
    std::sort(sel.train.begin(), sel.train.end());
  }
  data::Subset train_set(*sel.folder, sel.train), val_set(*sel.folder, sel.val);
  std::printf("pretrain --method %s on %s: %lld classes, %lld training images (%lld held-out images never used%s)\n",
              c.method.c_str(), c.data.c_str(), static_cast<long long>(sel.folder->num_classes()),
              static_cast<long long>(train_set.size()), static_cast<long long>(val_set.size()),
              c.method == "supervised" ? " for training; they validate the source model" : "");
  const nlohmann::json recipe = {{"data", c.data}, {"classes", sel.folder->class_names()}, {"split_seed", c.split_seed},
                                 {"val_fraction", c.val_fraction}, {"images", train_set.size()}};
  if (c.method == "supervised") {
    auto net = models::create<float>(c.model, {.num_classes = sel.folder->num_classes(), .seed = c.seed});
    nlohmann::json r = recipe;
    r["method"] = "supervised";
    train::finetune(*net, train_set, val_set,
                    {.preset = p, .epochs = c.epochs, .lr = c.lr, .weight_decay = c.weight_decay, .batch = c.batch,
                     .seed = c.seed, .progress = c.progress, .out = c.out, .architecture = c.model, .recipe = r});
    std::printf("source model: %s/best.safetensors (use it as finetune --weights)\n", c.out.c_str());
  } else {
    auto net = models::create<float>(c.model, {.num_classes = 4, .seed = c.seed});
    auto r = train::pretrain_rotation(*net, train_set,
                                      {.preset = p, .epochs = c.epochs, .lr = c.lr, .weight_decay = c.weight_decay,
                                       .batch = c.batch, .seed = c.seed, .progress = c.progress, .out = c.out,
                                       .architecture = c.model, .recipe = recipe});
    std::printf("source model: %s/last.safetensors (use it as finetune --weights), %.1fs\n", c.out.c_str(), r.seconds);
  }
  return 0;
}

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Pretrain a source model: supervised on labelled classes, or rotation prediction on unlabelled images"};
  app.add_option("--data", c.data, "ImageFolder root")->required();
  app.add_option("--method", c.method, "supervised | rotation")->check(CLI::IsMember({"supervised", "rotation"}));
  app.add_option("--classes", c.classes, "Comma-separated subset of the folder's classes (default: all)");
  app.add_option("--labels-per-class", c.labels_per_class, "Keep N images per class (seeded)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--limit", c.limit, "Use at most N training images (seeded subset)")->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--val-fraction", c.val_fraction, "Held-out fraction (by file name), never trained on")
      ->check(CLI::Range(0.01, 0.9));
  app.add_option("--split-seed", c.split_seed, "Seed of the held-out split (keep it equal to finetune's)");
  app.add_option("--preset", c.preset, "cifar | imagenet")->check(CLI::IsMember(train::preset_names()));
  app.add_option("--model", c.model, "Architecture")->check(CLI::IsMember(models::model_names()));
  app.add_option("--image-size", c.image_size, "Input side (default: the preset's)")->check(CLI::Range(8, 1024));
  app.add_option("--epochs", c.epochs, "Epochs")->check(CLI::Range(1, 100000));
  app.add_option("--batch", c.batch, "Batch size")->check(CLI::Range(1, 65536));
  app.add_option("--lr", c.lr, "Learning rate (Adam)")->check(CLI::PositiveNumber);
  app.add_option("--weight-decay", c.weight_decay, "Weight decay")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", c.seed, "Seed");
  app.add_option("--threads", c.threads, "OpenMP threads (default: all cores or XFER_NUM_THREADS)");
  app.add_option("--out", c.out, "Output directory");
  app.add_flag("!--no-progress", c.progress, "No progress bar");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pretrain: error: %s\n", e.what());
    return 1;
  }
}
