// TensorRT plugin EdgeqHadamardInt8 (docs/ops.md): x fp32 [..., n], y int8 of the same shape;
// the rest is plugins/trt/edgeq_trt.h.
#include "edgeq_trt.h"
#include "hadamard_matrix.h"

namespace edgeq {
namespace trt {
namespace {

struct HadamardInt8Op : table::EdgeqHadamardInt8 {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    return io[pos].desc.type == (pos == in_x ? DataType::kFLOAT : DataType::kINT8);
  }

  static bool valid(Attrs<HadamardInt8Op> const& a) { return positive(a.f(attr_y_scale)); }

  static bool shapes_ok(Attrs<HadamardInt8Op> const&, PluginTensorDesc const* in, int32_t) {
    Dims const& x = in[in_x].dims;
    int64_t K = 0, M = 0;
    if (x.nbDims >= 1) hadamard_split(x.d[x.nbDims - 1], K, M);
    return K != 0;  // n = K * 2^m, K in {1, 12, 20, 28}
  }

  static int enqueue(Attrs<HadamardInt8Op> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const& x = in[in_x].dims;
    return edgeq_hadamard_int8(static_cast<float const*>(inputs[in_x]),
                               static_cast<int8_t*>(outputs[out_y]), rows_of(x),
                               x.d[x.nbDims - 1], a.f(attr_y_scale), stream);
  }
};

}  // namespace

IPluginCreatorInterface* hadamard_int8_creator() {
  static Creator<HadamardInt8Op> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
