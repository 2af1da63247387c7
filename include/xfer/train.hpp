// xfer/train.hpp: training helpers: one epoch over a Loader, metrics, progress lines and learning curves.
#pragma once

#include "xfer/train/epoch.hpp"
#include "xfer/train/metrics.hpp"
#include "xfer/train/progress.hpp"
#include "xfer/train/curves.hpp"
#include "xfer/train/early_stopping.hpp"
#include "xfer/train/ema.hpp"
#include "xfer/train/replicas.hpp"
#include "xfer/train/finetune.hpp"
#include "xfer/train/pretrain.hpp"
#include "xfer/train/report.hpp"
