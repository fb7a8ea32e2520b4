// EdgeqHadamardInt8 on the CPU (docs/ops.md): per row, a fast Walsh-Hadamard transform of size
// M on each of the K blocks, then H_K across the blocks, scaled by 1/sqrt(n) and quantized.
#include <cmath>
#include <vector>

#include "edgeq_kernels.h"
#include "edgeq_quant.h"
#include "hadamard_matrix.h"

extern "C" int edgeq_hadamard_int8(const float* x, int8_t* y, int64_t rows, int64_t n,
                                   float y_scale, void*) {
  if (!x || !y) return EDGEQ_NULL_POINTER;
  int64_t K, M;
  edgeq::hadamard_split(n, K, M);
  if (rows < 0 || K == 0) return EDGEQ_BAD_SHAPE;
  const std::vector<int8_t> HK = edgeq::hadamard_base(K);
  const float norm = float(1.0 / std::sqrt(double(n)));  // rounded once, as the reference
#pragma omp parallel
  {
    std::vector<float> v(n), w(n);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * n;
      for (int64_t i = 0; i < n; ++i) v[i] = xr[i];
      for (int64_t k = 0; k < K; ++k) {  // Sylvester butterflies within block k
        float* blk = v.data() + k * M;
        for (int64_t h = 1; h < M; h *= 2)
          for (int64_t i = 0; i < M; i += 2 * h)
            for (int64_t j = i; j < i + h; ++j) {
              const float a = blk[j], b = blk[j + h];
              blk[j] = a + b;
              blk[j + h] = a - b;
            }
      }
      for (int64_t a = 0; a < K; ++a)  // H_K across blocks
        for (int64_t m = 0; m < M; ++m) {
          float acc = 0.f;
          for (int64_t k = 0; k < K; ++k) acc += float(HK[a * K + k]) * v[k * M + m];
          w[a * M + m] = acc;
        }
      for (int64_t i = 0; i < n; ++i) y[r * n + i] = edgeq_quantize(w[i] * norm, y_scale);
    }
  }
  return EDGEQ_OK;
}
