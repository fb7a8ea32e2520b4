// EdgeqSSDScan and EdgeqSSDScanInt8 on the GPU (docs/ops.md): the selective scan kernels
// (selective_scan_cuda.cuh) with one A and one D per head (ScanArgs' PerHead: one decay expf per
// step, not one per state index) and no gate; the int8 variant dequantizes on load, x per
// channel, dt per head, B and C per group, and keeps the state in fp16 between calls (widened
// once, rounded once per call). EdgeqSelectiveScan's kernels: decode, and prompts with Mamba-2's
// dstate (64-128), split each state row over several threads; smaller dstate scans sequentially
// over time, one thread per (batch, channel), or time-parallel where that leaves the GPU idle.
// fp16 and int8 prompts of two chunks and more take the chunked SSD kernel on tensor cores
// (ssd_chunk_cuda.cuh) where their shapes fit it. Results differ from the chunked torch reference
// by fp32 rounding only. The kernels choose their own chunking, so chunk_size is accepted and
// ignored (it is a kernel choice, not semantics).
#include "ssd_chunk_cuda.cuh"

extern "C" int edgeq_ssd_scan_f32(const float* x, const float* dt, const float* A, const float* B,
                                  const float* C, const float* D, const float* dt_bias,
                                  const float* state, float* y, float* state_out, int64_t batch,
                                  int64_t L, int64_t dim, int64_t heads, int64_t groups,
                                  int64_t dstate, int32_t dt_softplus, int32_t /*chunk_size*/,
                                  void* stream) {
  using namespace edgeq_cuda;
  return scan_launch(ScanArgs<float, float, true>{x, dt, A, B, C, D, dt_bias, state, nullptr, y,
                                                  state_out, batch, L, dim, heads, groups,
                                                  dstate, dt_softplus},
                     stream);
}

extern "C" int edgeq_ssd_scan_f16(const edgeq_half* x, const edgeq_half* dt, const float* A,
                                  const edgeq_half* B, const edgeq_half* C, const float* D,
                                  const float* dt_bias, const float* state, edgeq_half* y,
                                  float* state_out, int64_t batch, int64_t L, int64_t dim,
                                  int64_t heads, int64_t groups, int64_t dstate,
                                  int32_t dt_softplus, int32_t /*chunk_size*/, void* stream) {
  using namespace edgeq_cuda;
  using H = __half;
  return ssd_launch(
      ScanArgs<H, H, true>{reinterpret_cast<const H*>(x), reinterpret_cast<const H*>(dt), A,
                           reinterpret_cast<const H*>(B), reinterpret_cast<const H*>(C), D,
                           dt_bias, state, nullptr, reinterpret_cast<H*>(y), state_out, batch, L,
                           dim, heads, groups, dstate, dt_softplus},
      stream);
}

extern "C" int edgeq_ssd_scan_int8(const int8_t* x, const int8_t* dt, const float* A,
                                   const int8_t* B, const int8_t* C, const float* D,
                                   const float* dt_bias, const edgeq_half* state, float* y,
                                   edgeq_half* state_out, int64_t batch, int64_t L, int64_t dim,
                                   int64_t heads, int64_t groups, int64_t dstate,
                                   edgeq_scales x_scale, edgeq_scales dt_scale,
                                   edgeq_scales B_scale, edgeq_scales C_scale,
                                   int32_t dt_softplus, int32_t /*chunk_size*/, void* stream) {
  using namespace edgeq_cuda;
  using H = __half;
  return ssd_launch(ScanArgs<int8_t, float, true, H>{x, dt, A, B, C, D, dt_bias,
                                                     reinterpret_cast<const H*>(state), nullptr,
                                                     y, reinterpret_cast<H*>(state_out), batch,
                                                     L, dim, heads, groups, dstate, dt_softplus,
                                                     {x_scale, dt_scale, B_scale, C_scale, {}}},
                     stream);
}
