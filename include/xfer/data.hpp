// xfer/data.hpp: datasets (CIFAR-10 binary, ImageFolder), image decoding, transforms, splits and the Loader.
#pragma once

#include "xfer/data/cifar10.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/functional.hpp"
#include "xfer/data/image.hpp"
#include "xfer/data/image_folder.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/data/open_dataset.hpp"
#include "xfer/data/selection.hpp"
#include "xfer/data/split.hpp"
#include "xfer/data/transforms.hpp"
#include "xfer/data/random_erasing.hpp"
#include "xfer/data/mix.hpp"
#include "xfer/data/auto_augment.hpp"
#include "xfer/data/augment_ops.hpp"
