// xfer/models.hpp: every architecture of the zoo (ResNet, VGG) and models::create() by name.
#pragma once

#include "xfer/models/conv4.hpp"
#include "xfer/models/efficientnet.hpp"
#include "xfer/models/mobilenet.hpp"
#include "xfer/models/model.hpp"
#include "xfer/models/resnet.hpp"
#include "xfer/models/vgg.hpp"
#include "xfer/models/zoo.hpp"
#include "xfer/models/load.hpp"
