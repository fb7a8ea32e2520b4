// TensorRT plugin EdgeqEmbeddingW4 (docs/ops.md): ids int64 [...], table INT4 [vocab, d],
// table_scale fp16 [vocab, d/group_size], y fp32 [..., d]; the rest is plugins/trt/edgeq_trt.h.
// The table is the same initializer as the 4-bit head's DequantizeLinear input, so the engine
// holds it once. Its bytes are ONNX's INT4 packing: the parser hands raw_data to the constant as
// it is (onnx-tensorrt 10.1-GA WeightsContext.cpp, "INT4" in the raw_data branch); a plugin may
// take kINT4 (NvInferRuntimePlugin.h, PluginTensorDesc: only kBOOL and kUINT8 are excluded).
#include "edgeq_trt.h"

namespace edgeq {
namespace trt {
namespace {

struct EmbeddingW4Op : table::EdgeqEmbeddingW4 {
  static bool supports(int32_t pos, DynamicPluginTensorDesc const* io, int32_t) {
    DataType t = io[pos].desc.type;
    if (pos == in_ids) return t == DataType::kINT64;  // ONNX input_ids, as the graph gives them
    if (pos == in_table) return t == DataType::kINT4;
    if (pos == in_table_scale) return t == DataType::kHALF;
    return t == DataType::kFLOAT;  // y
  }

  static bool valid(Attrs<EmbeddingW4Op> const& a) {
    int32_t group = a.i(attr_group_size);
    return group >= 2 && group % 2 == 0;
  }

  static bool shapes_ok(Attrs<EmbeddingW4Op> const& a, PluginTensorDesc const* in, int32_t) {
    Dims const& t = in[in_table].dims;
    if (t.nbDims != 2) return false;
    int64_t vocab = t.d[0], d = t.d[1], group = a.i(attr_group_size);
    return d > 0 && d % group == 0 && dims_are(in[in_table_scale].dims, {vocab, d / group});
  }

  static int enqueue(Attrs<EmbeddingW4Op> const& a, PluginTensorDesc const* in, int32_t,
                     void const* const* inputs, void* const* outputs, cudaStream_t stream) {
    Dims const &ids = in[in_ids].dims, &t = in[in_table].dims;
    int64_t rows = 1;  // every id: rows_of would leave out the last dim
    for (int32_t i = 0; i < ids.nbDims; ++i) rows *= ids.d[i];
    return edgeq_embedding_w4(static_cast<int64_t const*>(inputs[in_ids]),
                              static_cast<uint8_t const*>(inputs[in_table]),
                              static_cast<edgeq_half const*>(inputs[in_table_scale]),
                              static_cast<float*>(outputs[out_y]), rows, t.d[0], t.d[1],
                              a.i(attr_group_size), stream);
  }
};

}  // namespace

IPluginCreatorInterface* embedding_w4_creator() {
  static Creator<EmbeddingW4Op> creator;
  return &creator;
}

}  // namespace trt
}  // namespace edgeq
