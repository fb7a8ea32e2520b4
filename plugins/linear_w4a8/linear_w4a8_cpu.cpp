// EdgeqLinearW4A8 on the CPU (docs/ops.md). A packed byte holds an even and an odd element, so
// x is split once into its even and odd elements and each weight row is unpacked once into an
// even and an odd plane: every dot then runs over contiguous int8 arrays, which the compiler
// vectorises. Output channels go in blocks of kRows that every token passes over while their
// planes sit in cache, so a long prompt does not unpack a row per token. Per token and channel:
// an int32 sum per group, one fp32 product per group, the groups added in fp64 in order.
#include <algorithm>
#include <vector>

#include "edgeq_cpu_threads.h"
#include "edgeq_kernels.h"

namespace {

constexpr int64_t kRows = 16;

// [.., 2j, 2j+1, ..] -> [.., 2j, .. | .., 2j+1, ..]: even elements, then odd ones
void split_even_odd(const int8_t* x, int64_t K, int8_t* out) {
  for (int64_t j = 0; j < K / 2; ++j) {
    out[j] = x[2 * j];
    out[K / 2 + j] = x[2 * j + 1];
  }
}

// A packed row in the same planes: element 2j is the low nibble of byte j, two's complement.
void unpack_row(const uint8_t* packed, int64_t K, int8_t* out) {
  for (int64_t j = 0; j < K / 2; ++j) {
    out[j] = int8_t(((packed[j] & 15) ^ 8) - 8);
    out[K / 2 + j] = int8_t(((packed[j] >> 4) ^ 8) - 8);
  }
}

// One token times one output channel (both as planes), before x_scale.
float dot(const int8_t* x, const int8_t* w, const float* scale, int64_t K, int64_t group_size) {
  const int64_t half = K / 2, pairs = group_size / 2;
  double sum = 0.0;
  for (int64_t g = 0; g * pairs < half; ++g) {
    const int8_t *xe = x + g * pairs, *xo = xe + half, *we = w + g * pairs, *wo = we + half;
    int32_t acc = 0;
    for (int64_t j = 0; j < pairs; ++j)
      acc += int32_t(xe[j]) * int32_t(we[j]) + int32_t(xo[j]) * int32_t(wo[j]);
    sum += double(float(acc) * scale[g]);
  }
  return float(sum);
}

}  // namespace

extern "C" int edgeq_linear_w4a8(const int8_t* x, const uint8_t* weight, const float* weight_scale,
                                 float* y, int64_t rows, int64_t K, int64_t N, float x_scale,
                                 int64_t group_size, void*) {
  if (!x || !weight || !weight_scale || !y) return EDGEQ_NULL_POINTER;
  if (rows < 0 || N < 0 || K < 1 || group_size < 2 || group_size % 2 || K % group_size)
    return EDGEQ_BAD_SHAPE;
  const int64_t G = K / group_size;
  std::vector<int8_t> xp(rows * K);
#pragma omp parallel if(edgeq_team(rows, rows * N * K))
  {
#pragma omp for schedule(static)
    for (int64_t m = 0; m < rows; ++m) split_even_odd(x + m * K, K, &xp[m * K]);
    std::vector<int8_t> w(kRows * K);
#pragma omp for schedule(static)
    for (int64_t n0 = 0; n0 < N; n0 += kRows) {
      const int64_t count = std::min(kRows, N - n0);
      for (int64_t i = 0; i < count; ++i) unpack_row(weight + (n0 + i) * (K / 2), K, &w[i * K]);
      for (int64_t m = 0; m < rows; ++m)
        for (int64_t i = 0; i < count; ++i)
          y[m * N + n0 + i] =
              dot(&xp[m * K], &w[i * K], weight_scale + (n0 + i) * G, K, group_size) * x_scale;
    }
  }
  return EDGEQ_OK;
}
