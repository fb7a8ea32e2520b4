// EdgeqSelectiveScan and EdgeqSelectiveScanInt8 on the CPU (docs/ops.md). One template: the
// int8 variant only dequantizes on load. Loop order batch -> time -> channel -> state keeps
// u, delta, B, C rows contiguous; threads split the channels, so each owns its state rows.
// Where a head's A[h, :] is one value (EdgeqSSDScan's), exp(dt A) is computed once per head and
// time step instead of once per channel and state: the same value, a fraction of the exps.
#include <cstring>
#include <vector>

#include "edgeq_kernels.h"
#include "edgeq_quant.h"

namespace {

struct Scales {
  float u = 1.f, delta = 1.f, B = 1.f, C = 1.f, z = 1.f;
};

template <typename T>
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
  std::vector<char> uniform(heads, 1);  // A[h, :] is one value
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t n = 1; n < dstate; ++n) uniform[h] &= A[h * dstate + n] == A[h * dstate];
  const int64_t block = 32;
  const int64_t nblocks = (dim + block - 1) / block;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t d0 = blk * block, d1 = d0 + block < dim ? d0 + block : dim;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = b * L + t;
        int64_t decay_head = -1;  // decay is exp(dt A[h, 0]) of this head at this step
        float decay = 0.f;
        for (int64_t d = d0; d < d1; ++d) {
          const int64_t h = d / P, g = h / heads_per_group;
          // exp, log1p, the sum over N and the gate in fp64, each rounded once to fp32: the
          // torch reference does the same, so int8 outputs downstream agree bit for bit
          float dt = float(delta[row * heads + h]) * sc.delta + delta_bias[h];
          if (delta_softplus && dt <= 20.f) dt = float(std::log1p(std::exp(double(dt))));
          const float ud = float(u[row * dim + d]) * sc.u;
          const float dtu = dt * ud;
          const T* Bt = B + (row * groups + g) * dstate;
          const T* Ct = C + (row * groups + g) * dstate;
          const float* Ah = A + h * dstate;
          const bool one_A = uniform[h];  // a local: stores to s may alias the char vector
          if (one_A && h != decay_head) {
            decay = float(std::exp(double(dt) * double(Ah[0])));
            decay_head = h;
          }
          float* s = state_out + (b * dim + d) * dstate;
          double acc = 0.0;
          for (int64_t n = 0; n < dstate; ++n) {
            const float dA = one_A ? decay : float(std::exp(double(dt) * double(Ah[n])));
            s[n] = dA * s[n] + dtu * (float(Bt[n]) * sc.B);
            acc += double(s[n] * (float(Ct[n]) * sc.C));
          }
          float out = float(acc) + D[d] * ud;
          if (z) out *= edgeq_silu(float(z[row * dim + d]) * sc.z);
          y[row * dim + d] = out;
        }
      }
    }
  }
  return EDGEQ_OK;
}

}  // namespace

extern "C" int edgeq_selective_scan_f32(const float* u, const float* delta, const float* A,
                                        const float* B, const float* C, const float* D,
                                        const float* delta_bias, const float* state,
                                        const float* z, float* y, float* state_out,
                                        int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                        int64_t groups, int64_t dstate, int32_t delta_softplus,
                                        void*) {
  return scan(u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch, L, dim, heads,
              groups, dstate, Scales{}, delta_softplus);
}

extern "C" int edgeq_selective_scan_int8(const int8_t* u, const int8_t* delta, const float* A,
                                         const int8_t* B, const int8_t* C, const float* D,
                                         const float* delta_bias, const float* state,
                                         const int8_t* z, float* y, float* state_out,
                                         int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                         int64_t groups, int64_t dstate, float u_scale,
                                         float delta_scale, float B_scale, float C_scale,
                                         float z_scale, int32_t delta_softplus, void*) {
  if (!z) return EDGEQ_NULL_POINTER;  // the gate is required in the int8 op
  return scan(u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch, L, dim, heads,
              groups, dstate, Scales{u_scale, delta_scale, B_scale, C_scale, z_scale},
              delta_softplus);
}
