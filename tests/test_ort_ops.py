"""One-node ONNX graphs of the int8 ops with per-channel scales and of the fp ops in fp16: the
table's schemas infer the outputs' types and shapes, and ONNX Runtime (the PyOps over the C++
kernels, FLOATS attributes passed exactly, fp16 tensors cast to fp32 and back) computes what the
torch op computes."""
import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from edgeq.export import schemas
from edgeq.ops import custom
from edgeq.ops.table import (CAUSAL_CONV1D, CAUSAL_CONV1D_INT8, DOMAIN, SELECTIVE_SCAN,
                             SSD_SCAN_INT8)
from edgeq.runtime import kernels, ort_ops

_ELEM = {np.dtype(np.int8): onnx.TensorProto.INT8, np.dtype(np.float32): onnx.TensorProto.FLOAT,
         np.dtype(np.float16): onnx.TensorProto.FLOAT16}


def one_node(op, inputs: dict[str, np.ndarray], **attrs) -> onnx.ModelProto:
    """A graph of one `op` node with a symbolic batch, its outputs typed by shape inference."""
    schemas.register()

    def declared(name, a):
        dims = ["batch", *a.shape[1:]] if a.ndim >= 3 else list(a.shape)
        return helper.make_tensor_value_info(name, _ELEM[a.dtype], dims)
    node = helper.make_node(op.name, list(inputs), [p.name for p in op.outputs], domain=DOMAIN,
                            **op.node_attrs(**attrs))
    graph = helper.make_graph([node], op.name, [declared(k, v) for k, v in inputs.items()],
                              [helper.make_value_info(p.name, onnx.TypeProto()) for p in op.outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                    helper.make_opsetid(DOMAIN, 1)])
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def run_ort(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(ort_ops.register())
    session = ort.InferenceSession(ort_ops.for_ort(model).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def output_types(model: onnx.ModelProto) -> list[tuple[int, list]]:
    return [(o.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
            for o in model.graph.output]


def q8(g, *shape):
    return torch.randint(-128, 128, shape, generator=g, dtype=torch.int8)


def scales(g, base, n):
    """n scales spread around base, with digits that 6-digit printing would lose"""
    return (base * torch.exp(0.5 * torch.randn(n, generator=g))).tolist()


def test_conv_int8_per_channel_on_ort_equals_torch():
    g = torch.Generator().manual_seed(0)
    C, W = 40, 4
    x = dict(x=q8(g, 2, 9, C), weight=q8(g, C, W), bias=torch.randn(C, generator=g),
             state=q8(g, 2, W - 1, C))
    attrs = dict(x_scale=scales(g, 0.05, C), weight_scale=[0.0123456789], y_scale=scales(g, 0.02, C))
    feed = {k: v.numpy() for k, v in x.items()}
    model = one_node(CAUSAL_CONV1D_INT8, feed, **attrs, activation=1)
    i8 = onnx.TensorProto.INT8
    assert output_types(model) == [(i8, ["batch", 9, C]), (i8, ["batch", W - 1, C])]
    y, state = run_ort(model, feed)
    want_y, want_state = custom.causal_conv1d_int8(*x.values(), **attrs, activation=1)
    np.testing.assert_array_equal(y, want_y.numpy())
    np.testing.assert_array_equal(state, want_state.numpy())


@pytest.mark.parametrize("G", [1, 2])
def test_ssd_scan_int8_on_ort_equals_torch(G):
    g = torch.Generator().manual_seed(G)
    b, L, H, P, N = 2, 11, 4, 8, 16
    x = dict(x=q8(g, b, L, H * P), dt=q8(g, b, L, H), A=-torch.rand(H, generator=g) * 4,
             B=q8(g, b, L, G, N), C=q8(g, b, L, G, N), D=torch.randn(H, generator=g),
             dt_bias=torch.randn(H, generator=g),
             state=torch.randn(b, H * P, N, generator=g).half())  # the fp16 state cache
    attrs = dict(x_scale=scales(g, 0.02, H * P), dt_scale=scales(g, 0.02, H),
                 B_scale=scales(g, 0.02, G), C_scale=[0.0123456789], dt_softplus=1, chunk_size=4)
    feed = {k: v.numpy() for k, v in x.items()}
    model = one_node(SSD_SCAN_INT8, feed, **attrs)
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert output_types(model) == [(f32, ["batch", L, H * P]), (f16, ["batch", H * P, N])]
    y, state = run_ort(model, feed)
    # ORT runs the sequential CPU kernel, exactly; the torch op the chunked reference
    y_cpu, state_cpu = kernels.ssd_scan_int8(*feed.values(), **attrs)
    np.testing.assert_array_equal(y, y_cpu)
    np.testing.assert_array_equal(state, state_cpu)
    want_y, want_state = custom.ssd_scan_int8(*x.values(), **attrs)
    np.testing.assert_allclose(y, want_y.numpy(), rtol=1e-4, atol=5e-5)
    assert state.dtype == np.float16
    np.testing.assert_allclose(state, want_state.numpy(), rtol=2e-3, atol=1e-3)  # one fp16 ulp


def test_fp16_nodes_on_ort_equal_torch_bit_for_bit():
    # fp16 activations computed in fp32, each fp16 output rounded once (docs/ops.md), and the
    # CPU kernels' fp32 equals the reference's: the same fp16 bits
    g = torch.Generator().manual_seed(0)
    h = lambda *s: torch.randn(*s, generator=g).half()  # noqa: E731
    b, L, D, N, W = 2, 9, 16, 8, 4
    conv = dict(x=h(b, L, D), weight=h(D, W), bias=h(D), state=h(b, W - 1, D))
    scan = dict(u=h(b, L, D), delta=h(b, L, D), A=-torch.rand(D, N, generator=g) - 0.5,
                B=h(b, L, 1, N), C=h(b, L, 1, N), D=torch.randn(D, generator=g),
                delta_bias=torch.randn(D, generator=g) - 2, state=torch.randn(b, D, N, generator=g),
                z=h(b, L, D))
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    for op, x, want, types in (
            (CAUSAL_CONV1D, conv, custom.causal_conv1d(*conv.values(), activation=1), (f16, f16)),
            (SELECTIVE_SCAN, scan, custom.selective_scan(*scan.values()), (f16, f32))):
        feed = {k: v.numpy() for k, v in x.items()}
        model = one_node(op, feed)
        assert [t for t, _ in output_types(model)] == list(types), op.name
        for got, w in zip(run_ort(model, feed), want, strict=True):
            assert got.dtype == w.numpy().dtype
            np.testing.assert_array_equal(got, w.numpy(), err_msg=op.name)


@pytest.mark.parametrize("values", [[0.1], [1 / 3, 2e-7, 123.456789]])
def test_floats_attributes_reach_the_pyops_exactly(values):
    attr = helper.make_attribute("s", values)
    encoded = ort_ops._ENCODE[onnx.AttributeProto.FLOATS](attr)
    np.testing.assert_array_equal(ort_ops._DECODE["FLOATS"](encoded), np.float32(values))


def test_int8_linear_runs_without_per_step_dequantization():
    """exact_int8_matmuls leaves no DequantizeLinear behind (they would dequantize the weight at
    every step), nor their scales, and still gives the exact int32 product times the scales."""
    g = np.random.default_rng(0)
    w = g.integers(-128, 128, (64, 24)).astype(np.int8)
    w_scale = (0.01 * np.exp(g.standard_normal(24))).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(a, n) for a, n in
             ((w, "w"), (w_scale, "ws"), (np.zeros(24, np.int8), "wz"),
              (np.float32(0.05), "xs"), (np.int8(0), "xz"))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=1),
             helper.make_node("MatMul", ["xd", "wd"], ["y"])]
    graph = helper.make_graph(nodes, "lin", [helper.make_tensor_value_info("x", 1, [3, 64])],
                              [helper.make_tensor_value_info("y", 1, [3, 24])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    rewritten = ort_ops.for_ort(model).graph
    # the QuantizeLinear made again with zero point 128 feeds one fused int8 GEMM
    assert [n.op_type for n in rewritten.node] == ["QuantizeLinear", "MatMulIntegerToFloat"]
    assert {i.name for i in rewritten.initializer} == {"w", "xs", "y_scale", "edgeq_u8_zero",
                                                       "edgeq_f32_one"}
    x = g.standard_normal((3, 64)).astype(np.float32)
    xq = np.clip(np.rint(x / np.float32(0.05)), -128, 127).astype(np.int32)
    expect = (xq @ w.astype(np.int32)).astype(np.float32) * (np.float32(0.05) * w_scale)
    np.testing.assert_array_equal(run_ort(model, {"x": x})[0], expect)


def test_int8_linear_on_an_int8_input_is_exact_at_the_ends():
    """An int8 activation that no QuantizeLinear makes (a custom op's output, here the graph's
    input) goes to uint8 by Cast -> Add 128 -> Cast; -128 and 127 included."""
    g = np.random.default_rng(1)
    w = g.integers(-128, 128, (64, 8)).astype(np.int8)
    inits = [onnx.numpy_helper.from_array(a, n) for a, n in
             ((w, "w"), (np.float32(0.02), "ws"), (np.int8(0), "z"), (np.float32(0.05), "xs"))]
    nodes = [helper.make_node("DequantizeLinear", ["xq", "xs", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "z"], ["wd"]),
             helper.make_node("MatMul", ["xd", "wd"], ["y"])]
    graph = helper.make_graph(nodes, "lin", [helper.make_tensor_value_info("xq", 3, [4, 64])],
                              [helper.make_tensor_value_info("y", 1, [4, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert [n.op_type for n in ort_ops.for_ort(model).graph.node] == \
        ["Cast", "Add", "Cast", "MatMulIntegerToFloat"]
    xq = g.integers(-128, 128, (4, 64)).astype(np.int8)
    xq[0], xq[1] = -128, 127
    expect = (xq.astype(np.int32) @ w.astype(np.int32)).astype(np.float32) * \
        (np.float32(0.05) * np.float32(0.02))
    np.testing.assert_array_equal(run_ort(model, {"xq": xq})[0], expect)
