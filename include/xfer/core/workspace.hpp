// Scratch buffers shared by all kernels of one thread of control. Kernels run one after another
// (never nested), so a few growing buffers per scalar type serve every layer, and a training step
// after the first allocates nothing (no page faults from malloc/free of large blocks).
#pragma once

#include <array>
#include <cstdint>

#include "xfer/core/tensor.hpp"

namespace xfer::detail {

// GroupIn / GroupOut / Dilated hold the per-group and dilation-expanded operands of
// kernels/conv2d.hpp, around dense kernels that use the other slots.
enum class Scratch { Columns = 0, Gather = 1, Extra = 2, Taps = 3, GroupIn = 4, GroupOut = 5, Dilated = 6, Count = 7 };

template <class T>
T* scratch(Scratch slot, int64_t elements) {
  thread_local std::array<AlignedVector<T>, static_cast<size_t>(Scratch::Count)> buffers;
  auto& b = buffers[static_cast<size_t>(slot)];
  if (static_cast<int64_t>(b.size()) < elements) b.resize(static_cast<size_t>(elements));
  return b.data();
}

}  // namespace xfer::detail
