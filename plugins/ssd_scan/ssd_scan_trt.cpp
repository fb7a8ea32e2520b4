// TensorRT plugins EdgeqSSDScan and EdgeqSSDScanInt8 (docs/ops.md): the ops' dtype rules and the
// calls of the CUDA kernels; the rest is plugins/trt/edgeq_trt.h. Both have the same inputs and
// shapes.
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

template <class Row>
struct SsdShapes : Row {
  template <class Op>
  static bool shapes_ok(Attrs<Op> const&, PluginTensorDesc const* in, int32_t) {
    Dims const &x = in[Row::in_x].dims, &A = in[Row::in_A].dims, &B = in[Row::in_B].dims;
    if (x.nbDims != 3 || A.nbDims != 1 || B.nbDims != 4) return false;
    int64_t b = x.d[0], L = x.d[1], D = x.d[2], H = A.d[0], G = B.d[2], N = B.d[3];
    return dims_are(in[Row::in_dt].dims, {b, L, H}) && dims_are(B, {b, L, G, N}) &&
           dims_are(in[Row::in_C].dims, {b, L, G, N}) && dims_are(in[Row::in_D].dims, {H}) &&
           dims_are(in[Row::in_dt_bias].dims, {H}) && dims_are(in[Row::in_state].dims, {b, D, N});
  }
};

// dt_softplus is 0 or 1. chunk_size is a kernel choice, not semantics: the CUDA kernel scans
// sequentially and ignores it, so any value is taken.
bool softplus_ok(int32_t v) { return v == 0 || v == 1; }

// Activations (x, dt, B, C, y) are fp32 or fp16, all of one type; A, D, dt_bias, state and
// state_out are fp32.
struct SSDScanOp : SsdShapes<table::EdgeqSSDScan> {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs) {
    DataType t = io[pos].desc.type;
    if (pos == in_A || pos == in_D || pos == in_dt_bias || pos == in_state ||
        pos == nbInputs + out_state_out)
      return t == DataType::kFLOAT;
    if (pos == in_x) return t == DataType::kFLOAT || t == DataType::kHALF;
    return t == io[in_x].desc.type;
  }

  static bool valid(Attrs<SSDScanOp> const& a) { return softplus_ok(a.i(attr_dt_softplus)); }

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

// x, dt, B and C int8; state and state_out fp16 (the state cache); the rest, y included, fp32.
// Scales: x per channel, dt per head, B and C per group, or per tensor.
struct SSDScanInt8Op : SsdShapes<table::EdgeqSSDScanInt8> {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    constexpr DataType i8 = DataType::kINT8, f32 = DataType::kFLOAT, f16 = DataType::kHALF;
    constexpr DataType types[kNbInputs + kNbOutputs] = {i8, i8, f32, i8, i8, f32, f32, f16,
                                                        /* y, state_out */ f32, f16};
    return io[pos].desc.type == types[pos];
  }

  static bool valid(Attrs<SSDScanInt8Op> const& a) {
    return softplus_ok(a.i(attr_dt_softplus)) && positive(a.floats(attr_x_scale)) &&
           positive(a.floats(attr_dt_scale)) && positive(a.floats(attr_B_scale)) &&
           positive(a.floats(attr_C_scale));
  }

  static int enqueue(Attrs<SSDScanInt8Op> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const &x = in[in_x].dims, &B = in[in_B].dims;
    auto i8 = [&](int32_t k) { return static_cast<int8_t const*>(inputs[k]); };
    auto f32 = [&](int32_t k) { return static_cast<float const*>(inputs[k]); };
    return edgeq_ssd_scan_int8(
        i8(in_x), i8(in_dt), f32(in_A), i8(in_B), i8(in_C), f32(in_D), f32(in_dt_bias),
        static_cast<edgeq_half const*>(inputs[in_state]), static_cast<float*>(outputs[out_y]),
        static_cast<edgeq_half*>(outputs[out_state_out]), x.d[0], x.d[1], x.d[2],
        in[in_A].dims.d[0], B.d[2], B.d[3], a.scales(attr_x_scale), a.scales(attr_dt_scale),
        a.scales(attr_B_scale), a.scales(attr_C_scale), a.i(attr_dt_softplus),
        a.i(attr_chunk_size), stream);
  }
};

}  // namespace

IPluginCreatorInterface* ssd_scan_creator() {
  static Creator<SSDScanOp> creator;
  return &creator;
}

IPluginCreatorInterface* ssd_scan_int8_creator() {
  static Creator<SSDScanInt8Op> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
