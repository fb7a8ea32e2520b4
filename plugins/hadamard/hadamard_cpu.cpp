// EdgeqHadamardInt8 on the CPU (docs/ops.md): per row, a fast Walsh-Hadamard transform of size
// M on each of the K blocks, then H_K across the blocks, scaled by 1/sqrt(n) and quantized.
// H_K's entries are +-1, so its product adds or subtracts whole blocks (exact: the same sums,
// in the same order k = 0..K-1, as multiplying by float(+-1)); those block loops vectorise.
#include <cmath>
#include <cstring>
#include <vector>

#include "edgeq_cpu_threads.h"
#include "edgeq_kernels.h"
#include "edgeq_quant.h"
#include "hadamard_matrix.h"

namespace {

// H_K built once per process (K is one of 1, 12, 20, 28)
const std::vector<int8_t>& base(int64_t K) {
  static const std::vector<int8_t> h12 = edgeq::hadamard_base(12), h20 = edgeq::hadamard_base(20),
                                   h28 = edgeq::hadamard_base(28), h1 = {1};
  return K == 12 ? h12 : K == 20 ? h20 : K == 28 ? h28 : h1;
}

void row(const float* x, int8_t* y, int64_t K, int64_t M, const int8_t* HK, float norm,
         float y_scale) {
  const int64_t n = K * M;
  thread_local std::vector<float> buf;  // v, then w: no allocation per call
  buf.resize(2 * n);
  float *v = buf.data(), *w = v + n;
  std::memcpy(v, x, sizeof(float) * n);
  for (int64_t k = 0; k < K; ++k) {  // Sylvester butterflies within block k
    float* blk = v + k * M;
    for (int64_t h = 1; h < M; h *= 2)
      for (int64_t i = 0; i < M; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j) {
          const float a = blk[j], b = blk[j + h];
          blk[j] = a + b;
          blk[j + h] = a - b;
        }
  }
  if (K == 1) {
    w = v;
  } else {
    for (int64_t a = 0; a < K; ++a) {  // H_K across blocks
      float* wa = w + a * M;
      for (int64_t m = 0; m < M; ++m) wa[m] = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        const float* vk = v + k * M;
        if (HK[a * K + k] > 0)
          for (int64_t m = 0; m < M; ++m) wa[m] += vk[m];
        else
          for (int64_t m = 0; m < M; ++m) wa[m] -= vk[m];
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) w[i] *= norm;  // then quantize alone: one type per loop
  for (int64_t i = 0; i < n; ++i) y[i] = edgeq_quantize(w[i], y_scale);
}

}  // namespace

extern "C" int edgeq_hadamard_int8(const float* x, int8_t* y, int64_t rows, int64_t n,
                                   float y_scale, void*) {
  if (!x || !y) return EDGEQ_NULL_POINTER;
  int64_t K, M;
  edgeq::hadamard_split(n, K, M);
  if (rows < 0 || K == 0) return EDGEQ_BAD_SHAPE;
  const int8_t* HK = base(K).data();
  const float norm = float(1.0 / std::sqrt(double(n)));  // rounded once, as the reference
#pragma omp parallel for if(edgeq_team(rows, rows * n)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) row(x + r * n, y + r * n, K, M, HK, norm, y_scale);
  return EDGEQ_OK;
}
