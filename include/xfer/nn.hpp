// xfer/nn.hpp: tensors, modules, parameters, the plain layers, losses and the gradient check (no models,
// optimizers, data or files). Include a model header (xfer/models/resnet.hpp) or xfer/models.hpp next to it.
#pragma once

#include "xfer/core/cpu.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/float_env.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/dropout.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/gradcheck.hpp"
#include "xfer/nn/init.hpp"
#include "xfer/nn/linear.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/parameter.hpp"
#include "xfer/nn/pooling.hpp"
#include "xfer/nn/relu.hpp"
#include "xfer/nn/selector.hpp"
#include "xfer/nn/sequential.hpp"
