// EdgeqCausalConv1d and EdgeqCausalConv1dInt8 on the CPU (docs/ops.md). The window of the last
// `width` inputs is read from the state, then x; the new state is taken before any output is
// written, so state_out may alias state.
#include <vector>

#include "edgeq_cpu_threads.h"
#include "edgeq_kernels.h"
#include "edgeq_quant.h"

namespace {

// Out(acc, c) turns the accumulated sum of channel c into the stored output.
template <typename T, typename Acc, typename Out>
int conv(const T* x, const T* weight, const T* state, Out out_fn, T* y, T* state_out,
         int64_t batch, int64_t L, int64_t channels, int64_t width) {
  if (!x || !weight || !state || !y || !state_out) return EDGEQ_NULL_POINTER;
  if (batch < 1 || L < 1 || channels < 1 || width < 2) return EDGEQ_BAD_SHAPE;
  const int64_t S = width - 1;
#pragma omp parallel for if(batch > 1 && batch * L * channels * width >= kEdgeqParallelMinWork) \
    schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    const T* st = state + b * S * channels;
    const T* xb = x + b * L * channels;
    auto xx = [&](int64_t i, int64_t c) {  // concat(state, x) along time
      return i < S ? st[i * channels + c] : xb[(i - S) * channels + c];
    };
    std::vector<T> tail(S * channels);
    for (int64_t i = 0; i < S; ++i)
      for (int64_t c = 0; c < channels; ++c) tail[i * channels + c] = xx(L + i, c);
    for (int64_t t = 0; t < L; ++t) {
      T* yt = y + (b * L + t) * channels;
      for (int64_t c = 0; c < channels; ++c) {
        Acc acc = 0;
        for (int64_t k = 0; k < width; ++k) acc += Acc(weight[c * width + k]) * Acc(xx(t + k, c));
        yt[c] = out_fn(acc, c);
      }
    }
    T* so = state_out + b * S * channels;
    for (int64_t i = 0; i < S * channels; ++i) so[i] = tail[i];
  }
  return EDGEQ_OK;
}

}  // namespace

extern "C" int edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                       const float* state, float* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t channels,
                                       int64_t width, int32_t activation, void*) {
  if (!bias) return EDGEQ_NULL_POINTER;
  auto out = [&](float acc, int64_t c) {
    const float v = acc + bias[c];
    return activation == 1 ? edgeq_silu(v) : v;
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
  std::vector<float> acc_scale(channels);  // x_scale[c] * weight_scale[c], in fp32
  for (int64_t c = 0; c < channels; ++c)
    acc_scale[c] = edgeq_scale_at(x_scale, c) * edgeq_scale_at(weight_scale, c);
  auto out = [&](int32_t acc, int64_t c) {
    float v = float(acc) * acc_scale[c] + bias[c];
    if (activation == 1) v = edgeq_silu(v);
    return edgeq_quantize(v, edgeq_scale_at(y_scale, c));
  };
  return conv<int8_t, int32_t>(x, weight, state, out, y, state_out, batch, L, channels, width);
}
