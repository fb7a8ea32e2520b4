// The CPU scan of EdgeqSelectiveScan, EdgeqSelectiveScanInt8 (dequantizing on load) and
// EdgeqSSDScan (one A and one D per head); the entry points are selective_scan_cpu.cpp and
// ../ssd_scan/ssd_scan_cpu.cpp. Loop order batch -> time -> channel -> state keeps u, delta, B,
// C rows contiguous; threads split the channels, so each owns its state rows.
#pragma once
#include <cmath>
#include <cstring>
#include <vector>

#include "edgeq_cpu_threads.h"
#include "edgeq_kernels.h"
#include "edgeq_quant.h"

namespace edgeq_cpu {

constexpr int64_t kBlock = 32;  // channels per thread's task (each owns its state rows)
constexpr int64_t kChunk = 64;  // states per vectorised pass
constexpr int64_t kLanes = 8;   // fp64 partial sums over N

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
  const int64_t nblocks = (dim + kBlock - 1) / kBlock;
#pragma omp parallel for collapse(2) if(edgeq_team(batch * L, batch * L * dim * dstate)) \
    schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t d0 = blk * kBlock, d1 = d0 + kBlock < dim ? d0 + kBlock : dim;
      const int64_t h0 = d0 / P, nh = (d1 - 1) / P - h0 + 1;  // the heads of these channels
      std::vector<float> bc(2 * groups * dstate);  // this step's B and C rows, dequantized
      float *Bf = bc.data(), *Cf = Bf + groups * dstate;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = b * L + t;
        // exp, log1p, the sum over N and the gate in fp64, each rounded once to fp32: the
        // torch reference does the same, so int8 outputs downstream agree bit for bit. Each
        // stage runs over the block's heads, states or channels at once, so that it vectorises.
        float dt[kBlock], decay[kBlock], out[kBlock];
        const T *Brow = B + row * groups * dstate, *Crow = C + row * groups * dstate;
        for (int64_t i = 0; i < groups * dstate; ++i) Bf[i] = float(Brow[i]) * sc.B;
        for (int64_t i = 0; i < groups * dstate; ++i) Cf[i] = float(Crow[i]) * sc.C;
        for (int64_t i = 0; i < nh; ++i)
          dt[i] = float(delta[row * heads + h0 + i]) * sc.delta + delta_bias[h0 + i];
        if (delta_softplus)
          for (int64_t i = 0; i < nh; ++i)
            dt[i] = dt[i] <= 20.f ? float(edgeq_log1p(edgeq_exp(double(dt[i])))) : dt[i];
        if (PerHead)
          for (int64_t i = 0; i < nh; ++i)
            decay[i] = float(edgeq_exp(double(dt[i]) * double(A[h0 + i])));
        for (int64_t d = d0; d < d1; ++d) {
          const int64_t h = d / P, g = h / heads_per_group;
          const float ud = float(u[row * dim + d]) * sc.u;
          const float dth = dt[h - h0], dtu = dth * ud;
          const float *Bt = Bf + g * dstate, *Ct = Cf + g * dstate;
          const float* Ah = A + (PerHead ? 0 : h * dstate);  // PerHead uses decay[] instead
          float* s = state_out + (b * dim + d) * dstate;
          // the sum over N in kLanes fp64 partial sums (the reference's torch.sum also
          // reduces in vector lanes; fp32 products rarely lose bits in fp64 sums in any order)
          double acc[kLanes] = {};
          for (int64_t n0 = 0; n0 < dstate; n0 += kChunk) {
            const int64_t nn = dstate - n0 < kChunk ? dstate - n0 : kChunk;
            float dA[kChunk], prod[kChunk];
            if (!PerHead)
              for (int64_t n = 0; n < nn; ++n)
                dA[n] = float(edgeq_exp(double(dth) * double(Ah[n0 + n])));
            for (int64_t n = 0; n < nn; ++n) {
              const float sn = (PerHead ? decay[h - h0] : dA[n]) * s[n0 + n] + dtu * Bt[n0 + n];
              s[n0 + n] = sn;
              prod[n] = sn * Ct[n0 + n];
            }
            int64_t n = 0;
            for (; n + kLanes <= nn; n += kLanes)
              for (int64_t l = 0; l < kLanes; ++l) acc[l] += double(prod[n + l]);
            for (int64_t l = 0; n < nn; ++n, ++l) acc[l] += double(prod[n]);
          }
          for (int64_t w = kLanes / 2; w > 0; w /= 2)  // pairwise, fixed order
            for (int64_t l = 0; l < w; ++l) acc[l] += acc[l + w];
          out[d - d0] = float(acc[0]) + D[PerHead ? h : d] * ud;
        }
        float* yt = y + row * dim;
        if (z)
          for (int64_t d = d0; d < d1; ++d)
            yt[d] = out[d - d0] * edgeq_silu(float(z[row * dim + d]) * sc.z);
        else
          for (int64_t d = d0; d < d1; ++d) yt[d] = out[d - d0];
      }
    }
  }
  return EDGEQ_OK;
}

}  // namespace edgeq_cpu
