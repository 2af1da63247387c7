// xfer/dist: data-parallel training and meta-training over MPI. Needs the xfer::mpi target (which
// defines XFER_WITH_MPI); xfer/xfer.hpp does not include this header.
#pragma once

#include "xfer/dist/communicator.hpp"
#include "xfer/dist/data_parallel.hpp"
#include "xfer/dist/meta_batch.hpp"
#include "xfer/dist/sync_batchnorm.hpp"
