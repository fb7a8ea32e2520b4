// Runs the CUDA kernels' per-thread code (scan_channel, conv_channel) on the CPU, one "thread"
// after another, behind the C ABI with host pointers (symbols emu_edgeq_*). CI has nvcc but no GPU:
// this checks the kernels' indexing, window and state handling against edgeq.ops.reference.
// GPU-only parts (launch geometry, memory) are left to tests/test_cuda_kernels.py.
#include "../plugins/causal_conv1d/causal_conv1d_cuda.cu"
#include "../plugins/selective_scan/selective_scan_cuda.cu"

using namespace edgeq_cuda;
using H = __half;

template <class T>
static int scan_emu(const ScanArgs<T>& a) {
  if (int rc = scan_check(a)) return rc;
  with_nmax(a.dstate, [&](auto n) {
    for (int64_t b = 0; b < a.batch; ++b)
      for (int64_t d = 0; d < a.dim; ++d) scan_channel<T, decltype(n)::value>(a, b, d);
  });
  return EDGEQ_OK;
}

template <class T>
static int conv_emu(const ConvArgs<T>& a) {
  if (int rc = conv_check(a)) return rc;
  with_wmax(a.width, [&](auto w) {
    for (int64_t b = 0; b < a.batch; ++b)
      for (int64_t c = 0; c < a.channels; ++c) conv_channel<T, decltype(w)::value>(a, b, c);
  });
  return EDGEQ_OK;
}

#define EMU extern "C" EDGEQ_API int

EMU emu_edgeq_selective_scan_f32(const float* u, const float* delta, const float* A, const float* B,
                                 const float* C, const float* D, const float* delta_bias,
                                 const float* state, const float* z, float* y, float* state_out,
                                 int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                 int64_t groups, int64_t dstate, int32_t delta_softplus, void*) {
  return scan_emu(ScanArgs<float>{u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch,
                                  L, dim, heads, groups, dstate, delta_softplus});
}

EMU emu_edgeq_selective_scan_f16(const H* u, const H* delta, const float* A, const H* B,
                                 const H* C, const float* D, const float* delta_bias,
                                 const float* state, const H* z, H* y, float* state_out,
                                 int64_t batch, int64_t L, int64_t dim, int64_t heads,
                                 int64_t groups, int64_t dstate, int32_t delta_softplus, void*) {
  return scan_emu(ScanArgs<H>{u, delta, A, B, C, D, delta_bias, state, z, y, state_out, batch, L,
                              dim, heads, groups, dstate, delta_softplus});
}

EMU emu_edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                const float* state, float* y, float* state_out, int64_t batch,
                                int64_t L, int64_t channels, int64_t width, int32_t activation,
                                void*) {
  return conv_emu(ConvArgs<float>{x, weight, bias, state, y, state_out, batch, L, channels, width,
                                  activation});
}

EMU emu_edgeq_causal_conv1d_f16(const H* x, const H* weight, const H* bias, const H* state, H* y,
                                H* state_out, int64_t batch, int64_t L, int64_t channels,
                                int64_t width, int32_t activation, void*) {
  return conv_emu(ConvArgs<H>{x, weight, bias, state, y, state_out, batch, L, channels, width,
                              activation});
}
