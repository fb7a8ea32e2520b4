// EdgeqCausalConv1d and EdgeqCausalConv1dInt8 on the GPU (docs/ops.md), one template. One thread
// per (batch, channel), consecutive channels in a block, so the token-major reads of x and writes
// of y are coalesced. The window of the last `width` inputs lives in registers as they were read:
// the state is read once, each x once, and the new state is written at the end by the thread that
// read that state column, so state_out may alias state.
#include <type_traits>

#include "edgeq_cuda.cuh"

namespace edgeq_cuda {

constexpr int kMaxWidth = 32;

// T: x, weight, state and y (float, __half or int8_t); Bias: T, or float for int8
template <class T, class Bias = T>
struct ConvArgs {
  const T *x, *weight;
  const Bias* bias;
  const T* state;  // may alias state_out
  T* y;
  T* state_out;
  int64_t batch, L, channels, width;
  int32_t activation;
  Scale x_scale = {}, weight_scale = {}, y_scale = {};  // int8 only
};

// Products of int8 values sum exactly in int32 (docs/ops.md, "Int8 conventions"), others in fp32.
EDGEQ_CUDA_HD float widen(float x) { return x; }
EDGEQ_CUDA_HD float widen(__half x) { return __half2float(x); }
EDGEQ_CUDA_HD int32_t widen(int8_t x) { return x; }

// One thread: channel c of sequence b. The window is right-aligned in win[WMAX]: win[WMAX-1-i]
// is the input i steps back, so one statically indexed register array serves any width <= WMAX.
template <class T, class Bias, int WMAX>
EDGEQ_CUDA_HD void conv_channel(const ConvArgs<T, Bias>& a, int64_t b, int64_t c) {
  using Acc = decltype(widen(T{}));
  const int64_t C = a.channels, W = a.width, S = W - 1;
  const T* st = a.state + b * S * C + c;
  Acc w[WMAX];
  T win[WMAX];
#pragma unroll
  for (int j = 0; j < WMAX; ++j) {
    const int i = WMAX - 1 - j;  // steps back
    w[j] = i < W ? widen(a.weight[c * W + (W - 1 - i)]) : Acc(0);
    win[j] = i < S ? st[(S - 1 - i) * C] : T{};  // before x[0]: the state, newest last
  }
  const float bias = to_f(a.bias[c]);
  const float acc_scale = a.x_scale.at(c) * a.weight_scale.at(c), y_scale = a.y_scale.at(c);
  for (int64_t t = 0, row = b * a.L; t < a.L; ++t, ++row) {
#pragma unroll
    for (int j = 0; j < WMAX - 1; ++j) win[j] = win[j + 1];
    win[WMAX - 1] = a.x[row * C + c];
    Acc acc = 0;
#pragma unroll
    for (int j = 0; j < WMAX; ++j)  // guarded: 0 * inf outside the window is NaN
      if (WMAX - 1 - j < W) acc += w[j] * widen(win[j]);
    float v = float(acc) * acc_scale + bias;  // fp: acc_scale 1, exact
    if (a.activation == 1) v = silu(v);
    a.y[row * C + c] = from_f<T>(v, y_scale);
  }
  T* so = a.state_out + b * S * C + c;
#pragma unroll
  for (int j = 0; j < WMAX; ++j) {
    const int i = WMAX - 1 - j;
    if (i < S) so[(S - 1 - i) * C] = win[j];
  }
}

template <class T, class Bias, int WMAX>
__global__ void __launch_bounds__(kThreads) conv_kernel(ConvArgs<T, Bias> a) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < a.channels) conv_channel<T, Bias, WMAX>(a, blockIdx.y, c);
}

template <class T, class Bias>
int conv_check(const ConvArgs<T, Bias>& a) {
  if (!a.x || !a.weight || !a.bias || !a.state || !a.y || !a.state_out) return EDGEQ_NULL_POINTER;
  if (a.batch < 1 || a.L < 1 || a.channels < 1 || a.width < 2 || a.width > kMaxWidth ||
      a.batch > 65535)
    return EDGEQ_BAD_SHAPE;
  if (std::is_same<T, int8_t>::value) {  // int8 scales come as arrays
    const Scale scales[] = {a.x_scale, a.weight_scale, a.y_scale};
    for (const Scale& s : scales)
      if (int rc = edgeq_scales_check(s.array, a.channels)) return rc;
  }
  return EDGEQ_OK;
}

// Calls f(std::integral_constant<int, WMAX>{}) with the WMAX that serves width.
template <class F>
void with_wmax(int64_t width, F f) {
  if (width <= 4) f(std::integral_constant<int, 4>{});  // Mamba: width 4
  else f(std::integral_constant<int, kMaxWidth>{});
}

template <class A> Geometry conv_geometry(const A& a) {
  return threads_over(a.channels, kThreads, a.batch);
}

template <class T, class Bias>
int conv_launch(const ConvArgs<T, Bias>& a, void* stream) {
  if (int rc = conv_check(a)) return rc;
  const Geometry g = conv_geometry(a);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  with_wmax(a.width, [&](auto w) {
    conv_kernel<T, Bias, decltype(w)::value><<<g.grid(), g.block, 0, s>>>(a);
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

extern "C" int edgeq_causal_conv1d_int8(const int8_t* x, const int8_t* weight,
                                        const float* bias, const int8_t* state, int8_t* y,
                                        int8_t* state_out, int64_t batch, int64_t L,
                                        int64_t channels, int64_t width, edgeq_scales x_scale,
                                        edgeq_scales weight_scale, edgeq_scales y_scale,
                                        int32_t activation, void* stream) {
  using namespace edgeq_cuda;
  return conv_launch(ConvArgs<int8_t, float>{x, weight, bias, state, y, state_out, batch, L,
                                             channels, width, activation, x_scale, weight_scale,
                                             y_scale},
                     stream);
}
