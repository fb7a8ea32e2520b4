// Helpers shared by the CUDA kernels (plugins/*/*_cuda.cu).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "edgeq_kernels.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "edgeq's CUDA kernels need sm_80 or newer (int8 mma.m16n8k32); Jetson Orin is sm_87"
#endif

// A thread's work is __host__ too, so tests/support/cuda_host_emu.cu can run it on the CPU (CI has
// no GPU).
#define EDGEQ_CUDA_HD __host__ __device__ __forceinline__

namespace edgeq_cuda {

// threads per block, over channels: small blocks spread a 1536-channel layer over all the SMs
constexpr int kThreads = 64;

// threads per block of the row kernels (Hadamard, add+RMSNorm): a multiple of the warp size
constexpr int kRowThreads = 256;

// quantize() of docs/ops.md: IEEE division (nvcc's default -prec-div=true), rintf rounds half to
// even, saturate to int8
EDGEQ_CUDA_HD int8_t quantize(float v, float scale) {
  const float r = rintf(v / scale);
  return int8_t(r > 127.f ? 127.f : (r < -128.f ? -128.f : r));
}

// An int8 tensor's scale in a kernel (docs/ops.md, "Int8 conventions"): one value passed by
// value, or an edgeq_scales array in device memory (1, or one per channel, head or group).
// Float and fp16 tensors keep the default, 1.
struct Scale {
  float value = 1.f;
  edgeq_scales array = {nullptr, 0};
  Scale() = default;
  Scale(float v) : value(v) {}
  Scale(edgeq_scales s) : array(s) {}
  EDGEQ_CUDA_HD float at(int64_t i) const {
    return array.values ? array.values[array.count == 1 ? 0 : i] : value;
  }
};

// Tensors are float, __half or int8_t; all math is fp32. An int8 tensor carries its scale:
// loads dequantize, stores quantize. Float and fp16 tensors ignore the scale, so one kernel
// template serves every variant.
EDGEQ_CUDA_HD float to_f(float x, float = 1.f) { return x; }
EDGEQ_CUDA_HD float to_f(__half x, float = 1.f) { return __half2float(x); }
EDGEQ_CUDA_HD float to_f(int8_t x, float scale) { return float(x) * scale; }
template <class T> EDGEQ_CUDA_HD T from_f(float x, float scale = 1.f);
template <> EDGEQ_CUDA_HD float from_f<float>(float x, float) { return x; }
template <> EDGEQ_CUDA_HD __half from_f<__half>(float x, float) { return __float2half_rn(x); }
template <> EDGEQ_CUDA_HD int8_t from_f<int8_t>(float x, float scale) { return quantize(x, scale); }

EDGEQ_CUDA_HD float silu(float x) { return x / (1.f + expf(-x)); }

// The row kernels run one block per row, written against a Block: each(count, f) calls f(i) for
// this thread's share of 0..count-1 (the same share on every call), sync() is a barrier and
// sum(v) the sum of v over the block. tests/support/cuda_host_emu.cu runs the same row code on the
// CPU with a one-thread Block.
struct GpuBlock {
  template <class F> __device__ void each(int64_t count, F f) const {
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) f(i);
  }
  __device__ void sync() const { __syncthreads(); }
  __device__ float sum(float v) const {  // every thread gets the total
    __shared__ float warp_sums[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();  // an earlier sum() may still read warp_sums
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = lane < int(blockDim.x / 32) ? warp_sums[lane] : 0.f;
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
  }
};

// A V (uint4, uint32_t, ...) at an address aligned to its size: one vector access on the GPU
template <class V> EDGEQ_CUDA_HD V load_as(const void* p) {
#ifdef __CUDA_ARCH__
  return *static_cast<const V*>(p);
#else
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
#endif
}

template <class V> EDGEQ_CUDA_HD void store_as(void* p, const V& v) {
#ifdef __CUDA_ARCH__
  *static_cast<V*>(p) = v;
#else
  std::memcpy(p, &v, sizeof v);
#endif
}

// both addresses are 16-byte aligned (uint4 accesses)
inline bool aligned16(const void* p, const void* q) {
  return (reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(q)) % 16 == 0;
}

// The kernels whose threads cooperate beyond a block sum (the tiled W4A8 linear, the scans'
// split-state, time-parallel and chunked kernels) are written against a Thread: index() in the block,
// sync() the block's barrier, and the warp's collectives (shuffles: shfl reads src_lane's v).
// tests/support/cuda_host_emu.cu runs the same code with a CPU Thread whose threads are real
// threads.
struct GpuThread {
  __device__ int index() const { return threadIdx.x; }
  __device__ void sync() const { __syncthreads(); }
  __device__ float shfl_xor(float v, int lane_mask) const {
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
  }
  __device__ float shfl(float v, int src_lane) const {
    return __shfl_sync(0xffffffffu, v, src_lane);
  }
  // d += A (16 x 32 int8, row) x B (32 x 8 int8, col), in the PTX ISA's fragment layout
  __device__ void mma(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) const {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  // d += A (16 x 16 fp16, row) x B (16 x 8 fp16, col), fp32 sums, in the same ISA's layout
  __device__ void mma_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) const {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

// A launch's shape: x by y blocks of `block` threads with `smem` bytes of dynamic shared memory.
// The launchers and the launch tables of plugins/*/README.md (tests/support/cuda_host_emu.cu,
// tools/launch_table.py) take it from the same functions.
struct Geometry {
  int64_t x, y;
  int block;
  int64_t smem;
  dim3 grid() const { return dim3(unsigned(x), unsigned(y)); }
};

// `threads` threads in blocks of `block` along x, y rows of them
inline Geometry threads_over(int64_t threads, int block, int64_t y, int64_t smem = 0) {
  return {(threads + block - 1) / block, y, block, smem};
}

// The current device's SMs, for the launches that fill them at small batches; 0 if unknown
inline int sm_count() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();  // not a launch's error
    return 0;
  }
  return sms;
}

// The SMs the row kernels (Hadamard, add + RMSNorm) split small batches over; EDGEQ_ROW_SPLIT=0
// keeps one block per row (side-by-side benchmarks, tools/bench_kernels.py)
inline int row_split_sms() {
  const char* env = std::getenv("EDGEQ_ROW_SPLIT");
  return env && env[0] == '0' && !env[1] ? 0 : sm_count();
}

inline int launch_status() {
  return cudaGetLastError() == cudaSuccess ? EDGEQ_OK : EDGEQ_CUDA_ERROR;
}

}  // namespace edgeq_cuda
