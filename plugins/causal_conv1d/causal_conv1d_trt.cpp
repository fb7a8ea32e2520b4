// TensorRT plugins EdgeqCausalConv1d and EdgeqCausalConv1dInt8 (docs/ops.md): the ops' dtype
// rules and the calls of the CUDA kernels; the rest is plugins/trt/edgeq_trt.h. Both have the
// same inputs and shapes.
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

template <class Row>
struct ConvShapes : Row {
  template <class Op>
  static bool shapes_ok(Attrs<Op> const&, PluginTensorDesc const* in, int32_t) {
    Dims const &x = in[Row::in_x].dims, &w = in[Row::in_weight].dims;
    if (x.nbDims != 3 || w.nbDims != 2) return false;
    int64_t b = x.d[0], C = x.d[2], W = w.d[1];
    return w.d[0] == C && dims_are(in[Row::in_bias].dims, {C}) &&
           dims_are(in[Row::in_state].dims, {b, W - 1, C});
  }
};

// Every tensor is fp32 or fp16, all of one type (the state holds past inputs).
struct CausalConv1dOp : ConvShapes<table::EdgeqCausalConv1d> {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    DataType t = io[pos].desc.type;
    if (pos == in_x) return t == DataType::kFLOAT || t == DataType::kHALF;
    return t == io[in_x].desc.type;
  }

  static bool valid(Attrs<CausalConv1dOp> const& a) {
    return a.i(attr_activation) == 0 || a.i(attr_activation) == 1;
  }

  static int enqueue(Attrs<CausalConv1dOp> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const& x = in[in_x].dims;
    int64_t batch = x.d[0], L = x.d[1], channels = x.d[2], width = in[in_weight].dims.d[1];
    if (in[in_x].type == DataType::kHALF) {
      auto h = [&](int32_t k) { return static_cast<edgeq_half const*>(inputs[k]); };
      auto o = [&](int32_t k) { return static_cast<edgeq_half*>(outputs[k]); };
      return edgeq_causal_conv1d_f16(h(in_x), h(in_weight), h(in_bias), h(in_state), o(out_y),
                                     o(out_state_out), batch, L, channels, width,
                                     a.i(attr_activation), stream);
    }
    auto f = [&](int32_t k) { return static_cast<float const*>(inputs[k]); };
    auto o = [&](int32_t k) { return static_cast<float*>(outputs[k]); };
    return edgeq_causal_conv1d_f32(f(in_x), f(in_weight), f(in_bias), f(in_state), o(out_y),
                                   o(out_state_out), batch, L, channels, width,
                                   a.i(attr_activation), stream);
  }
};

// x, weight, state, y and state_out int8; bias fp32; scales per tensor or per channel.
struct CausalConv1dInt8Op : ConvShapes<table::EdgeqCausalConv1dInt8> {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    return io[pos].desc.type == (pos == in_bias ? DataType::kFLOAT : DataType::kINT8);
  }

  static bool valid(Attrs<CausalConv1dInt8Op> const& a) {
    return (a.i(attr_activation) == 0 || a.i(attr_activation) == 1) &&
           positive(a.floats(attr_x_scale)) && positive(a.floats(attr_weight_scale)) &&
           positive(a.floats(attr_y_scale));
  }

  static int enqueue(Attrs<CausalConv1dInt8Op> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const& x = in[in_x].dims;
    auto i8 = [&](int32_t k) { return static_cast<int8_t const*>(inputs[k]); };
    auto o = [&](int32_t k) { return static_cast<int8_t*>(outputs[k]); };
    return edgeq_causal_conv1d_int8(
        i8(in_x), i8(in_weight), static_cast<float const*>(inputs[in_bias]), i8(in_state),
        o(out_y), o(out_state_out), x.d[0], x.d[1], x.d[2], in[in_weight].dims.d[1],
        a.scales(attr_x_scale), a.scales(attr_weight_scale), a.scales(attr_y_scale),
        a.i(attr_activation), stream);
  }
};

}  // namespace

IPluginCreatorInterface* causal_conv1d_creator() {
  static Creator<CausalConv1dOp> creator;
  return &creator;
}

IPluginCreatorInterface* causal_conv1d_int8_creator() {
  static Creator<CausalConv1dInt8Op> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
