// edgeq_exp and edgeq_log1p (plugins/common/edgeq_quant.h) against libm, on arguments as the
// kernels make them (products of two floats, floats): how many fp32-rounded results differ, and
// the largest error in fp64 ulps. Prints "mismatches N ulps U" per function.
#include <cmath>
#include <cstdio>
#include <random>

#include "edgeq_quant.h"

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 1000000;
  std::mt19937_64 gen(1);
  std::uniform_real_distribution<double> wide(-110.0, 90.0), dt(-100.0, 20.0), small(-1.0, 3.0);
  long exp_bad = 0, sp_bad = 0;
  double exp_ulps = 0, sp_ulps = 0;
  for (long i = 0; i < n; ++i) {
    const double x = i % 2 ? double(float(wide(gen))) * double(float(small(gen)))
                           : double(float(wide(gen)));
    const double a = edgeq_exp(x), b = std::exp(x);
    exp_bad += float(a) != float(b);
    if (std::isnormal(b)) exp_ulps = std::fmax(exp_ulps, std::fabs(a - b) / b / 0x1p-52);
    // softplus as the scans compute it: log1p(exp(dt))
    const double d = double(float(i % 2 ? dt(gen) : small(gen)));
    const double p = edgeq_log1p(edgeq_exp(d)), q = std::log1p(std::exp(d));
    sp_bad += float(p) != float(q);
    if (std::isnormal(q)) sp_ulps = std::fmax(sp_ulps, std::fabs(p - q) / q / 0x1p-52);
  }
  std::printf("exp mismatches %ld ulps %.2f\nsoftplus mismatches %ld ulps %.2f\n", exp_bad,
              exp_ulps, sp_bad, sp_ulps);
  // the ends: clamped arguments round to fp32 as libm's do; NaN stays NaN
  const double ends[] = {-1000.0, -745.0, -104.0, 88.8, 710.0, 1000.0, INFINITY, -INFINITY};
  long end_bad = 0;
  for (double x : ends) end_bad += float(edgeq_exp(x)) != float(std::exp(x));
  std::printf("ends mismatches %ld nan %d\n", end_bad,
              int(std::isnan(edgeq_exp(NAN)) && std::isnan(edgeq_log1p(NAN))));
  return 0;
}
