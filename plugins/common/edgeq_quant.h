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

// exp in fp64, within about one ulp of fp64 (libm's and torch's are too), so that rounded to
// fp32 it gives their result except where the fp64 value lies within ~1e-15 of an fp32 rounding
// boundary. Branch-free, so that loops over it vectorise (a libm call per value was a third of
// a decode step). |x| is clamped to 700: every use rounds to fp32, where exp(+-700) is already
// inf or 0, and a SiLU's v / (1 + exp(-v)) is -0 either way. NaN stays NaN (through r).
inline double edgeq_exp(double x) {
  const double xc = x < -700.0 ? -700.0 : (x > 700.0 ? 700.0 : x);
  // k = rint(x / ln2) by the 1.5 * 2^52 shifter, whose low bits then hold k as an integer
  const double shifter = 6755399441055744.0;
  const double t = xc * 1.4426950408889634 + shifter;
  const double k = t - shifter;
  // r = x - k ln2 in two parts (Cody-Waite; k * ln2_hi is exact), |r| <= ln2 / 2
  const double r = (xc - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  // exp(r) by its Taylor series to r^13 (the next term is below 1e-17 relative)
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t bits;  // 2^k: k + 1023 into the exponent field
  std::memcpy(&bits, &t, sizeof bits);
  bits = (bits + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// log1p in fp64 for y > -1, within about one ulp, branch-free like edgeq_exp (fdlibm's
// reduction: u = 1 + y = 2^k m with m in [sqrt(2)/2, sqrt(2)), log(m) by its series in
// s = (m - 1) / (m + 1), plus (y - (u - 1)) / u for the rounding of u)
inline double edgeq_log1p(double y) {
  const double u = 1.0 + y;
  const double c = (y - (u - 1.0)) / u;
  uint64_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  // m keeps u's mantissa; its exponent is 0, or -1 where the mantissa is above sqrt(2)
  const uint64_t man = bits & 0x000FFFFFFFFFFFFFull;
  const uint64_t high = man > 0x6A09E667F3BCDull ? 1 : 0;  // mantissa of sqrt(2)
  const double k = double(int64_t(bits >> 52) - 1023 + int64_t(high));
  const uint64_t mbits = man | ((1023 - high) << 52);
  double m;
  std::memcpy(&m, &mbits, sizeof m);
  const double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
  const double t1 = w * (3.999999999940941908e-01 +
                         w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const double t2 = z * (6.666666666666735130e-01 +
                         w * (2.857142874366239149e-01 +
                              w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const double R = t2 + t1;
  return k * 6.93147180369123816490e-01 -
         ((hfsq - (s * (hfsq + R) + (k * 1.90821492927058770002e-10 + c))) - f);
}

// SiLU in fp64, rounded once to fp32
inline float edgeq_silu(float x) {
  const double v = x;
  return float(v / (1.0 + edgeq_exp(-v)));
}
