// The C ABI of this folder's ops, declared inside the extern "C" block of
// plugins/common/edgeq_kernels.h (its types and conventions), which includes this file.
#pragma once

// EdgeqSelectiveScan. u, z, y: [batch, L, dim]; delta: [batch, L, heads]; A: [heads, dstate];
// B, C: [batch, L, groups, dstate]; D: [dim]; delta_bias: [heads];
// state, state_out: [batch, dim, dstate] fp32. z may be NULL (no gate).
EDGEQ_API int edgeq_selective_scan_f32(const float* u, const float* delta, const float* A, const float* B,
                                       const float* C, const float* D, const float* delta_bias,
                                       const float* state, const float* z, float* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                       int64_t groups, int64_t dstate, int32_t delta_softplus,
                                       void* stream);

// EdgeqSelectiveScanInt8. u, z: int8 [batch, L, dim]; delta: int8 [batch, L, heads];
// B, C: int8 [batch, L, groups, dstate]; y: fp32; the rest as edgeq_selective_scan_f32.
EDGEQ_API int edgeq_selective_scan_int8(const int8_t* u, const int8_t* delta, const float* A,
                                        const int8_t* B, const int8_t* C, const float* D,
                                        const float* delta_bias, const float* state,
                                        const int8_t* z, float* y, float* state_out,
                                        int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                        int64_t groups, int64_t dstate, float u_scale,
                                        float delta_scale, float B_scale, float C_scale,
                                        float z_scale, int32_t delta_softplus, void* stream);

// fp16 activations (CUDA library only).
EDGEQ_API int edgeq_selective_scan_f16(const edgeq_half* u, const edgeq_half* delta, const float* A,
                                       const edgeq_half* B, const edgeq_half* C, const float* D,
                                       const float* delta_bias, const float* state,
                                       const edgeq_half* z, edgeq_half* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                       int64_t groups, int64_t dstate, int32_t delta_softplus,
                                       void* stream);
