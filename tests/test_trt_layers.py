"""edgeq.trt.layers on layer information written as TensorRT 10 writes it (not through
tests/support/fake_trt.py): fused layers' metadata joined by \\x1e, a local function after the node
name, the " [profile 1]" copies, INT4 weights, layers without metadata, a node missing."""
import json
import re

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgeq.bundle_files import LAYERS
from edgeq.errors import EdgeqError
from edgeq.trt import layers


def _graph(path):
    """x (int8) -> DQ -> MatMul <- DQ(w8: INT8), h -> MatMul <- DQ(w4: INT4, block 2),
    h -> MatMul <- head (fp16), and an Edgeq node."""
    f32, i8 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT8
    one = numpy_helper.from_array(np.float32(0.5), "s")
    zero = numpy_helper.from_array(np.int8(0), "z")
    w8 = numpy_helper.from_array(np.ones((4, 4), np.int8), "model.layers.0.in_proj.w")
    w4 = helper.make_tensor("model.layers.0.out_proj.w", onnx.TensorProto.INT4, [4, 4], bytes(8),
                            raw=True)
    s4 = numpy_helper.from_array(np.ones((2, 4), np.float32), "s4")
    head = numpy_helper.from_array(np.ones((4, 4), np.float16), "model.lm_head.w")
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["model.layers.0.in_proj.w", "s", "z"], ["wf"],
                              name="dq_w"),
             helper.make_node("MatMul", ["xf", "wf"], ["y8"], name="mm8"),
             helper.make_node("DequantizeLinear", ["model.layers.0.out_proj.w", "s4"], ["w4f"],
                              name="dq_w4", axis=0, block_size=2),
             helper.make_node("MatMul", ["h", "w4f"], ["y4"], name="mm4"),
             helper.make_node("MatMul", ["h", "model.lm_head.w"], ["logits"], name="mm_head"),
             helper.make_node("EdgeqHadamardInt8", ["y8"], ["q"], name="had", domain="edgeq")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", i8, [2, 4]),
                                           helper.make_tensor_value_info("h", f32, [2, 4])],
                              [helper.make_tensor_value_info("logits", f32, [2, 4])],
                              [one, zero, w8, w4, s4, head])
    onnx.save(helper.make_model(graph), path)
    return path


def _tensor(name, fmt):
    return {"Name": name, "Location": "Device", "Dimensions": [2, 4], "Format/Datatype": fmt}


def _info(gemm8_format):
    body = [
        {"Name": "Reformatting CopyNode for Input Tensor 0 to dq_x + dq_w + mm8",
         "LayerType": "Reformat", "Inputs": [_tensor("x", "Row major linear FP32")],
         "Outputs": [_tensor("x'", "Row major Int8 format")]},
        {"Name": "dq_x + dq_w + mm8", "LayerType": "CaskGemmMatrixMultiply",
         "Inputs": [_tensor("x", gemm8_format)], "Outputs": [_tensor("y8", "Row major linear FP32")],
         "TacticName": "sm87_xmma_gemm_i8i8", "Metadata":
         "[ONNX Layer: dq_x]\x1e[ONNX Layer: dq_w]\x1e[ONNX Layer: mm8 | Local Function: lin]"},
        {"Name": "dq_w4 + mm4", "LayerType": "CaskGemmMatrixMultiply",
         "Inputs": [_tensor("h", "Row major linear FP16 format")],
         "Outputs": [_tensor("y4", "Row major linear FP16 format")],
         "Weights": {"Type": "Int4", "Count": 16}, "Metadata": "[ONNX Layer: dq_w4]\x1e[ONNX Layer: mm4]"},
        {"Name": "had", "LayerType": "PluginV3", "Inputs": [_tensor("y8", "Row major linear FP32")],
         "Outputs": [_tensor("q", "Row major Int8 format")], "Metadata": "[ONNX Layer: had]"}]
    # mm_head is not there: TensorRT may fold a node away; profile 1 repeats the layers
    return {"Layers": body + [{**layer, "Name": layer["Name"] + " [profile 1]"} for layer in body],
            "Bindings": ["x", "h", "logits", "x [profile 1]", "h [profile 1]", "logits [profile 1]"]}


def test_summary_of_tensorrt_layer_information(tmp_path):
    g = _graph(tmp_path / "m.onnx")
    s = layers.summary(_info("Row major Int8 format"), g)
    by = {lin["node"]: lin for lin in s["linears"]}
    assert by["mm8"]["kind"] == "W8A8" and by["mm8"]["precision"] == ["INT8", "INT8"]
    assert by["mm8"]["weight"] == "model.layers.0.in_proj.w"
    assert by["mm8"]["tactic"] == ["sm87_xmma_gemm_i8i8"] * 2
    assert by["mm4"]["kind"] == "W4A16" and by["mm4"]["precision"] == ["INT4", "INT4"]
    assert by["mm_head"]["kind"] == "float" and by["mm_head"]["precision"] == ["not in the engine"]
    assert s["plugins"] == [{"node": "had", "op": "EdgeqHadamardInt8", "io": ["FP32 -> INT8"]}]
    assert layers.counts(s) == {"linears": {"W8A8 INT8": 1, "W4A16 INT4": 1,
                                            "float not in the engine": 1},
                                "plugins": {"EdgeqHadamardInt8 FP32 -> INT8": 1}}
    text = layers.describe(s)
    assert "W8A8 linears on INT8 (1): model.layers.0.in_proj.w" in text
    assert "EdgeqHadamardInt8 x1: FP32 -> INT8" in text
    layers.check_int8(s)


@pytest.mark.parametrize("fmt,shown", [("Row major linear FP16 format", "FP16"),
                                       ("Row major linear FP32", "FP32"),
                                       ("Unknown format", "?")])
def test_expect_int8_fails_when_a_w8a8_linear_is_not_int8(tmp_path, fmt, shown):
    s = layers.summary(_info(fmt), _graph(tmp_path / "m.onnx"))
    with pytest.raises(EdgeqError, match=rf"^1 W8A8 linears do not run on INT8 in the engine: "
                                         rf"model.layers.0.in_proj.w \({re.escape(shown)}\) \(a dequantize"):
        layers.check_int8(s)


def test_precision_words():
    assert [layers.precision(f) for f in (
        "Row major Int8 format", "Channel major FP16 format where channel % 8 == 0",
        "Row major linear FP32", "Float", "Half", "Row major linear BFloat16 format",
        "Row major linear Int64 format", "Unknown format")] == \
        ["INT8", "FP16", "FP32", "FP32", "FP16", "BF16", "INT64", "?"]


def test_names_only_layer_information_is_refused(tmp_path):
    """An engine built without ProfilingVerbosity.DETAILED: names only, refused in one line."""
    class Inspector:
        def get_engine_information(self, fmt):
            return json.dumps({"Layers": ["mm8", "had"], "Bindings": ["x"]})

    class Engine:
        def create_engine_inspector(self):
            return Inspector()
    import types
    trt = types.SimpleNamespace(LayerInformationFormat=types.SimpleNamespace(JSON=1))
    (tmp_path / "model.engine").write_bytes(b"engine")
    from edgeq.trt import runtime
    real = runtime.deserialize
    try:
        runtime.deserialize = lambda trt, logger, path: Engine()
        with pytest.raises(EdgeqError, match="layer names only.*ProfilingVerbosity.DETAILED"):
            layers.write(trt, None, tmp_path)
    finally:
        runtime.deserialize = real
    assert not (tmp_path / LAYERS).exists()
