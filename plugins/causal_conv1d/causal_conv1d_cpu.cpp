// EdgeqCausalConv1d on the CPU (docs/ops.md). The window of the last `width` inputs is read
// from the state then x; the new state is written after every output, so state_out may alias
// state.
#include <cmath>
#include <vector>

#include "edgeq_kernels.h"

extern "C" int edgeq_causal_conv1d_f32(const float* x, const float* weight, const float* bias,
                                       const float* state, float* y, float* state_out,
                                       int64_t batch, int64_t L, int64_t channels,
                                       int64_t width, int32_t activation, void*) {
  if (!x || !weight || !bias || !state || !y || !state_out) return EDGEQ_NULL_POINTER;
  if (batch < 1 || L < 1 || channels < 1 || width < 2) return EDGEQ_BAD_SHAPE;
  const int64_t S = width - 1;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    const float* st = state + b * S * channels;
    const float* xb = x + b * L * channels;
    // xx(i, c) = concat(state, x) along time
    auto xx = [&](int64_t i, int64_t c) { return i < S ? st[i * channels + c] : xb[(i - S) * channels + c]; };
    std::vector<float> tail(S * channels);
    for (int64_t i = 0; i < S; ++i)
      for (int64_t c = 0; c < channels; ++c) tail[i * channels + c] = xx(L + i, c);
    for (int64_t t = 0; t < L; ++t) {
      float* yt = y + (b * L + t) * channels;
      for (int64_t c = 0; c < channels; ++c) {
        float acc = bias[c];
        for (int64_t k = 0; k < width; ++k) acc += weight[c * width + k] * xx(t + k, c);
        yt[c] = activation == 1 ? acc / (1.f + std::exp(-acc)) : acc;
      }
    }
    float* so = state_out + b * S * channels;
    for (int64_t i = 0; i < S * channels; ++i) so[i] = tail[i];
  }
  return EDGEQ_OK;
}
