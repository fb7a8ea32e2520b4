// Numeric helpers of the CPU kernels. They follow the torch reference operation by operation
// (docs/ops.md, "Reference numerics") so that int8 results agree bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

#include "edgeq_kernels.h"

// value i of a scale array (edgeq_scales_check has passed)
inline float edgeq_scale_at(edgeq_scales s, int64_t i) { return s.values[s.count == 1 ? 0 : i]; }

// quantize() of docs/ops.md: x / scale rounded half to even (rint under the default rounding
// mode), saturated to int8
inline int8_t edgeq_quantize(float v, float scale) {
  float r = std::rint(v / scale);
  return (int8_t)(r > 127.f ? 127.f : (r < -128.f ? -128.f : r));
}

// SiLU in fp64, rounded once to fp32
inline float edgeq_silu(float x) {
  const double v = x;
  return float(v / (1.0 + std::exp(-v)));
}
