// EdgeqSSDScan and EdgeqSSDScanInt8 on the CPU (docs/ops.md): the selective scan's CPU code
// (../selective_scan/selective_scan_cpu.h) with one A and one D per head. The chunked (SSD)
// algorithm is a GPU matter; the CPU kernel validates. chunk_size does not change the result.
// The int8 op is the fp op of its dequantized inputs and widened fp16 state, and is computed as
// that; its final state is rounded to fp16.
#include <vector>

#include "../selective_scan/selective_scan_cpu.h"

namespace {

// q [rows, channels, inner] times the scale of its channel, in fp32
std::vector<float> dequantize(const int8_t* q, int64_t rows, int64_t channels, int64_t inner,
                              edgeq_scales scale) {
  std::vector<float> out(rows * channels * inner);
  for (int64_t r = 0, i = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const float s = edgeq_scale_at(scale, c);
      for (int64_t k = 0; k < inner; ++k, ++i) out[i] = float(q[i]) * s;
    }
  return out;
}

}  // namespace

extern "C" int edgeq_ssd_scan_f32(const float* x, const float* dt, const float* A, const float* B,
                                  const float* C, const float* D, const float* dt_bias,
                                  const float* state, float* y, float* state_out, int64_t batch,
                                  int64_t L, int64_t dim, int64_t heads, int64_t groups,
                                  int64_t dstate, int32_t dt_softplus, int32_t /*chunk_size*/,
                                  void* /*stream*/) {
  const float* no_gate = nullptr;
  return edgeq_cpu::scan<true>(x, dt, A, B, C, D, dt_bias, state, no_gate, y, state_out, batch, L,
                               dim, heads, groups, dstate, edgeq_cpu::Scales{}, dt_softplus);
}

extern "C" int edgeq_ssd_scan_int8(const int8_t* x, const int8_t* dt, const float* A,
                                   const int8_t* B, const int8_t* C, const float* D,
                                   const float* dt_bias, const edgeq_half* state, float* y,
                                   edgeq_half* state_out, int64_t batch, int64_t L, int64_t dim,
                                   int64_t heads, int64_t groups, int64_t dstate,
                                   edgeq_scales x_scale, edgeq_scales dt_scale,
                                   edgeq_scales B_scale, edgeq_scales C_scale,
                                   int32_t dt_softplus, int32_t chunk_size, void* stream) {
  if (!x || !dt || !B || !C || !state || !state_out) return EDGEQ_NULL_POINTER;
  if (batch < 1 || L < 1 || dim < 1 || heads < 1 || groups < 1 || dstate < 1)
    return EDGEQ_BAD_SHAPE;
  const edgeq_scales scales[] = {x_scale, dt_scale, B_scale, C_scale};
  const int64_t counts[] = {dim, heads, groups, groups};
  for (int i = 0; i < 4; ++i)
    if (int rc = edgeq_scales_check(scales[i], counts[i])) return rc;
  const int64_t rows = batch * L;
  const std::vector<float> xf = dequantize(x, rows, dim, 1, x_scale),
                           dtf = dequantize(dt, rows, heads, 1, dt_scale),
                           Bf = dequantize(B, rows, groups, dstate, B_scale),
                           Cf = dequantize(C, rows, groups, dstate, C_scale);
  const int64_t count = batch * dim * dstate;
  std::vector<float> s(count);  // read before state_out is written: they may alias
  for (int64_t i = 0; i < count; ++i) s[i] = edgeq_half_to_float(state[i]);
  if (int rc = edgeq_ssd_scan_f32(xf.data(), dtf.data(), A, Bf.data(), Cf.data(), D, dt_bias,
                                  s.data(), y, s.data(), batch, L, dim, heads, groups, dstate,
                                  dt_softplus, chunk_size, stream))
    return rc;
  for (int64_t i = 0; i < count; ++i) state_out[i] = edgeq_float_to_half(s[i]);
  return EDGEQ_OK;
}
