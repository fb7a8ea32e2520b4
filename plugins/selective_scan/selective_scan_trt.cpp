// TensorRT plugin EdgeqSelectiveScan (docs/ops.md): the op's dtype rules and the call of the CUDA
// kernel; the rest is plugins/trt/edgeq_trt.h. Activations (u, delta, B, C, z, y) are fp32 or
// fp16, all of one type; A, D, delta_bias, state and state_out are fp32.
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

struct SelectiveScanOp : table::EdgeqSelectiveScan {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs) {
    DataType t = io[pos].desc.type;
    if (pos == in_A || pos == in_D || pos == in_delta_bias || pos == in_state ||
        pos == nbInputs + out_state_out)
      return t == DataType::kFLOAT;
    if (pos == in_u) return t == DataType::kFLOAT || t == DataType::kHALF;
    return t == io[in_u].desc.type;
  }

  static bool valid(Attrs<SelectiveScanOp> const& a) { return a.i(0) == 0 || a.i(0) == 1; }

  static bool shapes_ok(PluginTensorDesc const* in, int32_t nbInputs) {
    Dims const &u = in[in_u].dims, &A = in[in_A].dims, &B = in[in_B].dims;
    if (u.nbDims != 3 || A.nbDims != 2 || B.nbDims != 4) return false;
    int64_t b = u.d[0], L = u.d[1], D = u.d[2], H = A.d[0], N = A.d[1], G = B.d[2];
    return dims_are(in[in_delta].dims, {b, L, H}) && dims_are(B, {b, L, G, N}) &&
           dims_are(in[in_C].dims, {b, L, G, N}) && dims_are(in[in_D].dims, {D}) &&
           dims_are(in[in_delta_bias].dims, {H}) && dims_are(in[in_state].dims, {b, D, N}) &&
           (nbInputs <= in_z || dims_are(in[in_z].dims, {b, L, D}));
  }

  static int enqueue(Attrs<SelectiveScanOp> const& a, PluginTensorDesc const* in,
                     int32_t nbInputs, void const* const* inputs, void* const* outputs,
                     cudaStream_t stream) {
    Dims const &u = in[in_u].dims, &A = in[in_A].dims;
    int64_t batch = u.d[0], L = u.d[1], dim = u.d[2], heads = A.d[0], dstate = A.d[1];
    int64_t groups = in[in_B].dims.d[2];
    auto f32 = [&](int32_t k) { return static_cast<float const*>(inputs[k]); };
    void const* z = nbInputs > in_z ? inputs[in_z] : nullptr;
    float* state_out = static_cast<float*>(outputs[out_state_out]);
    if (in[in_u].type == DataType::kHALF) {
      auto h = [&](void const* p) { return static_cast<edgeq_half const*>(p); };
      return edgeq_selective_scan_f16(
          h(inputs[in_u]), h(inputs[in_delta]), f32(in_A), h(inputs[in_B]), h(inputs[in_C]),
          f32(in_D), f32(in_delta_bias), f32(in_state), h(z),
          static_cast<edgeq_half*>(outputs[out_y]), state_out, batch, L, dim, heads, groups,
          dstate, a.i(0), stream);
    }
    return edgeq_selective_scan_f32(f32(in_u), f32(in_delta), f32(in_A), f32(in_B), f32(in_C),
                                    f32(in_D), f32(in_delta_bias), f32(in_state),
                                    static_cast<float const*>(z),
                                    static_cast<float*>(outputs[out_y]), state_out, batch, L, dim,
                                    heads, groups, dstate, a.i(0), stream);
  }
};

}  // namespace

IPluginCreatorInterface* selective_scan_creator() {
  static Creator<SelectiveScanOp> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
