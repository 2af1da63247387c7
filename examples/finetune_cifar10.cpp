// finetune_cifar10: the transfer-learning recipe PyTorch users run, in one C++ program.
//
// ResNet-18 (ImageNet stem) on 32x32 CIFAR-10, batch 64, 40 epochs; the first 5 epochs train only
// the new `fc` head with the backbone frozen, then everything is unfrozen at lr 1e-4; Adam (lr 1e-3,
// weight decay 1e-4); ReduceLROnPlateau on the validation loss (factor 0.5, patience 2); training
// augmentation RandomCrop(32, 4) + flip + ColorJitter + RandomRotation(15) + Normalize.
//
//   finetune_cifar10 --data /tmp/cifar10/train --weights resnet18.safetensors --out runs/c10
//
// Writes OUT/metrics.csv, OUT/curves.svg, OUT/last.safetensors (a resumable checkpoint, written
// atomically every epoch) and OUT/best.safetensors (weights with the best validation accuracy).
//
// Built with MPI (xfer::mpi), `mpirun -np N finetune_cifar10 ...` trains data parallel: --batch is
// per rank (global batch = N x --batch), gradients are averaged, rank 0 alone prints and writes.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <xfer/xfer.hpp>
#ifdef XFER_WITH_MPI
#include <xfer/dist.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

namespace fs = std::filesystem;
using namespace xfer;

namespace {

constexpr const char* kHowToGetData = R"(finetune_cifar10: --data is required.

Point it at CIFAR-10 in either format:
  * the official binary version (a directory with data_batch_1.bin ... data_batch_5.bin, test_batch.bin):
      curl -L https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz | tar -xz -C /tmp
      finetune_cifar10 --data /tmp/cifar-10-batches-bin --test-data /tmp/cifar-10-batches-bin
  * a folder of images laid out <root>/<class>/<image>.jpg|png (torchvision's ImageFolder), e.g.
      mkdir -p /tmp/cifar10 && tar -xzf ../shared/data/cifar10-train-jpg.tar.gz -C /tmp/cifar10
      finetune_cifar10 --data /tmp/cifar10/train
)";

struct Config {
  std::string data, test_data, model = "resnet18", weights, optimizer = "adam", out = "runs/finetune_cifar10";
  double val_split = 0.1, lr = 1e-3, unfreeze_lr = 1e-4, weight_decay = 1e-4, plateau_factor = 0.5;
  int epochs = 40, freeze_epochs = 5, threads = 0, plateau_patience = 2, image_size = 32, stop_after = 0;
  int64_t batch = 64, limit_train = 0;
  uint64_t seed = 0;
  bool resume = false, json = false, augment = true, freeze_bn_stats = false, progress = true, sync_bn = false;
};

// A CIFAR-10 binary directory or an ImageFolder root, resized to the training side.
std::unique_ptr<data::InMemoryDataset> open_dataset(const std::string& dir, bool train, int image_size) {
  return data::open_dataset(dir, {.train = train, .height = image_size, .width = image_size});
}

std::unique_ptr<optim::Optimizer<float>> make_optimizer(const Config& c, models::Model<float>& net) {
  if (c.optimizer == "adam") return std::make_unique<optim::Adam<float>>(net.parameters(), optim::AdamOptions{.lr = c.lr, .weight_decay = c.weight_decay});
  if (c.optimizer == "adamw") return std::make_unique<optim::AdamW<float>>(net.parameters(), optim::AdamWOptions{.lr = c.lr, .weight_decay = c.weight_decay});
  return std::make_unique<optim::SGD<float>>(net.parameters(), optim::SGDOptions{.lr = c.lr, .momentum = 0.9, .weight_decay = c.weight_decay, .nesterov = true});
}

data::Compose train_transforms(const Config& c) {
  if (!c.augment) return data::cifar10_eval_transforms();
  if (c.image_size == 32) return data::cifar10_train_transforms();
  return data::Compose(data::RandomCrop(c.image_size, c.image_size / 8), data::RandomHorizontalFlip(0.5),
                       data::ColorJitter(0.2, 0.2, 0.2, 0.1), data::RandomRotation(15.0),
                       data::Normalize(data::cifar10_mean(), data::cifar10_std()));
}

std::string pct(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f%%", 100 * v);
  return b;
}

int run(const Config& c) {
  const auto t0 = std::chrono::steady_clock::now();
  if (c.threads > 0) set_num_threads(c.threads);
  else threads_from_env();
#ifdef XFER_WITH_MPI
  dist::Communicator comm;  // a world of one without mpirun
  const int rank = comm.rank(), world = comm.size();
#else
  const int rank = 0, world = 1;
#endif
  if (rank != 0 && !std::freopen("/dev/null", "w", stdout)) return 1;  // rank 0 alone prints
  fs::create_directories(c.out);
  const fs::path out = c.out, last = out / "last.safetensors", best = out / "best.safetensors";

  // ---- data ---------------------------------------------------------------------------------
  std::printf("loading %s ...\n", c.data.c_str());
  std::fflush(stdout);
  auto full = open_dataset(c.data, true, c.image_size);
  XFER_CHECK(full->size() > 1, "'", c.data, "' holds ", full->size(), " image(s); need at least 2 to split off validation");
  auto split = data::random_split(*full, c.val_split, c.seed, /*stratified=*/true);
  std::vector<int64_t> train_idx = split.train;
  if (c.limit_train > 0 && c.limit_train < static_cast<int64_t>(train_idx.size())) {
    Rng pick(c.seed ^ 0x9e3779b97f4a7c15ull);  // a random subset, not the first classes in folder order
    for (size_t i = train_idx.size(); i > 1; --i) std::swap(train_idx[i - 1], train_idx[pick.below(i)]);
    train_idx.resize(static_cast<size_t>(c.limit_train));
    std::sort(train_idx.begin(), train_idx.end());
  }
  data::Subset train_set(*full, train_idx), val_set(*full, split.val);
  std::unique_ptr<data::InMemoryDataset> test_full;
  if (!c.test_data.empty()) test_full = open_dataset(c.test_data, false, c.image_size);
  const int64_t classes = full->num_classes();
  if (test_full)
    XFER_CHECK(test_full->num_classes() == classes, "--test-data has ", test_full->num_classes(), " classes, --data has ", classes);
  std::printf("data: %lld classes, %lld train, %lld validation%s\n", static_cast<long long>(classes),
              static_cast<long long>(train_set.size()), static_cast<long long>(val_set.size()),
              test_full ? (", " + std::to_string(test_full->size()) + " test").c_str() : "");

  data::Loader<float> train_loader(train_set, train_transforms(c), {.batch_size = c.batch, .shuffle = true, .seed = c.seed, .rank = rank, .world = world});
  std::optional<data::Loader<float>> val_loader;
  if (val_set.size() > 0) val_loader.emplace(val_set, data::cifar10_eval_transforms(), data::LoaderOptions{.batch_size = 256});

  // ---- model, optimizer, schedule -----------------------------------------------------------
  auto net = models::create<float>(c.model, {.num_classes = classes, .seed = c.seed});
  if (!c.weights.empty()) {
    auto report = io::load_safetensors(*net, c.weights, {.strict = false});
    XFER_CHECK(!report.loaded.empty(), "--weights '", c.weights, "': no tensor matches the model ", c.model, " (",
               report.summary(), ")");
    std::printf("weights: %s (%s; head '%s' freshly initialised for %lld classes)\n", c.weights.c_str(),
                report.summary().c_str(), net->head_name().c_str(), static_cast<long long>(classes));
  }
  auto opt = make_optimizer(c, *net);
  // What the model files say about themselves, so `predict --model OUT/best.safetensors` needs nothing else.
  const io::ModelInfo info{.architecture = c.model, .num_classes = classes, .class_names = full->class_names(),
                           .input_height = c.image_size, .input_width = c.image_size,
                           .eval = train::make_preset("cifar", c.image_size).eval,
                           .recipe = {{"preset", "cifar"}, {"program", "finetune_cifar10"}, {"epochs", c.epochs},
                                      {"freeze_epochs", c.freeze_epochs}, {"weights", c.weights}, {"seed", c.seed}}};
  optim::ReduceLROnPlateau plateau(*opt, {.factor = c.plateau_factor, .patience = c.plateau_patience});

  std::vector<train::EpochMetrics> history;
  double best_val_acc = -1;
  int start_epoch = 1;
  if (c.resume && fs::exists(last)) {
    auto st = io::load_checkpoint(last.string(), *net, opt.get());
    // The run state is validated field by field: a damaged file must give an error, not garbage.
    const std::string where = "--resume: " + last.string();
    XFER_CHECK(st.is_object() && st.contains("epoch") && st["epoch"].is_number_integer() && st.contains("seed") &&
                   st["seed"].is_number_unsigned() && st.contains("model") && st["model"].is_string() &&
                   st.contains("best_val_acc") && st["best_val_acc"].is_number() && st.contains("history") &&
                   st["history"].is_array() && st.contains("plateau"),
               where, ": the checkpoint's run state is incomplete or damaged");
    XFER_CHECK(st["seed"].get<uint64_t>() == c.seed && st["model"].get<std::string>() == c.model, where,
               " was written by a run with another --seed or --model");
    const int64_t done = st["epoch"].get<int64_t>();
    XFER_CHECK(done >= 0 && done <= c.epochs && static_cast<int64_t>(st["history"].size()) == done, where,
               ": the checkpoint says ", done, " epochs are done with ", st["history"].size(),
               " history rows (--epochs is ", c.epochs, ")");
    plateau.load_state(st["plateau"].get<optim::PlateauState>());
    history = st["history"].get<std::vector<train::EpochMetrics>>();
    best_val_acc = st["best_val_acc"].get<double>();
    start_epoch = static_cast<int>(done) + 1;
    std::printf("resumed from %s after epoch %d\n", last.string().c_str(), start_epoch - 1);
  } else if (c.resume) {
    std::printf("--resume: no %s yet, starting from scratch\n", last.string().c_str());
  }

  train::Replicas* replicas = nullptr;
#ifdef XFER_WITH_MPI
  // Rank 0's weights and optimizer state everywhere; every rank must have resumed the same epoch.
  comm.require_same(start_epoch, "the epoch to resume from (is OUT on a filesystem every rank sees?)");
  std::optional<dist::DataParallel<float>> dp;
  if (world > 1) replicas = &dp.emplace(*net, opt.get(), comm, dist::DataParallelOptions{.sync_batchnorm = c.sync_bn});
  if (world > 1) std::printf("data parallel: %d ranks x batch %lld = global batch %lld%s\n", world, static_cast<long long>(c.batch), static_cast<long long>(c.batch * world), c.sync_bn ? ", synchronized BN" : "");
#endif

  // ---- epochs -------------------------------------------------------------------------------
  double train_seconds = 0;
  int64_t train_images = 0;
  int epochs_run = 0;
  for (int epoch = start_epoch; epoch <= c.epochs; ++epoch) {
    const bool frozen = epoch <= c.freeze_epochs;
    if (frozen) {
      net->unfreeze_all();
      net->freeze_backbone({.bn_stats = c.freeze_bn_stats});
    } else {
      net->unfreeze_all();
      if (epoch == c.freeze_epochs + 1 && c.freeze_epochs > 0) {
        opt->set_lr(c.unfreeze_lr);
        std::printf("epoch %d: backbone unfrozen, lr set to %g\n", epoch, c.unfreeze_lr);
      }
    }
    train_loader.set_epoch(epoch - 1);
    const double lr = opt->lr(0);
    auto tr = train::train_epoch(*net, *opt, train_loader, {.epoch = epoch, .progress = c.progress, .replicas = replicas});
    train::EpochResult va;
    if (val_loader) va = train::evaluate(*net, *val_loader);
    if (val_loader) plateau.step(va.loss);
    train_seconds += tr.seconds;
    train_images += tr.samples;
    ++epochs_run;
    history.push_back({.epoch = epoch, .train_loss = tr.loss, .train_acc = tr.accuracy, .val_loss = va.loss,
                       .val_acc = va.accuracy, .lr = lr, .seconds = tr.seconds + va.seconds,
                       .img_per_s = tr.img_per_s, .backbone_frozen = frozen});
    std::printf("epoch %2d/%d  train loss %.4f acc %s  val loss %.4f acc %s  lr %.1e  %.1fs (%.0f img/s)%s\n", epoch,
                c.epochs, tr.loss, pct(tr.accuracy).c_str(), va.loss, pct(va.accuracy).c_str(), lr,
                tr.seconds + va.seconds, tr.img_per_s, frozen ? "  [backbone frozen]" : "");
    std::fflush(stdout);

    if (rank == 0) train::write_metrics_csv(out / "metrics.csv", history);
    if (rank == 0) train::write_curves_svg(out / "curves.svg", history);
    if (val_loader && va.accuracy > best_val_acc) {
      best_val_acc = va.accuracy;
      if (rank == 0) io::save_model(*net, info, best.string(), {{"epoch", std::to_string(epoch)}, {"val_acc", std::to_string(va.accuracy)}});
    }
    nlohmann::json state = {{"epoch", epoch}, {"history", history}, {"best_val_acc", best_val_acc},
                            {"plateau", plateau.state()}, {"seed", c.seed}, {"model", c.model}};
    if (rank == 0) io::save_checkpoint(last.string(), *net, opt.get(), state, {io::model_info_entry(info)});
    if (c.stop_after > 0 && epochs_run >= c.stop_after && epoch < c.epochs) {
      std::printf("stopping after %d epoch(s) as asked (--stop-after); continue with --resume\n", epochs_run);
      return 0;
    }
  }

  // ---- test ---------------------------------------------------------------------------------
  std::optional<double> test_acc;
  if (test_full) {
    if (fs::exists(best)) io::load_safetensors(*net, best.string());
    data::Loader<float> test_loader(*test_full, data::cifar10_eval_transforms(), {.batch_size = 256});
    auto te = train::evaluate(*net, test_loader);
    test_acc = te.accuracy;
    std::printf("test (best validation weights): loss %.4f acc %s on %lld images\n", te.loss, pct(te.accuracy).c_str(),
                static_cast<long long>(te.samples));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double val_acc = history.empty() ? NAN : history.back().val_acc;
  std::printf("done: val acc %s (best %s), %.1fs; wrote %s, %s, %s, %s\n", pct(val_acc).c_str(),
              pct(best_val_acc).c_str(), seconds, (out / "metrics.csv").c_str(), (out / "curves.svg").c_str(),
              last.c_str(), best.c_str());
  if (c.json) {
    nlohmann::json j = {{"val_acc", std::isfinite(val_acc) ? nlohmann::json(val_acc) : nlohmann::json(nullptr)},
                        {"best_val_acc", best_val_acc >= 0 ? nlohmann::json(best_val_acc) : nlohmann::json(nullptr)},
                        {"test_acc", test_acc ? nlohmann::json(*test_acc) : nlohmann::json(nullptr)},
                        {"epochs", static_cast<int>(history.size())},
                        {"seconds", seconds},
                        {"img_per_s", train_seconds > 0 ? train_images / train_seconds : 0.0}};
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Fine-tune a ResNet-18/VGG on CIFAR-10 (binary files or an image folder) with the freeze-then-unfreeze recipe"};
  app.add_option("--data", c.data, "CIFAR-10 binary directory or ImageFolder train root");
  app.add_option("--test-data", c.test_data, "Optional test set (same formats)");
  app.add_option("--val-split", c.val_split, "Fraction of --data held out for validation")->check(CLI::Range(0.0, 0.9));
  app.add_option("--model", c.model, "resnet18 | resnet18-cifar | vgg11 | ...")->check(CLI::IsMember(models::model_names()));
  app.add_option("--weights", c.weights, "Pretrained safetensors (loaded non-strict; the head is replaced)");
  app.add_option("--epochs", c.epochs, "Epochs in total")->check(CLI::Range(1, 100000));
  app.add_option("--freeze-epochs", c.freeze_epochs, "Epochs that train only the head")->check(CLI::Range(0, 100000));
  app.add_option("--batch", c.batch, "Batch size")->check(CLI::Range(1, 65536));
  app.add_option("--lr", c.lr, "Learning rate")->check(CLI::PositiveNumber);
  app.add_option("--unfreeze-lr", c.unfreeze_lr, "Learning rate from the first unfrozen epoch on")->check(CLI::PositiveNumber);
  app.add_option("--weight-decay", c.weight_decay, "Weight decay")->check(CLI::Range(0.0, 1.0));
  app.add_option("--optimizer", c.optimizer, "adam | adamw | sgd (Nesterov, momentum 0.9)")->check(CLI::IsMember({"adam", "adamw", "sgd"}));
  app.add_option("--plateau-patience", c.plateau_patience, "ReduceLROnPlateau patience (epochs)");
  app.add_option("--plateau-factor", c.plateau_factor, "ReduceLROnPlateau factor");
  app.add_option("--image-size", c.image_size, "Side the images are resized/cropped to")->check(CLI::Range(8, 1024));
  app.add_option("--threads", c.threads, "OpenMP threads (default: all cores or XFER_NUM_THREADS)");
  app.add_option("--seed", c.seed, "Seed for the split, shuffling, augmentation and initialisation");
  app.add_option("--limit-train", c.limit_train, "Use only N training images (a seeded random subset)");
  app.add_option("--out", c.out, "Output directory");
  app.add_flag("--resume", c.resume, "Continue from OUT/last.safetensors");
  app.add_flag("--json", c.json, "Print a JSON summary as the last line");
  app.add_flag("!--no-augment", c.augment, "Train without augmentation");
  app.add_flag("--sync-bn", c.sync_bn, "Under mpirun: BatchNorm statistics over all ranks' batches (default: each rank's own)");
  app.add_flag("--freeze-bn-stats", c.freeze_bn_stats, "Keep BatchNorm statistics fixed while the backbone is frozen");
  app.add_flag("!--no-progress", c.progress, "No progress bar (epoch lines only)");
  app.add_option("--stop-after", c.stop_after, "Stop after N epochs of this invocation, as if interrupted (for --resume)");
  CLI11_PARSE(app, argc, argv);
  if (c.data.empty()) {
    std::fputs(kHowToGetData, stderr);
    return 2;
  }
#ifdef XFER_WITH_MPI
  dist::Environment mpi(argc, argv);
#endif
  try {
    return run(c);
  } catch (const train::AgreedError& e) {  // every rank stops here together
    std::fprintf(stderr, "finetune_cifar10: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finetune_cifar10: error: %s\n", e.what());
#ifdef XFER_WITH_MPI
    if (dist::Environment::world_size() > 1) dist::Environment::abort(1);  // the other ranks would wait forever
#endif
    return 1;
  }
}
