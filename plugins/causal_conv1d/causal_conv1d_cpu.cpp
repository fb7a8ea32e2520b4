// EdgeqCausalConv1d and EdgeqCausalConv1dInt8 on the CPU (docs/ops.md). The window of the last
// `width` inputs is read from the state, then x; the new state is taken before any output is
// written, so state_out may alias state.
#include <cstring>
#include <vector>

#include "edgeq_cpu_threads.h"
#include "edgeq_kernels.h"
#include "edgeq_quant.h"

namespace {

constexpr int64_t kPass = 256;  // channels per vectorised pass of the int8 output

// Out(acc, y, channels) turns a time step's accumulated sums into its stored outputs (a whole
// row: its lambdas copy their captures to locals, which int8 stores cannot alias, so the loop
// vectorises). Loops run over
// channels innermost (weights transposed to [width, channels] once per call), so that they
// vectorise; each channel still sums k = 0..width-1 in order.
template <typename T, typename Acc, typename Out>
int conv(const T* x, const T* weight, const T* state, Out out_fn, T* y, T* state_out,
         int64_t batch, int64_t L, int64_t channels, int64_t width) {
  if (!x || !weight || !state || !y || !state_out) return EDGEQ_NULL_POINTER;
  if (batch < 1 || L < 1 || channels < 1 || width < 2) return EDGEQ_BAD_SHAPE;
  const int64_t S = width - 1;
  std::vector<T> wt(width * channels);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t k = 0; k < width; ++k) wt[k * channels + c] = weight[c * width + k];
#pragma omp parallel for if(edgeq_team(batch, batch * L * channels * width)) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    const T* st = state + b * S * channels;
    const T* xb = x + b * L * channels;
    auto in = [=](int64_t i) {  // row i of concat(state, x) along time (by value: int8 stores
                                // may alias anything whose address escapes)
      return i < S ? st + i * channels : xb + (i - S) * channels;
    };
    std::vector<T> tail(S * channels);
    for (int64_t i = 0; i < S; ++i) std::memcpy(&tail[i * channels], in(L + i), sizeof(T) * channels);
    std::vector<Acc> acc(channels);
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t c = 0; c < channels; ++c) acc[c] = 0;
      for (int64_t k = 0; k < width; ++k) {
        const T* r = in(t + k);
        const T* wk = &wt[k * channels];
        for (int64_t c = 0; c < channels; ++c) acc[c] += Acc(wk[c]) * Acc(r[c]);
      }
      T* yt = y + (b * L + t) * channels;
      out_fn(acc.data(), yt, channels);
    }
    std::memcpy(state_out + b * S * channels, tail.data(), sizeof(T) * S * channels);
  }
  return EDGEQ_OK;
}

}  // namespace

extern "C" int edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                       const float* state, float* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t channels,
                                       int64_t width, int32_t activation, void*) {
  if (!bias) return EDGEQ_NULL_POINTER;
  auto out = [bias, silu = activation == 1](const float* __restrict acc, float* __restrict y,
                                            int64_t channels) {
    for (int64_t c = 0; c < channels; ++c) y[c] = acc[c] + bias[c];
    if (silu)
      for (int64_t c = 0; c < channels; ++c) y[c] = edgeq_silu(y[c]);
  };
  return conv<float, float>(x, weight, state, out, y, state_out, batch, L, channels, width);
}

extern "C" int edgeq_causal_conv1d_int8(const int8_t* x, const int8_t* weight,
                                        const float* bias, const int8_t* state, int8_t* y,
                                        int8_t* state_out, int64_t batch, int64_t L,
                                        int64_t channels, int64_t width, edgeq_scales x_scale,
                                        edgeq_scales weight_scale, edgeq_scales y_scale,
                                        int32_t activation, void*) {
  if (!bias) return EDGEQ_NULL_POINTER;
  for (edgeq_scales s : {x_scale, weight_scale, y_scale})
    if (int rc = edgeq_scales_check(s, channels)) return rc;
  if (channels < 1) return EDGEQ_BAD_SHAPE;
  // per channel: x_scale[c] * weight_scale[c] in fp32, and y's scale (flat arrays, so the
  // output loop vectorises)
  std::vector<float> acc_scale(channels), out_scale(channels);
  for (int64_t c = 0; c < channels; ++c) {
    acc_scale[c] = edgeq_scale_at(x_scale, c) * edgeq_scale_at(weight_scale, c);
    out_scale[c] = edgeq_scale_at(y_scale, c);
  }
  const bool silu = activation == 1;
  auto out = [silu, bias, as = acc_scale.data(), ys = out_scale.data()](
                 const int32_t* __restrict acc, int8_t* __restrict y, int64_t channels) {
    // in passes of one element type each: a loop mixing int8, fp32 and fp64 does not vectorise
    for (int64_t c0 = 0; c0 < channels; c0 += kPass) {
      const int64_t n = channels - c0 < kPass ? channels - c0 : kPass;
      float v[kPass];
      for (int64_t c = 0; c < n; ++c) v[c] = float(acc[c0 + c]) * as[c0 + c] + bias[c0 + c];
      if (silu)
        for (int64_t c = 0; c < n; ++c) v[c] = edgeq_silu(v[c]);
      for (int64_t c = 0; c < n; ++c) y[c0 + c] = edgeq_quantize(v[c], ys[c0 + c]);
    }
  };
  return conv<int8_t, int32_t>(x, weight, state, out, y, state_out, batch, L, channels, width);
}
