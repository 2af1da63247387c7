// xfer/meta.hpp: meta-learning: MAML (first/second order, ANIL, Meta-SGD), the episode sampler, mean +- CI.
#pragma once

#include "xfer/meta/maml.hpp"
#include "xfer/meta/episodes.hpp"
#include "xfer/meta/mean_ci.hpp"
#include "xfer/meta/baseline.hpp"
#include "xfer/meta/bn_statistics.hpp"
#include "xfer/meta/episode_batch.hpp"
#include "xfer/meta/protonet.hpp"
#include "xfer/meta/step_weights.hpp"
#include "xfer/meta/task.hpp"
