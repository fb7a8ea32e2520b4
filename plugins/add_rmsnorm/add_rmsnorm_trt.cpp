// TensorRT plugin EdgeqAddRMSNormInt8 (docs/ops.md): x, residual, weight and residual_out fp32,
// y int8; the rest is plugins/trt/edgeq_trt.h.
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

struct AddRMSNormInt8Op : table::EdgeqAddRMSNormInt8 {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs) {
    return io[pos].desc.type == (pos == nbInputs + out_y ? DataType::kINT8 : DataType::kFLOAT);
  }

  static bool valid(Attrs<AddRMSNormInt8Op> const& a) {
    return std::isfinite(a.f(attr_eps)) && a.f(attr_eps) >= 0.f && positive(a.f(attr_y_scale));
  }

  static bool shapes_ok(Attrs<AddRMSNormInt8Op> const&, PluginTensorDesc const* in, int32_t) {
    Dims const& x = in[in_x].dims;
    return x.nbDims >= 1 && same_dims(in[in_residual].dims, x) &&
           dims_are(in[in_weight].dims, {x.d[x.nbDims - 1]});
  }

  static int enqueue(Attrs<AddRMSNormInt8Op> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const& x = in[in_x].dims;
    auto f = [&](int32_t k) { return static_cast<float const*>(inputs[k]); };
    return edgeq_add_rmsnorm_int8(f(in_x), f(in_residual), f(in_weight),
                                  static_cast<int8_t*>(outputs[out_y]),
                                  static_cast<float*>(outputs[out_residual_out]), rows_of(x),
                                  x.d[x.nbDims - 1], a.f(attr_eps), a.f(attr_y_scale), stream);
  }
};

}  // namespace

IPluginCreatorInterface* add_rmsnorm_int8_creator() {
  static Creator<AddRMSNormInt8Op> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
