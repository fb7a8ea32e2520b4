// Numeric helpers shared by the CPU kernels (host) and the CUDA kernels (device).
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define EDGEQ_HD __host__ __device__
#else
#define EDGEQ_HD
#endif

// quantize() of docs/ops.md: x / scale rounded half to even (nearbyint under the default
// rounding mode, rintf on the device), saturated to int8
EDGEQ_HD inline int8_t edgeq_quantize(float v, float scale) {
  float r = rintf(v / scale);
  return (int8_t)(r > 127.f ? 127.f : (r < -128.f ? -128.f : r));
}

EDGEQ_HD inline float edgeq_softplus20(float x) { return x > 20.f ? x : log1pf(expf(x)); }

EDGEQ_HD inline float edgeq_silu(float x) { return x / (1.f + expf(-x)); }
