// Helpers shared by the CUDA kernels (plugins/*/*_cuda.cu).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "edgeq_kernels.h"

// A thread's work is __host__ too, so tests/cuda_host_emu.cu can run it on the CPU (CI has no GPU).
#define EDGEQ_CUDA_HD __host__ __device__ __forceinline__

namespace edgeq_cuda {

// threads per block, over channels: small blocks spread a 1536-channel layer over all the SMs
constexpr int kThreads = 64;

// activations are float or __half; all math is fp32
EDGEQ_CUDA_HD float to_f(float x) { return x; }
EDGEQ_CUDA_HD float to_f(__half x) { return __half2float(x); }
template <class T> EDGEQ_CUDA_HD T from_f(float x);
template <> EDGEQ_CUDA_HD float from_f<float>(float x) { return x; }
template <> EDGEQ_CUDA_HD __half from_f<__half>(float x) { return __float2half_rn(x); }

EDGEQ_CUDA_HD float silu(float x) { return x / (1.f + expf(-x)); }

inline int launch_status() {
  return cudaGetLastError() == cudaSuccess ? EDGEQ_OK : EDGEQ_CUDA_ERROR;
}

}  // namespace edgeq_cuda
