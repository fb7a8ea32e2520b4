// EdgeqSSDScan on the CPU (docs/ops.md): the selective scan with one A and one D per head. The
// chunked (SSD) algorithm is a GPU matter; the CPU kernel validates, so it expands A and D to
// the per-channel form and runs the selective scan. chunk_size does not change the result.
#include <vector>

#include "edgeq_kernels.h"

extern "C" int edgeq_ssd_scan_f32(const float* x, const float* dt, const float* A, const float* B,
                                  const float* C, const float* D, const float* dt_bias,
                                  const float* state, float* y, float* state_out, int64_t batch,
                                  int64_t L, int64_t dim, int64_t heads, int64_t groups,
                                  int64_t dstate, int32_t dt_softplus, int32_t /*chunk_size*/,
                                  void* stream) {
  if (!A || !D) return EDGEQ_NULL_POINTER;
  if (heads < 1 || dstate < 1 || dim % heads) return EDGEQ_BAD_SHAPE;
  const int64_t P = dim / heads;
  std::vector<float> A_hn(heads * dstate), D_d(dim);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t n = 0; n < dstate; ++n) A_hn[h * dstate + n] = A[h];
  for (int64_t d = 0; d < dim; ++d) D_d[d] = D[d / P];
  return edgeq_selective_scan_f32(x, dt, A_hn.data(), B, C, D_d.data(), dt_bias, state, nullptr,
                                  y, state_out, batch, L, dim, heads, groups, dstate, dt_softplus,
                                  stream);
}
