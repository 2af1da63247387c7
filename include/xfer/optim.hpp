// xfer/optim.hpp: optimizers (SGD, Adam, AdamW) and learning-rate schedulers.
#pragma once

#include "xfer/optim/optimizer.hpp"
#include "xfer/optim/sgd.hpp"
#include "xfer/optim/adam.hpp"
#include "xfer/optim/scheduler.hpp"
#include "xfer/optim/plateau.hpp"
#include "xfer/optim/cosine_warm_restarts.hpp"
#include "xfer/optim/onecycle.hpp"
#include "xfer/optim/clip_grad.hpp"
