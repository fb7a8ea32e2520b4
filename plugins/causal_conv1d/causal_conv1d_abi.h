// The C ABI of this folder's ops, declared inside the extern "C" block of
// plugins/common/edgeq_kernels.h (its types and conventions), which includes this file.
#pragma once

// EdgeqCausalConv1d. x, y: [batch, L, channels]; weight: [channels, width]; bias: [channels];
// state, state_out: [batch, width-1, channels].
EDGEQ_API int edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                      const float* state, float* y, float* state_out, int64_t batch,
                                      int64_t L, int64_t channels, int64_t width, int32_t activation,
                                      void* stream);

// EdgeqCausalConv1dInt8. x, y: int8 [batch, L, channels]; weight: int8 [channels, width];
// bias: fp32; state, state_out: int8 [batch, width-1, channels]; each scale 1 or `channels`
// values.
EDGEQ_API int edgeq_causal_conv1d_int8(const int8_t* x, const int8_t* weight, const float* bias,
                                       const int8_t* state, int8_t* y, int8_t* state_out,
                                       int64_t batch, int64_t L, int64_t channels, int64_t width,
                                       edgeq_scales x_scale, edgeq_scales weight_scale,
                                       edgeq_scales y_scale, int32_t activation, void* stream);

// fp16 tensors (CUDA library only).
EDGEQ_API int edgeq_causal_conv1d_f16(const edgeq_half* x, const edgeq_half* weight,
                                      const edgeq_half* bias, const edgeq_half* state, edgeq_half* y,
                                      edgeq_half* state_out, int64_t batch, int64_t L,
                                      int64_t channels, int64_t width, int32_t activation,
                                      void* stream);
