#include <catch2/catch.hpp>
#include <xfer/core/tensor.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_tensor {

using xfer::Tensor;

TEST_CASE("Tensor has a shape, an element count and NCHW access") {
  Tensor<float> t({2, 3, 4, 5}, 1.5f);
  CHECK(t.numel() == 120);
  CHECK(t.ndim() == 4);
  CHECK(t.dim(1) == 3);
  CHECK(t.dim(-1) == 5);
  t.at(1, 2, 3, 4) = 7.f;
  CHECK(t[119] == 7.f);
  CHECK(t[0] == 1.5f);
}

TEST_CASE("Tensor reshape keeps elements and rejects a different count") {
  Tensor<double> t({2, 6}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  t.reshape({3, 4});
  CHECK(t.dim(0) == 3);
  CHECK(t[11] == 11);
  CHECK_THROWS_AS(t.reshape({5, 5}), xfer::Error);
  CHECK_THROWS_WITH(t.reshape({5, 5}), Catch::Contains("[3, 4]") && Catch::Contains("[5, 5]"));
}

TEST_CASE("Tensor matrix views are row-major Eigen maps") {
  Tensor<float> t({2, 3}, {1, 2, 3, 4, 5, 6});
  auto m = t.matrix(2, 3);
  CHECK(m(1, 0) == 4);
  m(0, 2) = 9;
  CHECK(t[2] == 9);
  CHECK_THROWS_AS(t.matrix(4, 4), xfer::Error);
}

TEST_CASE("Tensor rejects mismatched initialisers and negative dimensions") {
  CHECK_THROWS_AS(Tensor<float>({2, 2}, {1, 2, 3}), xfer::Error);
  CHECK_THROWS_AS(Tensor<float>({2, -1}), xfer::Error);
}

TEST_CASE("Tensor resize keeps the allocation when shrinking") {
  Tensor<float> t({4, 4});
  const float* before = t.data();
  t.resize({2, 4});
  CHECK(t.data() == before);
  CHECK(t.numel() == 8);
  auto d = t.cast<double>();
  CHECK(d.shape() == xfer::Shape{2, 4});
}

TEST_CASE("recycled tensor storage is reused by the best fitting later resize") {
  xfer::free_spare_buffers();
  Tensor<float> big({1000}), small({100});
  const float* big_data = big.data();
  const float* small_data = small.data();
  big.recycle();
  small.recycle();
  CHECK(big.numel() == 0);
  CHECK(small.numel() == 0);
  // 90 elements fit both spares: the smaller one is taken, the larger stays for a larger request.
  Tensor<float> a, b, c;
  a.resize({90});
  CHECK(a.data() == small_data);
  b.resize({3, 300});
  CHECK(b.data() == big_data);
  c.resize({5});  // nothing left to reuse: a fresh allocation
  CHECK(c.data() != big_data);
  CHECK(c.data() != small_data);
  CHECK(xfer::detail::spare_buffers<float>().bytes() == 0);
  a.recycle();
  CHECK(xfer::detail::spare_buffers<float>().bytes() >= 100 * sizeof(float));
  xfer::free_spare_buffers();
  CHECK(xfer::detail::spare_buffers<float>().bytes() == 0);
}

}  // namespace unit_tensor
