// EdgeqSelectiveScan on the CPU (docs/ops.md). Loop order batch -> time -> channel -> state
// keeps u, delta, B, C rows contiguous; threads split the channels, so each owns its state rows.
#include <cmath>
#include <cstring>
#include <vector>

#include "edgeq_kernels.h"

static inline float softplus20(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }

extern "C" int edgeq_selective_scan_f32(const float* u, const float* delta, const float* A,
                                        const float* B, const float* C, const float* D,
                                        const float* delta_bias, const float* state,
                                        const float* z, float* y, float* state_out,
                                        int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                        int64_t groups, int64_t dstate, int32_t delta_softplus,
                                        void*) {
  if (!u || !delta || !A || !B || !C || !D || !delta_bias || !state || !y || !state_out)
    return EDGEQ_NULL_POINTER;
  if (batch < 1 || L < 1 || dim < 1 || heads < 1 || groups < 1 || dstate < 1 ||
      dim % heads || heads % groups)
    return EDGEQ_BAD_SHAPE;
  const int64_t P = dim / heads, heads_per_group = heads / groups;
  if (state_out != state) std::memcpy(state_out, state, sizeof(float) * batch * dim * dstate);
  const int64_t block = 32;
  const int64_t nblocks = (dim + block - 1) / block;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t d0 = blk * block, d1 = d0 + block < dim ? d0 + block : dim;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = b * L + t;
        for (int64_t d = d0; d < d1; ++d) {
          const int64_t h = d / P, g = h / heads_per_group;
          float dt = delta[row * heads + h] + delta_bias[h];
          if (delta_softplus) dt = softplus20(dt);
          const float ud = u[row * dim + d];
          const float* Bt = B + (row * groups + g) * dstate;
          const float* Ct = C + (row * groups + g) * dstate;
          const float* Ah = A + h * dstate;
          float* s = state_out + (b * dim + d) * dstate;
          float acc = 0.f;
          for (int64_t n = 0; n < dstate; ++n) {
            s[n] = std::exp(dt * Ah[n]) * s[n] + dt * Bt[n] * ud;
            acc += s[n] * Ct[n];
          }
          float out = acc + D[d] * ud;
          if (z) {
            const float zd = z[row * dim + d];
            out *= zd / (1.f + std::exp(-zd));
          }
          y[row * dim + d] = out;
        }
      }
    }
  }
  return EDGEQ_OK;
}
