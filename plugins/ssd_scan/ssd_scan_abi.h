// The C ABI of this folder's ops, declared inside the extern "C" block of
// plugins/common/edgeq_kernels.h (its types and conventions), which includes this file.
#pragma once

// EdgeqSSDScan. x, y: [batch, L, dim]; dt: [batch, L, heads]; A, D, dt_bias: [heads];
// B, C: [batch, L, groups, dstate]; state, state_out: [batch, dim, dstate] fp32.
EDGEQ_API int edgeq_ssd_scan_f32(const float* x, const float* dt, const float* A, const float* B,
                                 const float* C, const float* D, const float* dt_bias,
                                 const float* state, float* y, float* state_out, int64_t batch,
                                 int64_t L, int64_t dim, int64_t heads, int64_t groups,
                                 int64_t dstate, int32_t dt_softplus, int32_t chunk_size,
                                 void* stream);

// EdgeqSSDScanInt8. x: int8 [batch, L, dim]; dt: int8 [batch, L, heads]; B, C: int8
// [batch, L, groups, dstate]; state, state_out: fp16 [batch, dim, dstate] (may alias); y: fp32;
// the rest as edgeq_ssd_scan_f32. x_scale: 1 or dim values, dt_scale: 1 or heads, B_scale and
// C_scale: 1 or groups.
EDGEQ_API int edgeq_ssd_scan_int8(const int8_t* x, const int8_t* dt, const float* A,
                                  const int8_t* B, const int8_t* C, const float* D,
                                  const float* dt_bias, const edgeq_half* state, float* y,
                                  edgeq_half* state_out, int64_t batch, int64_t L, int64_t dim,
                                  int64_t heads, int64_t groups, int64_t dstate,
                                  edgeq_scales x_scale, edgeq_scales dt_scale,
                                  edgeq_scales B_scale, edgeq_scales C_scale, int32_t dt_softplus,
                                  int32_t chunk_size, void* stream);

// fp16 activations (CUDA library only).
EDGEQ_API int edgeq_ssd_scan_f16(const edgeq_half* x, const edgeq_half* dt, const float* A,
                                 const edgeq_half* B, const edgeq_half* C, const float* D,
                                 const float* dt_bias, const float* state, edgeq_half* y,
                                 float* state_out, int64_t batch, int64_t L, int64_t dim,
                                 int64_t heads, int64_t groups, int64_t dstate,
                                 int32_t dt_softplus, int32_t chunk_size, void* stream);
