// Tensor<T>: an owning, contiguous, row-major array with a shape (NCHW for images).
// Resizing keeps the allocation when it is large enough, so per-step buffers are reused; a tensor
// whose contents are dead can hand its allocation to this thread's spare-buffer pool (recycle()),
// and a resize that needs more room takes the best fitting spare first. Backward passes recycle
// each layer's input gradient once the layer below has consumed it.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <numeric>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"

namespace xfer {

using Shape = std::vector<int64_t>;

template <class T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

inline std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

namespace detail {
// Allocations given back by recycle(), per thread and scalar type.
template <class T>
class SpareBuffers {
 public:
  // Swaps the smallest spare with capacity >= n into `v` (v's old allocation becomes a spare);
  // leaves v alone when none fits.
  void take(size_t n, AlignedVector<T>& v) {
    size_t best = spares_.size();
    for (size_t i = 0; i < spares_.size(); ++i)
      if (spares_[i].capacity() >= n && (best == spares_.size() || spares_[i].capacity() < spares_[best].capacity()))
        best = i;
    if (best == spares_.size()) return;
    v.swap(spares_[best]);
    if (spares_[best].capacity() == 0) {
      spares_[best].swap(spares_.back());
      spares_.pop_back();
    }
  }
  // Keeps v's size: a later resize within it then writes nothing (clearing would make it zero-fill).
  void give(AlignedVector<T>& v) {
    if (v.capacity() == 0) return;
    spares_.emplace_back().swap(v);
  }
  void clear() { spares_.clear(); }
  size_t bytes() const {
    size_t b = 0;
    for (const auto& s : spares_) b += s.capacity() * sizeof(T);
    return b;
  }

 private:
  std::vector<AlignedVector<T>> spares_;
};
template <class T>
SpareBuffers<T>& spare_buffers() {
  thread_local SpareBuffers<T> pool;
  return pool;
}
}  // namespace detail

// Frees the calling thread's spare buffers (what finished backward passes left for reuse).
inline void free_spare_buffers() {
  detail::spare_buffers<float>().clear();
  detail::spare_buffers<double>().clear();
}

template <class T>
class Tensor {
 public:
  using Scalar = T;
  using MatrixMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned>;
  using ConstMatrixMap =
      Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned>;
  using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;
  using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;

  Tensor() = default;
  explicit Tensor(Shape shape, T fill = T(0)) : shape_(std::move(shape)) {
    check_shape(shape_);
    data_.assign(static_cast<size_t>(shape_numel(shape_)), fill);
  }
  Tensor(Shape shape, std::initializer_list<T> values) : Tensor(std::move(shape)) {
    XFER_CHECK(static_cast<int64_t>(values.size()) == numel(), "Tensor: ", values.size(),
               " values given for shape ", shape_str(shape_), " (", numel(), " elements expected)");
    std::copy(values.begin(), values.end(), data_.begin());
  }
  template <class Vec>
  static Tensor from(Shape shape, const Vec& values) {
    Tensor t(std::move(shape));
    XFER_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "Tensor::from: ", values.size(),
               " values given for shape ", shape_str(t.shape_), " (", t.numel(), " expected)");
    std::copy(values.begin(), values.end(), t.data_.begin());
    return t;
  }

  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const {
    if (i < 0) i += ndim();
    XFER_CHECK(i >= 0 && i < ndim(), "Tensor::dim(", i, ") out of range for shape ", shape_str(shape_));
    return shape_[static_cast<size_t>(i)];
  }
  int64_t numel() const { return static_cast<int64_t>(data_.size()); }
  bool empty() const { return data_.empty(); }

  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  T& operator[](int64_t i) { return data_[static_cast<size_t>(i)]; }
  const T& operator[](int64_t i) const { return data_[static_cast<size_t>(i)]; }
  // NCHW element access (4-D tensors only; unchecked in release builds).
  T& at(int64_t n, int64_t c, int64_t h, int64_t w) {
    return data_[static_cast<size_t>(((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w)];
  }
  const T& at(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return data_[static_cast<size_t>(((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w)];
  }
  auto begin() { return data_.begin(); }
  auto end() { return data_.end(); }
  auto begin() const { return data_.begin(); }
  auto end() const { return data_.end(); }

  // Changes the shape; contents are unspecified afterwards unless the element count is unchanged.
  // The allocation is kept when it is large enough.
  void resize(Shape shape) {
    check_shape(shape);
    shape_ = std::move(shape);
    const auto n = static_cast<size_t>(shape_numel(shape_));
    if (data_.capacity() < n) detail::spare_buffers<T>().take(n, data_);
    data_.resize(n);
  }
  // The contents are dead: gives the allocation to the thread's spare-buffer pool and leaves an
  // empty tensor (shape [0]).
  void recycle() {
    shape_ = {0};
    detail::spare_buffers<T>().give(data_);
  }
  // Same elements, new shape with the same element count.
  Tensor& reshape(Shape shape) {
    check_shape(shape);
    XFER_CHECK(shape_numel(shape) == numel(), "Tensor::reshape: cannot view ", shape_str(shape_), " (",
               numel(), " elements) as ", shape_str(shape));
    shape_ = std::move(shape);
    return *this;
  }
  void fill(T v) { std::fill(data_.begin(), data_.end(), v); }
  void zero() { fill(T(0)); }

  // Row-major matrix views; rows * cols must equal numel().
  MatrixMap matrix(int64_t rows, int64_t cols) {
    XFER_CHECK(rows * cols == numel(), "Tensor::matrix: ", rows, "x", cols, " view of ", shape_str(shape_));
    return MatrixMap(data(), rows, cols);
  }
  ConstMatrixMap matrix(int64_t rows, int64_t cols) const {
    XFER_CHECK(rows * cols == numel(), "Tensor::matrix: ", rows, "x", cols, " view of ", shape_str(shape_));
    return ConstMatrixMap(data(), rows, cols);
  }
  ArrayMap array() { return ArrayMap(data(), numel()); }
  ConstArrayMap array() const { return ConstArrayMap(data(), numel()); }

  template <class U>
  Tensor<U> cast() const {
    Tensor<U> out(shape_);
    std::transform(data_.begin(), data_.end(), out.begin(), [](T v) { return static_cast<U>(v); });
    return out;
  }

 private:
  static void check_shape(const Shape& s) {
    for (int64_t d : s) XFER_CHECK(d >= 0, "Tensor: negative dimension in shape ", shape_str(s));
  }

  Shape shape_;
  AlignedVector<T> data_;
};

// Throws unless `t` has `rank` dimensions; `what` names the caller for the message.
template <class T>
void check_rank(const Tensor<T>& t, int rank, const std::string& what) {
  XFER_CHECK(t.ndim() == rank, what, ": expected a ", rank, "-D input, got shape ", shape_str(t.shape()));
}

}  // namespace xfer
