// The C ABI of this folder's ops, declared inside the extern "C" block of
// plugins/common/edgeq_kernels.h (its types and conventions), which includes this file.
#pragma once

// EdgeqLinearW4A8: x int8 [rows, K] times int4 weights packed two per byte, weight uint8
// [N, K/2] (ONNX's INT4 order), with weight_scale fp32 [N, K/group_size]; y fp32 [rows, N].
// group_size even and dividing K. CUDA: rows, N < 2^31.
EDGEQ_API int edgeq_linear_w4a8(const int8_t* x, const uint8_t* weight, const float* weight_scale,
                                float* y, int64_t rows, int64_t K, int64_t N, float x_scale,
                                int64_t group_size, void* stream);
