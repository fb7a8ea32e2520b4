// EdgeqSelectiveScan and EdgeqSelectiveScanInt8 on the CPU (docs/ops.md): one template
// (selective_scan_cpu.h), the int8 variant only dequantizing on load.
#include "selective_scan_cpu.h"

using edgeq_cpu::Scales;
using edgeq_cpu::scan;

extern "C" int edgeq_selective_scan_f32(const float* u, const float* delta, const float* A,
                                        const float* B, const float* C, const float* D,
                                        const float* delta_bias, const float* state,
                                        const float* z, float* y, float* state_out,
                                        int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                        int64_t groups, int64_t dstate, int32_t delta_softplus,
                                        void*) {
  return scan<false>(u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch, L, dim,
                     heads, groups, dstate, Scales{}, delta_softplus);
}

extern "C" int edgeq_selective_scan_int8(const int8_t* u, const int8_t* delta, const float* A,
                                         const int8_t* B, const int8_t* C, const float* D,
                                         const float* delta_bias, const float* state,
                                         const int8_t* z, float* y, float* state_out,
                                         int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                         int64_t groups, int64_t dstate, float u_scale,
                                         float delta_scale, float B_scale, float C_scale,
                                         float z_scale, int32_t delta_softplus, void*) {
  if (!z) return EDGEQ_NULL_POINTER;  // the gate is required in the int8 op
  return scan<false>(u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch, L, dim,
                     heads, groups, dstate, Scales{u_scale, delta_scale, B_scale, C_scale, z_scale},
                     delta_softplus);
}
