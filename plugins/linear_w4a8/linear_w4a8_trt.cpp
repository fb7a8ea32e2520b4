// TensorRT plugin EdgeqLinearW4A8 (docs/ops.md): x int8 [..., K], weight [N, K/2] packed int4,
// weight_scale fp32 [N, K/group_size], y fp32 [..., N]; the rest is plugins/trt/edgeq_trt.h.
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

struct LinearW4A8Op : table::EdgeqLinearW4A8 {
  // The packed weight bytes arrive as int8: TensorRT's ONNX parser widens UINT8 initializers to
  // INT32 (onnx-tensorrt WeightsContext.cpp), so the graph stores them as INT8.
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    DataType t = io[pos].desc.type;
    if (pos == in_x || pos == in_weight) return t == DataType::kINT8;
    return t == DataType::kFLOAT;  // weight_scale, y
  }

  static bool valid(Attrs<LinearW4A8Op> const& a) {
    int32_t group = a.i(attr_group_size);
    return positive(a.f(attr_x_scale)) && group >= 2 && group % 2 == 0;
  }

  static bool shapes_ok(Attrs<LinearW4A8Op> const& a, PluginTensorDesc const* in, int32_t) {
    Dims const &x = in[in_x].dims, &w = in[in_weight].dims;
    if (x.nbDims < 1 || w.nbDims != 2) return false;
    int64_t K = x.d[x.nbDims - 1], N = w.d[0], group = a.i(attr_group_size);
    return K > 0 && K % group == 0 && dims_are(w, {N, K / 2}) &&
           dims_are(in[in_weight_scale].dims, {N, K / group});
  }

  static int enqueue(Attrs<LinearW4A8Op> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const& x = in[in_x].dims;
    return edgeq_linear_w4a8(static_cast<int8_t const*>(inputs[in_x]),
                             static_cast<uint8_t const*>(inputs[in_weight]),
                             static_cast<float const*>(inputs[in_weight_scale]),
                             static_cast<float*>(outputs[out_y]), rows_of(x), x.d[x.nbDims - 1],
                             in[in_weight].dims.d[0], a.f(attr_x_scale), a.i(attr_group_size),
                             stream);
  }
};

}  // namespace

IPluginCreatorInterface* linear_w4a8_creator() {
  static Creator<LinearW4A8Op> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
