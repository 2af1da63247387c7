// maml_fewshot: N-way K-shot classification on an ImageFolder with MAML, against the transfer
// baseline on the very same meta-test episodes.
//
//   Backbones: conv4 (4 x [3x3 conv 32, BN, ReLU, 2x2 max-pool] + linear head; full MAML) or resnet18
//   (CIFAR stem; ANIL: the inner loop adapts the head "fc" only, the outer loop trains everything).
//   Default split (CIFAR-10 class folders): meta-train airplane, automobile, bird, cat, deer;
//   meta-test dog, frog, horse, ship, truck. BatchNorm uses batch statistics in every episode
//   (transductive, as in the MAML paper). First order by default (--second-order for the Hessian term).
//   Transfer baseline: the same backbone trained normally (Adam, cross-entropy) on the meta-train
//   classes, then, per meta-test episode, a fresh linear head trained on the frozen support features
//   (backbone in eval mode) and evaluated on the query set.
//
//   tar xzf cifar10-train-jpg.tar.gz -C /tmp/cifar10
//   maml_fewshot --root /tmp/cifar10/train --shots 1 --iterations 2000 --episodes 600 --json
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <xfer/data/functional.hpp>
#include <xfer/data/image_folder.hpp>
#include <xfer/data/transforms.hpp>
#include <xfer/optim/adam.hpp>
#include <xfer/xfer.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

using namespace xfer;

namespace {

struct Net {
  std::shared_ptr<nn::Module<float>> model;
  std::shared_ptr<nn::Sequential<float>> features;  // the model's modules up to the head (shared), flattened output
  std::string head;
  int64_t feature_dim = 0;
};

Net make_net(const std::string& backbone, int64_t classes, uint64_t seed) {
  Net n;
  if (backbone == "conv4") {
    Rng rng(seed);
    auto s = std::make_shared<nn::Sequential<float>>();
    int64_t in = 3;
    for (int b = 0; b < 4; ++b) {
      s->push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{in, 32, 3, 1, 1}, rng));
      s->push_back(std::make_shared<nn::BatchNorm2d<float>>(32));
      s->push_back(std::make_shared<nn::ReLU<float>>());
      s->push_back(std::make_shared<nn::MaxPool2d<float>>(nn::MaxPool2dOptions{.kernel_size = 2}));
      in = 32;
    }
    s->push_back(std::make_shared<nn::Flatten<float>>());
    s->add("head", std::make_shared<nn::Linear<float>>(nn::LinearOptions{32 * 2 * 2, classes}, rng));
    s->flatten_parameters();
    n.model = s;
    n.head = "head";
    n.feature_dim = 128;
  } else {
    n.model = models::resnet18<float>({.num_classes = classes, .stem = models::Stem::Cifar, .seed = seed});
    n.head = "fc";
    n.feature_dim = 512;
  }
  n.features = std::make_shared<nn::Sequential<float>>();
  for (const auto& [name, child] : n.model->children())
    if (name != n.head) n.features->add(name, child);
  n.features->push_back(std::make_shared<nn::Flatten<float>>());
  return n;
}

// Normalised float batch of dataset samples.
Tensor<float> batch(const data::Dataset& ds, const std::vector<int64_t>& idx) {
  Tensor<float> out, img;
  for (size_t i = 0; i < idx.size(); ++i) {
    data::functional::to_tensor(ds.image(idx[i]), img);
    data::functional::normalize(img, data::cifar10_mean(), data::cifar10_std());
    if (i == 0) out.resize({static_cast<int64_t>(idx.size()), img.dim(0), img.dim(1), img.dim(2)});
    XFER_CHECK(img.numel() * static_cast<int64_t>(idx.size()) == out.numel(), "maml_fewshot: image ", idx[i],
               " has shape ", shape_str(img.shape()), "; all images must have the same size (use 32x32)");
    std::copy(img.begin(), img.end(), out.data() + static_cast<int64_t>(i) * img.numel());
  }
  return out;
}

std::vector<int32_t> class_ids(const data::Dataset& ds, const std::string& csv) {
  std::vector<int32_t> ids;
  std::stringstream ss(csv);
  std::string name;
  while (std::getline(ss, name, ',')) {
    const auto& names = ds.class_names();
    auto it = std::find(names.begin(), names.end(), name);
    XFER_CHECK(it != names.end(), "maml_fewshot: class '", name, "' is not a folder of the dataset");
    ids.push_back(static_cast<int32_t>(it - names.begin()));
  }
  return ids;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"MAML N-way K-shot classification on an ImageFolder, with the transfer baseline"};
  std::string root = "/tmp/cifar10/train", backbone = "conv4";
  std::string train_classes = "airplane,automobile,bird,cat,deer", test_classes = "dog,frog,horse,ship,truck";
  int ways = 5, shots = 1, queries = 15, train_queries = 0, iterations = 2000, meta_batch = 4, inner_steps = 5, test_steps = 10;
  int episodes = 600, transfer_iterations = 2000, transfer_batch = 64, finetune_steps = 100, threads = 2;
  double inner_lr = 0.01, outer_lr = 1e-3, finetune_lr = 0.01;
  uint64_t seed = 1;
  bool second_order = false, json = false;
  app.add_option("--root", root, "ImageFolder root (class sub-folders)");
  app.add_option("--backbone", backbone, "conv4 (full MAML) or resnet18 (ANIL)")->check(CLI::IsMember({"conv4", "resnet18"}));
  app.add_option("--train-classes", train_classes, "Comma-separated meta-train class folders");
  app.add_option("--test-classes", test_classes, "Comma-separated meta-test class folders");
  app.add_option("--ways", ways, "N classes per episode")->check(CLI::PositiveNumber);
  app.add_option("--shots", shots, "K support images per class")->check(CLI::PositiveNumber);
  app.add_option("--queries", queries, "Q query images per class")->check(CLI::PositiveNumber);
  app.add_option("--train-queries", train_queries, "Q per class during meta-training (0: same as --queries)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--iterations", iterations, "Meta-training iterations")->check(CLI::NonNegativeNumber);
  app.add_option("--meta-batch", meta_batch, "Tasks per meta-update")->check(CLI::PositiveNumber);
  app.add_option("--inner-steps", inner_steps, "Inner SGD steps in meta-training")->check(CLI::NonNegativeNumber);
  app.add_option("--test-steps", test_steps, "Inner SGD steps at meta-test")->check(CLI::NonNegativeNumber);
  app.add_option("--inner-lr", inner_lr, "Inner step size alpha");
  app.add_option("--outer-lr", outer_lr, "Adam learning rate (meta-training and transfer pretraining)");
  app.add_option("--episodes", episodes, "Meta-test episodes")->check(CLI::PositiveNumber);
  app.add_option("--transfer-iterations", transfer_iterations, "Pretraining steps of the transfer baseline");
  app.add_option("--transfer-batch", transfer_batch, "Pretraining batch size")->check(CLI::PositiveNumber);
  app.add_option("--finetune-steps", finetune_steps, "Adam steps of the baseline's new head per episode");
  app.add_option("--finetune-lr", finetune_lr, "Adam learning rate of the baseline's new head");
  app.add_option("--seed", seed, "Seed of initialisation and episodes");
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_flag("--second-order", second_order, "Second-order MAML (2 extra passes per inner step)");
  app.add_flag("--json", json, "Print a JSON summary as the last line");
  CLI11_PARSE(app, argc, argv);

  try {
    set_num_threads(threads);
    const auto t0 = std::chrono::steady_clock::now();
    data::ImageFolder ds(root);
    const auto labels = meta::labels_of(ds);
    const meta::ClassSplit split = meta::make_split(class_ids(ds, train_classes), class_ids(ds, test_classes));
    if (!json) std::printf("%lld images, %zu meta-train / %zu meta-test classes, loaded in %.1f s\n",
                           static_cast<long long>(ds.size()), split.train.size(), split.test.size(), seconds_since(t0));
    meta::EpisodeSampler train_sampler(
        labels, split.train, {.ways = ways, .shots = shots, .queries = train_queries ? train_queries : queries, .seed = seed});
    meta::EpisodeSampler test_sampler(labels, split.test,
                                      {.ways = ways, .shots = shots, .queries = queries, .seed = seed + 1000003});

    // ---- MAML meta-training ----
    const auto t_maml = std::chrono::steady_clock::now();
    Net net = make_net(backbone, ways, seed);
    meta::MAMLOptions<float> mopt{.inner_lr = inner_lr, .inner_steps = inner_steps, .first_order = !second_order};
    if (backbone == "resnet18") mopt.adapt = nn::Selector(net.head);
    meta::MAML<float> maml(*net.model, mopt);
    optim::Adam<float> opt(maml.parameters(), {.lr = outer_lr});
    meta::MeanCI recent;
    for (int it = 1; it <= iterations; ++it) {
      maml.zero_grad();
      for (int t = 0; t < meta_batch; ++t) {
        const meta::Episode e = train_sampler.episode(static_cast<uint64_t>(it) * meta_batch + t);
        auto r = maml.accumulate(batch(ds, e.support), e.support_labels, batch(ds, e.query), e.query_labels,
                                 1.0 / meta_batch);
        recent.add(r.query.accuracy());
      }
      opt.step();
      if (!json && (it % 100 == 0 || it == iterations)) {
        std::printf("iteration %5d  meta-train query accuracy (last 100) %.3f  %.0f s\n", it, recent.mean(),
                    seconds_since(t_maml));
        std::fflush(stdout);
        recent = meta::MeanCI{};
      }
    }
    const double maml_train_s = seconds_since(t_maml);

    // ---- Transfer baseline pretraining on the meta-train classes ----
    const auto t_transfer = std::chrono::steady_clock::now();
    Net base = make_net(backbone, static_cast<int64_t>(split.train.size()), seed + 17);
    {
      std::vector<int64_t> pool;
      std::vector<int32_t> remap(static_cast<size_t>(ds.num_classes()), -1);
      for (size_t i = 0; i < split.train.size(); ++i) remap[static_cast<size_t>(split.train[i])] = static_cast<int32_t>(i);
      for (size_t i = 0; i < labels.size(); ++i)
        if (remap[static_cast<size_t>(labels[i])] >= 0) pool.push_back(static_cast<int64_t>(i));
      optim::Adam<float> bopt(base.model->parameters(), {.lr = outer_lr});
      Rng rng(seed + 99);
      std::vector<int64_t> idx(static_cast<size_t>(transfer_batch));
      nn::Labels y(idx.size());
      meta::MeanCI acc;
      for (int it = 1; it <= transfer_iterations; ++it) {
        for (size_t i = 0; i < idx.size(); ++i) {
          idx[i] = pool[rng.below(pool.size())];
          y[i] = remap[static_cast<size_t>(labels[static_cast<size_t>(idx[i])])];
        }
        const Tensor<float> xb = batch(ds, idx);  // layers keep a pointer to their input until backward
        const Tensor<float>& logits = base.model->forward(xb);
        auto l = nn::cross_entropy(logits, y);
        acc.add(static_cast<double>(nn::count_correct(logits, y)) / static_cast<double>(y.size()));
        bopt.zero_grad();
        base.model->backward(l.grad, false);
        bopt.step();
        if (!json && (it % 200 == 0 || it == transfer_iterations)) {
          std::printf("transfer pretraining step %5d  train accuracy (last 200) %.3f  %.0f s\n", it, acc.mean(),
                      seconds_since(t_transfer));
          std::fflush(stdout);
          acc = meta::MeanCI{};
        }
      }
      base.model->eval();
    }
    const double transfer_train_s = seconds_since(t_transfer);

    // ---- Meta-test: the same episodes for both ----
    const auto t_test = std::chrono::steady_clock::now();
    meta::MeanCI maml_acc, transfer_acc;
    for (int ep = 0; ep < episodes; ++ep) {
      const meta::Episode e = test_sampler.episode(static_cast<uint64_t>(ep));
      const Tensor<float> sx = batch(ds, e.support), qx = batch(ds, e.query);
      maml.adapt(sx, e.support_labels, test_steps);
      maml_acc.add(maml.evaluate(qx, e.query_labels).accuracy());

      Tensor<float> fs = base.features->forward(sx);
      Tensor<float> fq = base.features->forward(qx);
      Rng hrng(seed * 31 + static_cast<uint64_t>(ep));
      nn::Linear<float> head(nn::LinearOptions{base.feature_dim, ways}, hrng);
      optim::Adam<float> hopt(head.parameters(), {.lr = finetune_lr});
      for (int s = 0; s < finetune_steps; ++s) {
        auto l = nn::cross_entropy(head.forward(fs), e.support_labels);
        hopt.zero_grad();
        head.backward(l.grad, false);
        hopt.step();
      }
      transfer_acc.add(static_cast<double>(nn::count_correct(head.forward(fq), e.query_labels)) /
                       static_cast<double>(e.query_labels.size()));
      if (!json && (ep + 1) % 100 == 0) {
        std::printf("episode %4d  MAML %.3f  transfer %.3f\n", ep + 1, maml_acc.mean(), transfer_acc.mean());
        std::fflush(stdout);
      }
    }
    const double test_s = seconds_since(t_test);

    std::printf("\n%d-way %d-shot, %d queries per class, %d meta-test episodes (%s, %s MAML%s)\n", ways, shots, queries,
                episodes, backbone.c_str(), second_order ? "second-order" : "first-order",
                backbone == "resnet18" ? ", ANIL" : "");
    std::printf("MAML      %d iterations x %d tasks (%d train queries), %d inner steps (test %d), alpha %g: accuracy %.2f%% +- %.2f%%\n",
                iterations, meta_batch, train_queries ? train_queries : queries, inner_steps, test_steps, inner_lr, 100 * maml_acc.mean(), 100 * maml_acc.ci95());
    std::printf("transfer  %d pretraining steps of %d images, new head %d Adam steps:  accuracy %.2f%% +- %.2f%%\n",
                transfer_iterations, transfer_batch, finetune_steps, 100 * transfer_acc.mean(), 100 * transfer_acc.ci95());
    std::printf("time: MAML meta-training %.0f s, transfer pretraining %.0f s, meta-test %.0f s, total %.0f s\n",
                maml_train_s, transfer_train_s, test_s, seconds_since(t0));
    if (json)
      std::cout << nlohmann::json{{"ways", ways},
                                  {"shots", shots},
                                  {"maml_acc", maml_acc.mean()},
                                  {"maml_ci95", maml_acc.ci95()},
                                  {"transfer_acc", transfer_acc.mean()},
                                  {"transfer_ci95", transfer_acc.ci95()},
                                  {"episodes", episodes},
                                  {"iterations", iterations},
                                  {"backbone", backbone},
                                  {"second_order", second_order}}
                       .dump()
                << "\n";
  } catch (const xfer::Error& e) {
    std::cerr << "maml_fewshot: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
