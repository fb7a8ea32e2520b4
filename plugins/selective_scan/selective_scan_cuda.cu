// EdgeqSelectiveScan and EdgeqSelectiveScanInt8 on the GPU (docs/ops.md): the entry points of the
// scan template (selective_scan_cuda.cuh); the int8 variant dequantizes on load.
#include "selective_scan_cuda.cuh"

extern "C" int edgeq_selective_scan_f32(const float* u, const float* delta, const float* A,
                                        const float* B, const float* C, const float* D,
                                        const float* delta_bias, const float* state,
                                        const float* z, float* y, float* state_out,
                                        int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                        int64_t groups, int64_t dstate, int32_t delta_softplus,
                                        void* stream) {
  using namespace edgeq_cuda;
  return scan_launch(ScanArgs<float>{u, delta, A, B, C, D, delta_bias, state, z, y, state_out,
                                     batch, L, dim, heads, groups, dstate, delta_softplus},
                     stream);
}

extern "C" int edgeq_selective_scan_f16(const edgeq_half* u, const edgeq_half* delta,
                                        const float* A, const edgeq_half* B, const edgeq_half* C,
                                        const float* D, const float* delta_bias,
                                        const float* state, const edgeq_half* z, edgeq_half* y,
                                        float* state_out, int64_t batch, int64_t L, int64_t dim,
                                        int64_t heads, int64_t groups, int64_t dstate,
                                        int32_t delta_softplus, void* stream) {
  using namespace edgeq_cuda;
  using H = __half;
  return scan_launch(
      ScanArgs<H>{reinterpret_cast<const H*>(u), reinterpret_cast<const H*>(delta), A,
                  reinterpret_cast<const H*>(B), reinterpret_cast<const H*>(C), D, delta_bias,
                  state, reinterpret_cast<const H*>(z), reinterpret_cast<H*>(y), state_out, batch,
                  L, dim, heads, groups, dstate, delta_softplus},
      stream);
}

extern "C" int edgeq_selective_scan_int8(const int8_t* u, const int8_t* delta, const float* A,
                                         const int8_t* B, const int8_t* C, const float* D,
                                         const float* delta_bias, const float* state,
                                         const int8_t* z, float* y, float* state_out,
                                         int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                         int64_t groups, int64_t dstate, float u_scale,
                                         float delta_scale, float B_scale, float C_scale,
                                         float z_scale, int32_t delta_softplus, void* stream) {
  using namespace edgeq_cuda;
  return scan_launch(
      ScanArgs<int8_t, float>{u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch, L,
                              dim, heads, groups, dstate, delta_softplus,
                              {u_scale, delta_scale, B_scale, C_scale, z_scale}},
      stream);
}
