// TensorRT plugins EdgeqSelectiveScan and EdgeqSelectiveScanInt8 (docs/ops.md): the ops' dtype
// rules and the calls of the CUDA kernels; the rest is plugins/trt/edgeq_trt.h. Both have the
// same inputs and shapes.
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

template <class Row>
struct ScanShapes : Row {
  template <class Op>
  static bool shapes_ok(Attrs<Op> const&, PluginTensorDesc const* in, int32_t nbInputs) {
    Dims const &u = in[Row::in_u].dims, &A = in[Row::in_A].dims, &B = in[Row::in_B].dims;
    if (u.nbDims != 3 || A.nbDims != 2 || B.nbDims != 4) return false;
    int64_t b = u.d[0], L = u.d[1], D = u.d[2], H = A.d[0], N = A.d[1], G = B.d[2];
    return dims_are(in[Row::in_delta].dims, {b, L, H}) && dims_are(B, {b, L, G, N}) &&
           dims_are(in[Row::in_C].dims, {b, L, G, N}) && dims_are(in[Row::in_D].dims, {D}) &&
           dims_are(in[Row::in_delta_bias].dims, {H}) &&
           dims_are(in[Row::in_state].dims, {b, D, N}) &&
           (nbInputs <= Row::in_z || dims_are(in[Row::in_z].dims, {b, L, D}));
  }
};

// Activations (u, delta, B, C, z, y) are fp32 or fp16, all of one type; A, D, delta_bias, state
// and state_out are fp32.
struct SelectiveScanOp : ScanShapes<table::EdgeqSelectiveScan> {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs) {
    DataType t = io[pos].desc.type;
    if (pos == in_A || pos == in_D || pos == in_delta_bias || pos == in_state ||
        pos == nbInputs + out_state_out)
      return t == DataType::kFLOAT;
    if (pos == in_u) return t == DataType::kFLOAT || t == DataType::kHALF;
    return t == io[in_u].desc.type;
  }

  static bool valid(Attrs<SelectiveScanOp> const& a) {
    return a.i(attr_delta_softplus) == 0 || a.i(attr_delta_softplus) == 1;
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
    int32_t softplus = a.i(attr_delta_softplus);
    if (in[in_u].type == DataType::kHALF) {
      auto h = [&](void const* p) { return static_cast<edgeq_half const*>(p); };
      return edgeq_selective_scan_f16(
          h(inputs[in_u]), h(inputs[in_delta]), f32(in_A), h(inputs[in_B]), h(inputs[in_C]),
          f32(in_D), f32(in_delta_bias), f32(in_state), h(z),
          static_cast<edgeq_half*>(outputs[out_y]), state_out, batch, L, dim, heads, groups,
          dstate, softplus, stream);
    }
    return edgeq_selective_scan_f32(f32(in_u), f32(in_delta), f32(in_A), f32(in_B), f32(in_C),
                                    f32(in_D), f32(in_delta_bias), f32(in_state),
                                    static_cast<float const*>(z),
                                    static_cast<float*>(outputs[out_y]), state_out, batch, L, dim,
                                    heads, groups, dstate, softplus, stream);
  }
};

// u, delta, B, C and z int8; the rest, y included, fp32. The gate is required.
struct SelectiveScanInt8Op : ScanShapes<table::EdgeqSelectiveScanInt8> {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    constexpr DataType i8 = DataType::kINT8, f32 = DataType::kFLOAT;
    constexpr DataType types[kNbInputs + kNbOutputs] = {i8, i8, f32, i8, i8, f32, f32, f32, i8,
                                                        /* y, state_out */ f32, f32};
    return io[pos].desc.type == types[pos];
  }

  static bool valid(Attrs<SelectiveScanInt8Op> const& a) {
    return (a.i(attr_delta_softplus) == 0 || a.i(attr_delta_softplus) == 1) &&
           positive(a.f(attr_u_scale)) && positive(a.f(attr_delta_scale)) &&
           positive(a.f(attr_B_scale)) && positive(a.f(attr_C_scale)) &&
           positive(a.f(attr_z_scale));
  }

  static int enqueue(Attrs<SelectiveScanInt8Op> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const &u = in[in_u].dims, &A = in[in_A].dims;
    auto i8 = [&](int32_t k) { return static_cast<int8_t const*>(inputs[k]); };
    auto f32 = [&](int32_t k) { return static_cast<float const*>(inputs[k]); };
    return edgeq_selective_scan_int8(
        i8(in_u), i8(in_delta), f32(in_A), i8(in_B), i8(in_C), f32(in_D), f32(in_delta_bias),
        f32(in_state), i8(in_z), static_cast<float*>(outputs[out_y]),
        static_cast<float*>(outputs[out_state_out]), u.d[0], u.d[1], u.d[2], A.d[0],
        in[in_B].dims.d[2], A.d[1], a.f(attr_u_scale), a.f(attr_delta_scale),
        a.f(attr_B_scale), a.f(attr_C_scale), a.f(attr_z_scale), a.i(attr_delta_softplus),
        stream);
  }
};

}  // namespace

IPluginCreatorInterface* selective_scan_creator() {
  static Creator<SelectiveScanOp> creator;
  return &creator;
}

IPluginCreatorInterface* selective_scan_int8_creator() {
  static Creator<SelectiveScanInt8Op> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
