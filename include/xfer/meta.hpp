// xfer/meta.hpp: meta-learning: MAML (first/second order, ANIL, Meta-SGD), the episode sampler, mean +- CI.
#pragma once

#include "xfer/meta/maml.hpp"
#include "xfer/meta/episodes.hpp"
#include "xfer/meta/mean_ci.hpp"
