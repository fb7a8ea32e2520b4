// TensorRT plugin EdgeqCausalConv1d (docs/ops.md): the op's dtype rules and the call of the CUDA
// kernel; the rest is plugins/trt/edgeq_trt.h. Every tensor is fp32 or fp16, all of one type
// (the state holds past inputs).
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

struct CausalConv1dOp : table::EdgeqCausalConv1d {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    DataType t = io[pos].desc.type;
    if (pos == in_x) return t == DataType::kFLOAT || t == DataType::kHALF;
    return t == io[in_x].desc.type;
  }

  static bool valid(Attrs<CausalConv1dOp> const& a) { return a.i(0) == 0 || a.i(0) == 1; }

  static bool shapes_ok(PluginTensorDesc const* in, int32_t) {
    Dims const &x = in[in_x].dims, &w = in[in_weight].dims;
    if (x.nbDims != 3 || w.nbDims != 2) return false;
    int64_t b = x.d[0], C = x.d[2], W = w.d[1];
    return w.d[0] == C && dims_are(in[in_bias].dims, {C}) &&
           dims_are(in[in_state].dims, {b, W - 1, C});
  }

  static int enqueue(Attrs<CausalConv1dOp> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const& x = in[in_x].dims;
    int64_t batch = x.d[0], L = x.d[1], channels = x.d[2], width = in[in_weight].dims.d[1];
    if (in[in_x].type == DataType::kHALF) {
      auto h = [&](int32_t k) { return static_cast<edgeq_half const*>(inputs[k]); };
      auto o = [&](int32_t k) { return static_cast<edgeq_half*>(outputs[k]); };
      return edgeq_causal_conv1d_f16(h(in_x), h(in_weight), h(in_bias), h(in_state), o(out_y),
                                     o(out_state_out), batch, L, channels, width, a.i(0), stream);
    }
    auto f = [&](int32_t k) { return static_cast<float const*>(inputs[k]); };
    auto o = [&](int32_t k) { return static_cast<float*>(outputs[k]); };
    return edgeq_causal_conv1d_f32(f(in_x), f(in_weight), f(in_bias), f(in_state), o(out_y),
                                   o(out_state_out), batch, L, channels, width, a.i(0), stream);
  }
};

}  // namespace

IPluginCreatorInterface* causal_conv1d_creator() {
  static Creator<CausalConv1dOp> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
