// fewshot: N-way K-shot image classification with a chosen few-shot method, meta-trained on some
// classes and tested on 600 (--episodes) fixed episodes of other classes, reported as accuracy ± 95% CI.
//
//   --method maml | mamlpp | anil | protonet | baseline | baselinepp
//     maml      MAML (first order unless --order second), BatchNorm with batch statistics (transductive)
//     mamlpp    MAML++: multi-step loss (annealed over the first 10%), learned per-layer per-step inner
//               rates, per-step BN statistics, first order for the first third then second order,
//               cosine meta learning rate
//     anil      MAML whose inner loop adapts the head "fc" only
//     protonet  prototypical network (--metric euclidean | cosine) on the backbone's features
//     baseline  / baselinepp: the backbone trained with a linear / cosine classifier on the meta-train
//               classes, then per episode a new linear / cosine classifier on frozen support features
//
// Meta-train classes come from --data (--train-classes, default: every class when --test-data is
// given, else CIFAR-10's airplane..deer); meta-test episodes from --test-data, or from the
// --test-classes of --data (default dog..truck). --budget S meta-trains for about S CPU seconds of
// this process (the iteration count is set from the first iterations' speed, so the schedules know
// their length; CPU time keeps budgets equal on a busy machine).
//
//   fewshot --method protonet --data /tmp/cifar10/train --shots 5 --budget 120 --json
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <xfer/models/conv4.hpp>
#include <xfer/xfer.hpp>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <iostream>
#include <sstream>

using namespace xfer;

namespace {

std::vector<int32_t> class_ids(const data::Dataset& ds, const std::string& csv) {
  std::vector<int32_t> ids;
  if (csv.empty()) {
    for (int32_t c = 0; c < ds.num_classes(); ++c) ids.push_back(c);
    return ids;
  }
  std::stringstream ss(csv);
  for (std::string name; std::getline(ss, name, ',');) {
    const auto& names = ds.class_names();
    auto it = std::find(names.begin(), names.end(), name);
    XFER_CHECK(it != names.end(), "class '", name, "' is not a folder of the dataset");
    ids.push_back(static_cast<int32_t>(it - names.begin()));
  }
  return ids;
}

meta::EpisodeSampler sampler(const std::vector<int32_t>& labels, const std::vector<int32_t>& classes,
                             meta::EpisodeOptions o, const char* which) {
  try {
    return meta::EpisodeSampler(labels, classes, o);
  } catch (const Error& e) {
    throw Error(std::string(which) + " episodes: " + e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Few-shot classification: MAML, MAML++, ANIL, ProtoNet and the transfer baselines"};
  std::string method = "protonet", backbone = "conv4", data_root = "/tmp/cifar10/train", test_root, weights, metric = "euclidean";
  std::string train_classes, test_classes = "dog,frog,horse,ship,truck";
  int ways = 5, shots = 1, queries = 15, train_queries = 15, meta_batch = 4, inner_steps = 5, test_steps = 10;
  int episodes = 600, image_size = 0, width = 32, batch = 64, finetune_steps = 100, threads = 2;
  int64_t iterations = 1000;
  double budget = 0, inner_lr = 0.01, outer_lr = 1e-3, finetune_lr = 0.01;
  uint64_t seed = 1;
  std::string order = "first";
  bool json = false;
  app.add_option("--method", method, "maml, mamlpp, anil, protonet, baseline or baselinepp")
      ->check(CLI::IsMember({"maml", "mamlpp", "anil", "protonet", "baseline", "baselinepp"}));
  app.add_option("--data", data_root, "ImageFolder root of the meta-train classes");
  app.add_option("--test-data", test_root, "ImageFolder root of the meta-test classes (default: --test-classes of --data)");
  app.add_option("--train-classes", train_classes, "Comma-separated meta-train class folders");
  app.add_option("--test-classes", test_classes, "Comma-separated meta-test class folders (of --data, or of --test-data)");
  app.add_option("--weights", weights, "Backbone weights (safetensors) to start from; the head is not loaded");
  app.add_option("--image-size", image_size, "Resize every image to this square size on load (0: keep)")->check(CLI::NonNegativeNumber);
  app.add_option("--backbone", backbone, "conv4, or resnet18 (CIFAR stem up to 64 px; MAML methods: use anil)")
      ->check(CLI::IsMember({"conv4", "resnet18"}));
  app.add_option("--width", width, "Conv-4 channels per block")->check(CLI::PositiveNumber);
  app.add_option("--ways", ways, "N classes per episode")->check(CLI::PositiveNumber);
  app.add_option("--shots", shots, "K support images per class")->check(CLI::PositiveNumber);
  app.add_option("--queries", queries, "Q query images per class at meta-test")->check(CLI::PositiveNumber);
  app.add_option("--train-queries", train_queries, "Q per class in meta-training episodes")->check(CLI::PositiveNumber);
  app.add_option("--iterations", iterations, "Meta-training iterations (baselines: pretraining steps)")->check(CLI::NonNegativeNumber);
  app.add_option("--budget", budget, "Meta-training CPU seconds (overrides --iterations; 0: use --iterations)");
  app.add_option("--meta-batch", meta_batch, "Episodes per meta-update")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "Images per pretraining step of the baselines")->check(CLI::PositiveNumber);
  app.add_option("--inner-steps", inner_steps, "Inner SGD steps in meta-training")->check(CLI::PositiveNumber);
  app.add_option("--test-steps", test_steps, "Inner SGD steps at meta-test")->check(CLI::NonNegativeNumber);
  app.add_option("--inner-lr", inner_lr, "Inner step size alpha (MAML++: initial per-step rates)");
  app.add_option("--outer-lr", outer_lr, "Adam learning rate of meta-training / pretraining");
  app.add_option("--metric", metric, "ProtoNet distance")->check(CLI::IsMember({"euclidean", "cosine"}));
  app.add_option("--episodes", episodes, "Meta-test episodes")->check(CLI::PositiveNumber);
  app.add_option("--finetune-steps", finetune_steps, "Adam steps of the baselines' new classifier per episode");
  app.add_option("--finetune-lr", finetune_lr, "Adam learning rate of the baselines' new classifier");
  app.add_option("--seed", seed, "Seed of initialisation and training episodes (test episodes are fixed)");
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--order", order, "MAML/ANIL derivative order: first | second (2 extra passes per inner step)")
      ->check(CLI::IsMember({"first", "second"}));
  app.add_flag("--json", json, "Print a JSON summary as the last line");
  CLI11_PARSE(app, argc, argv);

  try {
    set_num_threads(threads);
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
    // The budget counts CPU seconds of this process, so runs on a busy machine get the same compute.
    auto cpu_now = [] { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; };
    const data::ImageFolderOptions load{.height = image_size, .width = image_size};
    data::ImageFolder train_ds(data_root, load);
    std::unique_ptr<data::ImageFolder> test_owned = test_root.empty() ? nullptr : std::make_unique<data::ImageFolder>(test_root, load);
    const data::ImageFolder& test_ds = test_owned ? *test_owned : train_ds;
    meta::check_uniform_size(train_ds, data_root);
    if (test_owned) meta::check_uniform_size(test_ds, test_root);
    if (train_classes.empty() && !test_owned) train_classes = "airplane,automobile,bird,cat,deer";
    if (test_owned && app.count("--test-classes") == 0) test_classes.clear();
    const auto train_ids = class_ids(train_ds, train_classes), test_ids = class_ids(test_ds, test_classes);
    if (!test_owned) meta::make_split(train_ids, test_ids);
    const auto train_labels = meta::labels_of(train_ds), test_labels = meta::labels_of(test_ds);
    const auto train_sampler = sampler(train_labels, train_ids, {.ways = ways, .shots = shots, .queries = train_queries, .seed = seed}, "meta-train");
    const auto test_sampler = sampler(test_labels, test_ids, {.ways = ways, .shots = shots, .queries = queries, .seed = 1000003}, "meta-test");
    std::vector<int64_t> pool;  // meta-train images, for the baselines and the normalisation
    std::vector<int32_t> remap(static_cast<size_t>(train_ds.num_classes()), -1);
    for (size_t i = 0; i < train_ids.size(); ++i) remap[static_cast<size_t>(train_ids[i])] = static_cast<int32_t>(i);
    for (size_t i = 0; i < train_labels.size(); ++i)
      if (remap[static_cast<size_t>(train_labels[i])] >= 0) pool.push_back(static_cast<int64_t>(i));
    const meta::Normalization norm = meta::channel_statistics(train_ds, pool);
    const int64_t side = train_ds.image(0).height;
    XFER_CHECK(train_ds.image(0).width == side && test_ds.image(0).height == side && test_ds.image(0).width == side,
               "meta-train and meta-test images must be square and of one size; use --image-size");
    if (!json)
      std::printf("%lld meta-train images (%zu classes), meta-test %zu classes, %lldx%lld, loaded in %.1f s\n",
                  static_cast<long long>(pool.size()), train_ids.size(), test_ids.size(), static_cast<long long>(side),
                  static_cast<long long>(side), since(t0));

    // ---- the model ----
    const bool is_maml = method == "maml" || method == "mamlpp" || method == "anil";
    const bool is_baseline = method == "baseline" || method == "baselinepp";
    const int64_t classes = is_maml ? ways : is_baseline ? static_cast<int64_t>(train_ids.size()) : 0;
    std::shared_ptr<nn::Module<float>> net, encoder;  // encoder: the features ProtoNet / the baselines use
    if (backbone == "conv4") {
      const models::Conv4Options copt{.in_channels = train_ds.image(0).channels, .width = width, .image_size = side,
                                      .num_classes = classes, .seed = seed};
      auto c4 = models::conv4<float>(copt);
      if (method == "baselinepp")  // Baseline++ pretrains with a cosine classifier too
        c4->replace(c4->size() - 1, std::make_shared<meta::CosineClassifier<float>>(
                                        meta::CosineClassifierOptions{models::conv4_feature_dim(copt), classes}));
      net = c4;
    } else {
      XFER_CHECK(method != "baselinepp", "--method baselinepp needs --backbone conv4");
      net = models::resnet18<float>({.num_classes = std::max<int64_t>(classes, 1), .stem = side <= 64 ? models::Stem::Cifar
                                                                                                     : models::Stem::ImageNet,
                                     .seed = seed});
    }
    net->flatten_parameters();
    if (backbone == "conv4" && classes == 0) {
      encoder = net;  // Conv-4 without a head outputs features
    } else if (classes == 0 || is_baseline) {
      auto f = meta::features_of<float>(*net, "fc");
      if (backbone != "conv4") f->push_back(std::make_shared<nn::Flatten<float>>());
      encoder = f;
    }
    if (!weights.empty()) {
      auto r = io::load_safetensors(*net, weights, {.strict = false});
      for (const auto& k : r.missing)
        XFER_CHECK(k.rfind("fc.", 0) == 0, "", weights, " lacks backbone tensor '", k, "' (--backbone ", backbone, ")");
      for (const auto& k : r.mismatched)
        XFER_CHECK(k.rfind("fc.", 0) == 0, "backbone tensor '", k, "' of ", weights, " has another shape (",
                   r.summary(), ")");
      if (!json) std::printf("loaded %zu tensors from %s\n", r.loaded.size(), weights.c_str());
    }
    meta::MAMLOptions<float> mopt{.inner_lr = inner_lr, .inner_steps = inner_steps, .first_order = order == "first"};
    if (method == "anil") mopt.adapt = nn::Selector("fc");
    if (method == "mamlpp")
      mopt = {.inner_lr = inner_lr, .inner_steps = inner_steps, .first_order = false, .multi_step_loss = true,
              .learn_step_lrs = true, .per_step_bn_stats = true};
    std::unique_ptr<meta::MAML<float>> maml = is_maml ? std::make_unique<meta::MAML<float>>(*net, mopt) : nullptr;
    meta::ProtoNet<float> proto(encoder ? *encoder : *net,
                                {.metric = metric == "cosine" ? meta::Metric::Cosine : meta::Metric::SquaredEuclidean});
    optim::Adam<float> opt(maml ? maml->parameters() : net->parameters(), {.lr = outer_lr});

    // ---- meta-training (baselines: pretraining) ----
    Rng rng(seed + 99);
    const int64_t per_episode = static_cast<int64_t>(ways) * (shots + train_queries);
    auto train_iteration = [&](int64_t it) -> double {  // returns the mean training loss
      double loss = 0;
      opt.zero_grad();
      if (maml) maml->zero_grad();
      if (is_baseline) {
        std::vector<int64_t> idx(static_cast<size_t>(batch));
        nn::Labels y(idx.size());
        for (size_t i = 0; i < idx.size(); ++i) {
          idx[i] = pool[rng.below(pool.size())];
          y[i] = remap[static_cast<size_t>(train_labels[static_cast<size_t>(idx[i])])];
        }
        const Tensor<float> x = meta::make_batch(train_ds, idx, norm);
        auto l = nn::cross_entropy(net->forward(x), y);
        net->backward(l.grad, false);
        loss = l.loss;
      } else {
        for (int t = 0; t < meta_batch; ++t) {
          const meta::Episode e = train_sampler.episode(static_cast<uint64_t>(it * meta_batch + t));
          const Tensor<float> sx = meta::make_batch(train_ds, e.support, norm), qx = meta::make_batch(train_ds, e.query, norm);
          loss += (maml ? maml->accumulate(sx, e.support_labels, qx, e.query_labels, 1.0 / meta_batch).objective
                        : proto.accumulate(sx, e.support_labels, qx, e.query_labels, 1.0 / meta_batch).loss) / meta_batch;
        }
      }
      // (Data-parallel meta-training would all-reduce the gradients of opt's parameters here.)
      opt.step();
      return loss;
    };
    const auto t_train = clock::now();
    const double cpu_train = cpu_now();
    auto cpu_since = [&] { return cpu_now() - cpu_train; };
    int64_t done = 0;
    double loss = 0;
    auto run_until = [&](double seconds) {
      for (const int64_t start = done; done < start + 2 || cpu_since() < seconds; ++done) loss = train_iteration(done);
    };
    if (budget > 0) {  // the iteration count from the speed of the first iterations (which count as training)
      double cost = 0;
      if (method == "mamlpp") {  // first order for a third of the run, second order after: time both
        maml->set_schedule(1, int64_t(1) << 40);
        run_until(0.025 * budget);
        const double t_fo = cpu_since() / static_cast<double>(done);
        const int64_t n_fo = done;
        maml->set_schedule(1, 0);
        run_until(0.05 * budget);
        cost = t_fo / 3 + 2 * (cpu_since() - t_fo * static_cast<double>(n_fo)) / static_cast<double>(done - n_fo) / 3;
      } else {
        run_until(0.05 * budget);
        cost = cpu_since() / static_cast<double>(done);
      }
      iterations = done + std::max<int64_t>(0, static_cast<int64_t>((budget - cpu_since()) / cost));
    }
    if (method == "mamlpp") maml->set_schedule(std::max<int64_t>(1, iterations / 10), iterations / 3);
    optim::CosineAnnealingLR cosine(opt, {.T_max = std::max<int64_t>(iterations - done, 1), .eta_min = 0.0});
    train::ProgressBar bar({.label = method, .total_batches = iterations, .out = json ? stderr : stdout});
    for (int64_t it = done; it < iterations; ++it) {
      if (method == "mamlpp") maml->set_iteration(it);
      loss = 0.9 * loss + 0.1 * train_iteration(it);
      if (method == "mamlpp") cosine.step();
      bar.update(it + 1, (it + 1) * (is_baseline ? batch : per_episode * meta_batch), loss);
    }
    bar.finish();
    const double train_s = since(t_train), train_cpu_s = cpu_since();
    const int64_t train_episodes = is_baseline ? 0 : iterations * meta_batch;
    if (!json)
      std::printf("meta-training: %lld iterations in %.1f s (%.1f CPU s), %.2f %s/s\n", static_cast<long long>(iterations),
                  train_s, train_cpu_s, static_cast<double>(is_baseline ? iterations * batch : train_episodes) / train_s,
                  is_baseline ? "images" : "episodes");

    // ---- meta-test on fixed episodes ----
    const auto t_test = clock::now();
    meta::MeanCI acc;
    if (!maml) net->eval();  // ProtoNet and the baselines use the running statistics; MAML adapts in training mode
    train::ProgressBar test_bar({.label = "meta-test", .total_batches = episodes, .out = json ? stderr : stdout});
    for (int ep = 0; ep < episodes; ++ep) {
      const meta::Episode e = test_sampler.episode(static_cast<uint64_t>(ep));
      const Tensor<float> sx = meta::make_batch(test_ds, e.support, norm), qx = meta::make_batch(test_ds, e.query, norm);
      meta::Evaluation r;
      if (maml) {
        maml->adapt(sx, e.support_labels, test_steps);
        r = maml->evaluate(qx, e.query_labels);
      } else if (!is_baseline) {
        r = proto.evaluate(sx, e.support_labels, qx, e.query_labels);
      } else {
        const Tensor<float> fs = encoder->forward(sx);
        const Tensor<float>& fq = encoder->forward(qx);
        r = meta::fit_head_and_evaluate(fs, e.support_labels, fq, e.query_labels, ways,
                                        {.cosine = method == "baselinepp", .steps = finetune_steps, .lr = finetune_lr,
                                         .seed = seed * 31 + static_cast<uint64_t>(ep)});
      }
      acc.add(r.accuracy());
      test_bar.update(ep + 1, (ep + 1) * static_cast<int64_t>(e.support.size() + e.query.size()), 1 - acc.mean());
    }
    test_bar.finish();
    const double test_s = since(t_test), total_s = since(t0);
    std::printf("%s %d-way %d-shot, %d episodes: accuracy %.2f%% +- %.2f%%  (meta-training %.0f s, test %.0f s)\n",
                method.c_str(), ways, shots, episodes, 100 * acc.mean(), 100 * acc.ci95(), train_s, test_s);
    if (json)
      std::cout << nlohmann::json{{"method", method}, {"shots", shots}, {"ways", ways}, {"acc", acc.mean()},
                                  {"ci95", acc.ci95()}, {"episodes", episodes}, {"seconds", total_s},
                                  {"train_seconds", train_s}, {"train_cpu_seconds", train_cpu_s}, {"iterations", iterations},
                                  {"train_episodes_per_s", static_cast<double>(train_episodes) / train_s},
                                  {"seed", seed}, {"budget", budget}, {"backbone", backbone}}
                       .dump()
                << "\n";
  } catch (const std::exception& e) {
    std::cerr << "fewshot: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
