// xfer/optim.hpp: optimizers (SGD, Adam, AdamW) and learning-rate schedulers.
#pragma once

#include "xfer/optim/optimizer.hpp"
#include "xfer/optim/sgd.hpp"
#include "xfer/optim/adam.hpp"
#include "xfer/optim/scheduler.hpp"
#include "xfer/optim/plateau.hpp"
