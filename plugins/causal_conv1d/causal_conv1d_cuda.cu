// EdgeqCausalConv1d on the GPU (docs/ops.md). One thread per (batch, channel), consecutive
// channels in a block, so the token-major reads of x and writes of y are coalesced. The window of
// the last `width` inputs lives in registers: the state is read once, each x once, and the new
// state is written at the end by the thread that read that state column, so state_out may alias
// state.
#include <type_traits>

#include "edgeq_cuda.cuh"

namespace edgeq_cuda {

constexpr int kMaxWidth = 32;

template <class T>  // T: float or __half, for every tensor of the op
struct ConvArgs {
  const T *x, *weight, *bias;
  const T* state;  // may alias state_out
  T* y;
  T* state_out;
  int64_t batch, L, channels, width;
  int32_t activation;
};

// One thread: channel c of sequence b. The window is right-aligned in win[WMAX]: win[WMAX-1-i]
// is the input i steps back, so one statically indexed register array serves any width <= WMAX.
template <class T, int WMAX>
EDGEQ_CUDA_HD void conv_channel(const ConvArgs<T>& a, int64_t b, int64_t c) {
  const int64_t C = a.channels, W = a.width, S = W - 1;
  const T* st = a.state + b * S * C + c;
  float w[WMAX], win[WMAX];
#pragma unroll
  for (int j = 0; j < WMAX; ++j) {
    const int i = WMAX - 1 - j;  // steps back
    w[j] = i < W ? to_f(a.weight[c * W + (W - 1 - i)]) : 0.f;
    win[j] = i < S ? to_f(st[(S - 1 - i) * C]) : 0.f;  // before x[0]: the state, newest last
  }
  const float bias = to_f(a.bias[c]);
  for (int64_t t = 0, row = b * a.L; t < a.L; ++t, ++row) {
#pragma unroll
    for (int j = 0; j < WMAX - 1; ++j) win[j] = win[j + 1];
    win[WMAX - 1] = to_f(a.x[row * C + c]);
    float acc = bias;
#pragma unroll
    for (int j = 0; j < WMAX; ++j)
      if (WMAX - 1 - j < W) acc += w[j] * win[j];  // guarded: 0 * inf outside the window is NaN
    a.y[row * C + c] = from_f<T>(a.activation == 1 ? silu(acc) : acc);
  }
  T* so = a.state_out + b * S * C + c;
#pragma unroll
  for (int j = 0; j < WMAX; ++j) {
    const int i = WMAX - 1 - j;
    if (i < S) so[(S - 1 - i) * C] = from_f<T>(win[j]);  // exact: win holds T values
  }
}

template <class T, int WMAX>
__global__ void __launch_bounds__(kThreads) conv_kernel(ConvArgs<T> a) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < a.channels) conv_channel<T, WMAX>(a, blockIdx.y, c);
}

template <class T>
int conv_check(const ConvArgs<T>& a) {
  if (!a.x || !a.weight || !a.bias || !a.state || !a.y || !a.state_out) return EDGEQ_NULL_POINTER;
  if (a.batch < 1 || a.L < 1 || a.channels < 1 || a.width < 2 || a.width > kMaxWidth ||
      a.batch > 65535)
    return EDGEQ_BAD_SHAPE;
  return EDGEQ_OK;
}

// Calls f(std::integral_constant<int, WMAX>{}) with the WMAX that serves width.
template <class F>
void with_wmax(int64_t width, F f) {
  if (width <= 4) f(std::integral_constant<int, 4>{});  // Mamba: width 4
  else f(std::integral_constant<int, kMaxWidth>{});
}

template <class T>
int conv_launch(const ConvArgs<T>& a, void* stream) {
  if (int rc = conv_check(a)) return rc;
  const dim3 grid(unsigned((a.channels + kThreads - 1) / kThreads), unsigned(a.batch));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  with_wmax(a.width, [&](auto w) {
    conv_kernel<T, decltype(w)::value><<<grid, kThreads, 0, s>>>(a);
  });
  return launch_status();
}

}  // namespace edgeq_cuda

extern "C" int edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                       const float* state, float* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t channels,
                                       int64_t width, int32_t activation, void* stream) {
  using namespace edgeq_cuda;
  return conv_launch(ConvArgs<float>{x, weight, bias, state, y, state_out, batch, L, channels,
                                     width, activation},
                     stream);
}

extern "C" int edgeq_causal_conv1d_f16(const edgeq_half* x, const edgeq_half* weight,
                                       const edgeq_half* bias, const edgeq_half* state,
                                       edgeq_half* y, edgeq_half* state_out, int64_t batch,
                                       int64_t L, int64_t channels, int64_t width,
                                       int32_t activation, void* stream) {
  using namespace edgeq_cuda;
  using H = __half;
  return conv_launch(
      ConvArgs<H>{reinterpret_cast<const H*>(x), reinterpret_cast<const H*>(weight),
                  reinterpret_cast<const H*>(bias), reinterpret_cast<const H*>(state),
                  reinterpret_cast<H*>(y), reinterpret_cast<H*>(state_out), batch, L, channels,
                  width, activation},
      stream);
}
