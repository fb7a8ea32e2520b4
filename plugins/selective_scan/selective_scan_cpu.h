// The CPU scan of EdgeqSelectiveScan, EdgeqSelectiveScanInt8 (dequantizing on load) and
// EdgeqSSDScan (one A and one D per head); the entry points are selective_scan_cpu.cpp and
// ../ssd_scan/ssd_scan_cpu.cpp. Loop order batch -> time -> channel -> state keeps u, delta, B,
// C rows contiguous; threads split the channels, so each owns its state rows.
#pragma once
#include <cmath>
#include <cstring>

#include "edgeq_cpu_threads.h"
#include "edgeq_kernels.h"
#include "edgeq_quant.h"

namespace edgeq_cpu {

struct Scales {
  float u = 1.f, delta = 1.f, B = 1.f, C = 1.f, z = 1.f;
};

// PerHead: EdgeqSSDScan's A [heads] and D [heads] (docs/ops.md: A_scan[h, n] = A[h],
// D_scan[d] = D[d / P]), whose decay exp(dt A[h]) is computed once per head and time step,
// instead of the selective scan's A [heads, dstate] and D [dim].
template <bool PerHead, typename T>
int scan(const T* u, const T* delta, const float* A, const T* B, const T* C, const float* D,
         const float* delta_bias, const float* state, const T* z, float* y, float* state_out,
         int64_t batch, int64_t L, int64_t dim, int64_t heads, int64_t groups, int64_t dstate,
         Scales sc, int32_t delta_softplus) {
  if (!u || !delta || !A || !B || !C || !D || !delta_bias || !state || !y || !state_out)
    return EDGEQ_NULL_POINTER;
  if (batch < 1 || L < 1 || dim < 1 || heads < 1 || groups < 1 || dstate < 1 ||
      dim % heads || heads % groups)
    return EDGEQ_BAD_SHAPE;
  const int64_t P = dim / heads, heads_per_group = heads / groups;
  if (state_out != state) std::memcpy(state_out, state, sizeof(float) * batch * dim * dstate);
  const int64_t block = 32;
  const int64_t nblocks = (dim + block - 1) / block;
#pragma omp parallel for collapse(2) if(batch * L * dim * dstate >= kEdgeqParallelMinWork) \
    schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t d0 = blk * block, d1 = d0 + block < dim ? d0 + block : dim;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = b * L + t;
        int64_t head = -1;  // dt (and PerHead's decay exp(dt A[h])) are this head's at this step
        float dt = 0.f, decay = 0.f;
        for (int64_t d = d0; d < d1; ++d) {
          const int64_t h = d / P, g = h / heads_per_group;
          // exp, log1p, the sum over N and the gate in fp64, each rounded once to fp32: the
          // torch reference does the same, so int8 outputs downstream agree bit for bit
          if (h != head) {
            dt = float(delta[row * heads + h]) * sc.delta + delta_bias[h];
            if (delta_softplus && dt <= 20.f) dt = float(std::log1p(std::exp(double(dt))));
            if (PerHead) decay = float(std::exp(double(dt) * double(A[h])));
            head = h;
          }
          const float ud = float(u[row * dim + d]) * sc.u;
          const float dtu = dt * ud;
          const T* Bt = B + (row * groups + g) * dstate;
          const T* Ct = C + (row * groups + g) * dstate;
          const float* Ah = A + (PerHead ? 0 : h * dstate);  // PerHead reads A[h] above
          float* s = state_out + (b * dim + d) * dstate;
          double acc = 0.0;
          for (int64_t n = 0; n < dstate; ++n) {
            const float dA = PerHead ? decay : float(std::exp(double(dt) * double(Ah[n])));
            s[n] = dA * s[n] + dtu * (float(Bt[n]) * sc.B);
            acc += double(s[n] * (float(Ct[n]) * sc.C));
          }
          float out = float(acc) + D[PerHead ? h : d] * ud;
          if (z) out *= edgeq_silu(float(z[row * dim + d]) * sc.z);
          y[row * dim + d] = out;
        }
      }
    }
  }
  return EDGEQ_OK;
}

}  // namespace edgeq_cpu
