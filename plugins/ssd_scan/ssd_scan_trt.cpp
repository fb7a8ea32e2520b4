// TensorRT plugin EdgeqSSDScan (docs/ops.md): the op's dtype rules and the calls of the CUDA
// kernels; the rest is plugins/trt/edgeq_trt.h.
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

// Activations (x, dt, B, C, y) are fp32 or fp16, all of one type; A, D, dt_bias, state and
// state_out are fp32.
struct SSDScanOp : table::EdgeqSSDScan {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs) {
    DataType t = io[pos].desc.type;
    if (pos == in_A || pos == in_D || pos == in_dt_bias || pos == in_state ||
        pos == nbInputs + out_state_out)
      return t == DataType::kFLOAT;
    if (pos == in_x) return t == DataType::kFLOAT || t == DataType::kHALF;
    return t == io[in_x].desc.type;
  }

  // chunk_size is a kernel choice, not semantics: the CUDA kernel scans sequentially and
  // ignores it, so any value is taken
  static bool valid(Attrs<SSDScanOp> const& a) {
    return a.i(attr_dt_softplus) == 0 || a.i(attr_dt_softplus) == 1;
  }

  static bool shapes_ok(Attrs<SSDScanOp> const&, PluginTensorDesc const* in, int32_t) {
    Dims const &x = in[in_x].dims, &A = in[in_A].dims, &B = in[in_B].dims;
    if (x.nbDims != 3 || A.nbDims != 1 || B.nbDims != 4) return false;
    int64_t b = x.d[0], L = x.d[1], D = x.d[2], H = A.d[0], G = B.d[2], N = B.d[3];
    return dims_are(in[in_dt].dims, {b, L, H}) && dims_are(B, {b, L, G, N}) &&
           dims_are(in[in_C].dims, {b, L, G, N}) && dims_are(in[in_D].dims, {H}) &&
           dims_are(in[in_dt_bias].dims, {H}) && dims_are(in[in_state].dims, {b, D, N});
  }

  static int enqueue(Attrs<SSDScanOp> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const &x = in[in_x].dims, &B = in[in_B].dims;
    int64_t batch = x.d[0], L = x.d[1], dim = x.d[2], heads = in[in_A].dims.d[0];
    int64_t groups = B.d[2], dstate = B.d[3];
    auto f32 = [&](int32_t k) { return static_cast<float const*>(inputs[k]); };
    float* state_out = static_cast<float*>(outputs[out_state_out]);
    int32_t softplus = a.i(attr_dt_softplus), chunk = a.i(attr_chunk_size);
    if (in[in_x].type == DataType::kHALF) {
      auto h = [&](int32_t k) { return static_cast<edgeq_half const*>(inputs[k]); };
      return edgeq_ssd_scan_f16(h(in_x), h(in_dt), f32(in_A), h(in_B), h(in_C), f32(in_D),
                                f32(in_dt_bias), f32(in_state),
                                static_cast<edgeq_half*>(outputs[out_y]), state_out, batch, L,
                                dim, heads, groups, dstate, softplus, chunk, stream);
    }
    return edgeq_ssd_scan_f32(f32(in_x), f32(in_dt), f32(in_A), f32(in_B), f32(in_C), f32(in_D),
                              f32(in_dt_bias), f32(in_state), static_cast<float*>(outputs[out_y]),
                              state_out, batch, L, dim, heads, groups, dstate, softplus, chunk,
                              stream);
  }
};

}  // namespace

IPluginCreatorInterface* ssd_scan_creator() {
  static Creator<SSDScanOp> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
