// meta::EpisodeSampler: N-way K-shot Q-query tasks from any labelled dataset (only the labels are
// needed), over a chosen set of classes, with labels remapped to 0..N-1. split_classes() makes
// disjoint class splits for meta-train / meta-test.
//
// The one thing to know: episode(id) is a pure function of (labels, classes, options, seed, id) —
// the same id always gives the same task, on any thread and in any order, so a meta-test set is
// "episodes 0..599" and two methods can be compared on the very same tasks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/data/stack.hpp"
#include "xfer/nn/loss.hpp"

namespace xfer::meta {

struct EpisodeOptions {
  int ways = 5;      // N classes per task
  int shots = 1;     // K support examples per class
  int queries = 15;  // Q query examples per class
  uint64_t seed = 0;
};

// Dataset indices of one task; support/query are grouped by class (class 0 first), labels are the
// positions of the classes in `classes` (0..N-1).
struct Episode {
  std::vector<int32_t> classes;  // original class ids, in label order
  std::vector<int64_t> support, query;
  nn::Labels support_labels, query_labels;
};


// The labels of a dataset with size() and label(i) (in-memory, ImageFolder, CIFAR-10, ...).
template <class Dataset>
std::vector<int32_t> labels_of(const Dataset& ds) {
  std::vector<int32_t> out(static_cast<size_t>(ds.size()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int32_t>(ds.label(static_cast<int64_t>(i)));
  return out;
}

class EpisodeSampler {
 public:
  // Samples from `classes` only (each must occur in `labels`); an empty list means every class present.
  EpisodeSampler(const std::vector<int32_t>& labels, std::vector<int32_t> classes, EpisodeOptions opt)
      : opt_(opt) {
    XFER_CHECK(opt.ways > 0 && opt.shots > 0 && opt.queries >= 0, "EpisodeSampler: need ways > 0, shots > 0 and ",
               "queries >= 0, got ways=", opt.ways, " shots=", opt.shots, " queries=", opt.queries);
    std::map<int32_t, std::vector<int64_t>> by_class;
    for (size_t i = 0; i < labels.size(); ++i) {
      XFER_CHECK(labels[i] >= 0, "EpisodeSampler: label ", labels[i], " of sample ", i, " is negative");
      by_class[labels[i]].push_back(static_cast<int64_t>(i));
    }
    if (classes.empty())
      for (auto& [c, idx] : by_class) classes.push_back(c);
    std::set<int32_t> seen;
    for (int32_t c : classes) {
      XFER_CHECK(seen.insert(c).second, "EpisodeSampler: class ", c, " is listed twice");
      auto it = by_class.find(c);
      XFER_CHECK(it != by_class.end(), "EpisodeSampler: class ", c, " has no samples in the dataset (",
                 by_class.size(), " classes present)");
      const int64_t need = static_cast<int64_t>(opt.shots) + opt.queries;
      XFER_CHECK(static_cast<int64_t>(it->second.size()) >= need, "EpisodeSampler: class ", c, " has ",
                 it->second.size(), " samples but shots + queries = ", opt.shots, " + ", opt.queries, " = ", need,
                 " are needed per episode");
      classes_.push_back(c);
      members_.push_back(it->second);
    }
    XFER_CHECK(static_cast<int64_t>(opt.ways) <= static_cast<int64_t>(classes_.size()), "EpisodeSampler: ",
               opt.ways, "-way episodes need at least ", opt.ways, " classes, but only ", classes_.size(),
               " are available");
  }

  const EpisodeOptions& options() const { return opt_; }
  const std::vector<int32_t>& classes() const { return classes_; }

  // The task with this id (deterministic; see the header comment).
  Episode episode(uint64_t id) const {
    Rng rng(splitmix64(opt_.seed ^ splitmix64(id + 0x51f15eedull)));
    Episode e;
    // Partial Fisher-Yates over class positions, then over each chosen class's members.
    std::vector<size_t> pos(classes_.size());
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = i;
    const size_t N = static_cast<size_t>(opt_.ways);
    for (size_t i = 0; i < N; ++i) std::swap(pos[i], pos[i + rng.below(pos.size() - i)]);
    const size_t K = static_cast<size_t>(opt_.shots), Q = static_cast<size_t>(opt_.queries);
    std::vector<int64_t> idx;
    for (size_t c = 0; c < N; ++c) {
      e.classes.push_back(classes_[pos[c]]);
      idx = members_[pos[c]];
      for (size_t i = 0; i < K + Q; ++i) std::swap(idx[i], idx[i + rng.below(idx.size() - i)]);
      for (size_t i = 0; i < K; ++i) {
        e.support.push_back(idx[i]);
        e.support_labels.push_back(static_cast<int32_t>(c));
      }
      for (size_t i = K; i < K + Q; ++i) {
        e.query.push_back(idx[i]);
        e.query_labels.push_back(static_cast<int32_t>(c));
      }
    }
    return e;
  }

 private:
  EpisodeOptions opt_;
  std::vector<int32_t> classes_;
  std::vector<std::vector<int64_t>> members_;
};

// Disjoint class lists (e.g. meta-train and meta-test) from explicit class ids; throws on overlap.
struct ClassSplit {
  std::vector<int32_t> train, test;
};

inline ClassSplit make_split(std::vector<int32_t> train, std::vector<int32_t> test) {
  std::set<int32_t> a(train.begin(), train.end());
  for (int32_t c : test)
    XFER_CHECK(!a.count(c), "make_split: class ", c, " is in both the meta-train and the meta-test split");
  return {std::move(train), std::move(test)};
}

// A seeded random split of classes 0..num_classes-1 into num_train meta-train and the rest meta-test.
inline ClassSplit split_classes(int32_t num_classes, int32_t num_train, uint64_t seed) {
  XFER_CHECK(num_classes > 1 && num_train > 0 && num_train < num_classes, "split_classes: need 0 < num_train < ",
             "num_classes, got num_train=", num_train, " num_classes=", num_classes);
  std::vector<int32_t> c(static_cast<size_t>(num_classes));
  for (int32_t i = 0; i < num_classes; ++i) c[static_cast<size_t>(i)] = i;
  Rng rng(seed);
  for (size_t i = c.size(); i > 1; --i) std::swap(c[i - 1], c[rng.below(i)]);
  ClassSplit s;
  s.train.assign(c.begin(), c.begin() + num_train);
  s.test.assign(c.begin() + num_train, c.end());
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.test.begin(), s.test.end());
  return s;
}

// Stacks samples of a dataset with image(i) -> Tensor of shape [C, H, W] (or any per-sample
// shape) into one [n, ...] batch of T (data::stack).
template <class T, class Dataset>
Tensor<T> gather(const Dataset& ds, const std::vector<int64_t>& indices) {
  using Sample = std::decay_t<decltype(*ds.image(int64_t{0}).begin())>;
  Tensor<T> out;
  data::stack<Sample>(indices, [&](int64_t idx, Tensor<Sample>& sample) { sample = ds.image(idx); }, out,
                      {.what = "meta::gather"});
  return out;
}

}  // namespace xfer::meta
