// The C ABI of this folder's ops, declared inside the extern "C" block of
// plugins/common/edgeq_kernels.h (its types and conventions), which includes this file.
#pragma once

// EdgeqHadamardInt8 over rows of n: x fp32 [rows, n], y int8 [rows, n].
EDGEQ_API int edgeq_hadamard_int8(const float* x, int8_t* y, int64_t rows, int64_t n,
                                  float y_scale, void* stream);
