// cudaMalloc, cudaFree and cudaMemcpyAsync on host memory, for the TensorRT plugins linked over
// the CPU emulation of the kernels (tests/plugin_harness.py): the plugins' only CUDA runtime
// calls (device copies of FLOATS fields) land here through the linker's --wrap.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

extern "C" cudaError_t __wrap_cudaMalloc(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

extern "C" cudaError_t __wrap_cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}

extern "C" cudaError_t __wrap_cudaMemcpyAsync(void* dst, void const* src, size_t bytes,
                                              cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
