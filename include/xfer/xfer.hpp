// xfer: header-only C++20 transfer learning and meta-learning on the CPU. Include this one header,
// or only the parts you use: xfer/nn.hpp, xfer/models.hpp, xfer/optim.hpp, xfer/data.hpp,
// xfer/io.hpp, xfer/meta.hpp, xfer/train.hpp (each includes what it needs).
#pragma once

#include "xfer/data.hpp"
#include "xfer/io.hpp"
#include "xfer/meta.hpp"
#include "xfer/models.hpp"
#include "xfer/nn.hpp"
#include "xfer/optim.hpp"
#include "xfer/train.hpp"
