// cudaMalloc, cudaFree, cudaMemcpy and cudaMemcpyAsync on host memory, for the TensorRT plugins
// linked over the CPU emulation of the kernels (tests/support/plugin_harness.py): the plugins' only
// CUDA runtime calls (device copies of FLOATS fields) land here through the linker's --wrap. Each
// call is reported to edgeq_harness_cuda_call when a loaded harness defines it
// (tests/support/trt_harness.cpp), which refuses them inside enqueueV3.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

extern "C" void edgeq_harness_cuda_call(char const* name) __attribute__((weak));

static void report(char const* name) {
  if (edgeq_harness_cuda_call) edgeq_harness_cuda_call(name);
}

extern "C" cudaError_t __wrap_cudaMalloc(void** p, size_t bytes) {
  report("cudaMalloc");
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

extern "C" cudaError_t __wrap_cudaFree(void* p) {
  report("cudaFree");
  std::free(p);
  return cudaSuccess;
}

extern "C" cudaError_t __wrap_cudaMemcpy(void* dst, void const* src, size_t bytes,
                                         cudaMemcpyKind) {
  report("cudaMemcpy");
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

extern "C" cudaError_t __wrap_cudaMemcpyAsync(void* dst, void const* src, size_t bytes,
                                              cudaMemcpyKind, cudaStream_t) {
  report("cudaMemcpyAsync");
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
