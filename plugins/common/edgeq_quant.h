// Numeric helpers of the CPU kernels. They follow the torch reference operation by operation
// (docs/ops.md, "Reference numerics") so that int8 results agree bit for bit.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "edgeq_kernels.h"

// IEEE binary16 to fp32, exact (the CPU library has no fp16 type)
inline float edgeq_half_to_float(edgeq_half h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float f = float(man) * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  const uint32_t bits = sign | (exp == 0x1F ? 0x7F800000u : (exp + 112) << 23) | man << 13;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// fp32 to IEEE binary16, rounded to nearest even (as torch's .half() and CUDA's
// __float2half_rn): overflow to inf, subnormals kept; NaN becomes torch's 0x7E00 (CUDA's is
// 0x7FFF: the backends agree on NaN, not on its bits)
inline edgeq_half edgeq_float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = uint16_t(x >> 16 & 0x8000u);
  x &= 0x7FFFFFFFu;
  if (x > 0x7F800000u) return sign | 0x7E00u;  // NaN
  if (x >= 0x477FF000u) return sign | 0x7C00u;  // 65520 and above round to inf
  if (x >= 0x38800000u)  // a normal half: drop 13 mantissa bits, ties to even
    return sign | uint16_t((x + 0xFFFu + (x >> 13 & 1u) - 0x38000000u) >> 13);
  // a subnormal half: |f| / 2^-24 rounded (exact product; rint ties to even), 1024 = 2^-14
  return sign | uint16_t(std::rint(std::fabs(f) * 16777216.f));
}

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
