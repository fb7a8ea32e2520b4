// The C ABI of edgeq's kernels: one signature per op, shared by the CPU library
// (libedgeq_cpu) and the CUDA library, which differ only in where the pointers live.
// The CPU kernels ignore `stream`. Semantics: docs/ops.md. All functions return 0 on success
// and a nonzero edgeq_status on bad arguments. `state_out` may alias `state` (in-place update).
#pragma once
#include <stdint.h>

// libraries build with hidden visibility; only the ABI is exported
#define EDGEQ_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

enum edgeq_status { EDGEQ_OK = 0, EDGEQ_BAD_SHAPE = 1, EDGEQ_NULL_POINTER = 2 };

// EdgeqSelectiveScan. u, z, y: [batch, L, dim]; delta: [batch, L, heads]; A: [heads, dstate];
// B, C: [batch, L, groups, dstate]; D: [dim]; delta_bias: [heads];
// state, state_out: [batch, dim, dstate] fp32. z may be NULL (no gate).
EDGEQ_API int edgeq_selective_scan_f32(const float* u, const float* delta, const float* A, const float* B,
                                       const float* C, const float* D, const float* delta_bias,
                                       const float* state, const float* z, float* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                       int64_t groups, int64_t dstate, int32_t delta_softplus,
                                       void* stream);

// EdgeqCausalConv1d. x, y: [batch, L, channels]; weight: [channels, width]; bias: [channels];
// state, state_out: [batch, width-1, channels].
EDGEQ_API int edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                      const float* state, float* y, float* state_out, int64_t batch,
                                      int64_t L, int64_t channels, int64_t width, int32_t activation,
                                      void* stream);

#ifdef __cplusplus
}
#endif
