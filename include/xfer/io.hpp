// xfer/io.hpp: safetensors files, model state dicts, atomic file writes, resumable checkpoints and the JSON
// form of optimizer / scheduler / loader state.
#pragma once

#include "xfer/io/atomic_file.hpp"
#include "xfer/io/safetensors.hpp"
#include "xfer/io/state_dict.hpp"
#include "xfer/io/state_json.hpp"
#include "xfer/io/train_state_json.hpp"
#include "xfer/io/checkpoint.hpp"
#include "xfer/io/model_info.hpp"
