// The C ABI of this folder's ops, declared inside the extern "C" block of
// plugins/common/edgeq_kernels.h (its types and conventions), which includes this file.
#pragma once

// EdgeqAddRMSNormInt8 over rows of d: x, residual, residual_out fp32 [rows, d]; y int8.
EDGEQ_API int edgeq_add_rmsnorm_int8(const float* x, const float* residual, const float* weight,
                                     int8_t* y, float* residual_out, int64_t rows, int64_t d,
                                     float eps, float y_scale, void* stream);
