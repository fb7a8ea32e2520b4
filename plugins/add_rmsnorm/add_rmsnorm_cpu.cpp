// EdgeqAddRMSNormInt8 on the CPU (docs/ops.md): residual add in fp32, RMSNorm, int8 out.
#include <cmath>

#include "edgeq_cpu_threads.h"
#include "edgeq_kernels.h"
#include "edgeq_quant.h"

extern "C" int edgeq_add_rmsnorm_int8(const float* x, const float* residual, const float* weight,
                                      int8_t* y, float* residual_out, int64_t rows, int64_t d,
                                      float eps, float y_scale, void*) {
  if (!x || !residual || !weight || !y || !residual_out) return EDGEQ_NULL_POINTER;
  if (rows < 0 || d < 1) return EDGEQ_BAD_SHAPE;
#pragma omp parallel for if(edgeq_team(rows, rows * d)) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;  // fp64 sum and one rounding of 1/rms: bit-exact with the reference
    for (int64_t i = 0; i < d; ++i) {
      const float s = x[r * d + i] + residual[r * d + i];
      residual_out[r * d + i] = s;  // may alias x or residual: each element read once first
      ss += double(s) * double(s);
    }
    const float inv = float(1.0 / std::sqrt(ss / double(d) + double(eps)));
    for (int64_t i = 0; i < d; ++i)
      y[r * d + i] = edgeq_quantize(residual_out[r * d + i] * inv * weight[i], y_scale);
  }
  return EDGEQ_OK;
}
