"""EdgeqLinearW4A8: the reference against its written definition (docs/ops.md) and exact
integer arithmetic, the C++ kernel against the reference bit for bit, the ONNX schema's shapes
and the exported op on ONNX Runtime."""
import warnings
from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch

from edgeq.ops import custom, int4, reference
from edgeq.runtime import kernels


def inputs(shape, N, group_size, seed=0):
    """x int8 [*shape], packed int4 weight [N, K/2] (bytes as int8), positive scales
    [N, K/group_size]."""
    g = torch.Generator().manual_seed(seed)
    K = shape[-1]
    x = torch.randint(-128, 128, shape, generator=g, dtype=torch.int8)
    w = torch.randint(-8, 8, (N, K), generator=g, dtype=torch.int8)
    scale = torch.rand(N, K // group_size, generator=g) * 0.02 + 1e-3
    return x, int4.pack(w).view(torch.int8), scale


# Mamba-2 widths (K 384 = 3 groups of 128), small groups, a group size that is no power of two,
# N that is no multiple of the CPU kernel's blocks, decode and prefill rows, batch dims
CASES = [((1, 384), 96, 128), ((7, 384), 33, 128), ((7, 192), 40, 64), ((2, 5, 192), 17, 64),
         ((2, 5, 384), 64, 128), ((3, 96), 5, 6), ((4, 10), 9, 2), ((1, 1, 1536), 48, 128)]


@pytest.mark.parametrize("shape,N,gs", CASES, ids=str)
def test_reference_is_the_dequantized_matmul(shape, N, gs):
    x, w, scale = inputs(shape, N, gs)
    y = reference.linear_w4a8(x, w, scale, 0.02, gs)
    assert y.dtype == torch.float32 and y.shape == (*shape[:-1], N)
    w_real = int4.unpack(w.view(torch.uint8)).double() * scale.double().repeat_interleave(gs, 1)
    want = (x.double() * 0.02) @ w_real.T
    # fp32 rounding of the products and of the result, against sums of ~K terms of ~1
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize("shape,N,gs", CASES[:4], ids=str)
def test_reference_is_exact_integer_arithmetic(shape, N, gs):
    """With power-of-two scales every step but the last rounding is exact, so y is the exact
    sum of x[k] * w[n,k] * weight_scale[n,g] rounded once to fp32 (times x_scale = 2^-7)."""
    x, w, _ = inputs(shape, N, gs)
    x.view(-1)[:gs] = -128  # a group at the extremes: |acc| = 1024 * group_size
    w[0, :gs // 2] = -120  # 0x88: -8, -8
    G = shape[-1] // gs
    e = torch.randint(0, 13, (N, G), generator=torch.Generator().manual_seed(1))
    y = reference.linear_w4a8(x, w, torch.pow(2.0, -e.float()), 2.0 ** -7, gs)
    xs = x.reshape(-1, G, gs).long()
    acc = torch.einsum("mgk,ngk->mng", xs, int4.unpack(w.view(torch.uint8)).long().view(N, G, gs))  # int64
    assert acc.abs().max() == 1024 * gs
    for m, n in np.ndindex(acc.shape[0], N):
        exact = sum(Fraction(int(acc[m, n, g]), 2 ** int(e[n, g])) for g in range(G))
        assert y.reshape(-1, N)[m, n].item() == float(np.float32(float(exact))) * 2.0 ** -7


@pytest.mark.parametrize("shape,N,gs", CASES, ids=str)
def test_cpu_kernel_equals_the_reference(shape, N, gs):
    x, w, scale = inputs(shape, N, gs)
    want = reference.linear_w4a8(x, w, scale, 0.0137, gs)
    got = kernels.linear_w4a8(x, w, scale, 0.0137, gs)
    np.testing.assert_array_equal(got, want.numpy())  # the same roundings in the same order


def test_bad_shapes_are_refused():
    x, w, scale = inputs((2, 192), 8, 64)
    bad = [(x, w, torch.ones(8, 2), 80),  # K % group_size
           (x, w, scale[:, :1], 64),  # one scale per group
           (x, w[:, :-1], scale, 64),  # [N, K/2]
           (x, w, torch.ones(8, 64), 3)]  # odd group_size
    for args in bad:
        with pytest.raises(ValueError):
            reference.linear_w4a8(*args[:3], 0.1, args[3])
        with pytest.raises(ValueError):
            kernels.linear_w4a8(*args[:3], 0.1, args[3])
    for f in (reference.linear_w4a8, kernels.linear_w4a8):  # the op's weight dtype is int8
        with pytest.raises(ValueError):
            f(x, w.view(torch.uint8), scale, 0.1, 64)


def test_custom_op_passes_opcheck():
    torch.library.opcheck(custom.linear_w4a8, (*inputs((2, 3, 64), 5, 32), 0.1, 32),
                          test_utils=("test_schema", "test_faketensor"))


def graph(weight_shape):
    from edgeq.export import schemas
    from edgeq.ops.table import DOMAIN, LINEAR_W4A8
    schemas.register()
    h = onnx.helper
    node = h.make_node(LINEAR_W4A8.name, ["x", "weight", "weight_scale"], ["y"], domain=DOMAIN,
                       **LINEAR_W4A8.node_attrs(x_scale=0.5, group_size=64))
    inputs = [h.make_tensor_value_info("x", onnx.TensorProto.INT8, ["batch", "seq", 256]),
              h.make_tensor_value_info("weight", onnx.TensorProto.INT8, weight_shape),
              h.make_tensor_value_info("weight_scale", onnx.TensorProto.FLOAT, [6, 4])]
    return h.make_model(h.make_graph([node], "w4a8", inputs, []),
                        opset_imports=[h.make_opsetid("", 20), h.make_opsetid(DOMAIN, 1)])


def inferred_y(weight_shape) -> list:
    model = onnx.shape_inference.infer_shapes(graph(weight_shape), strict_mode=True)
    y = next(v for v in model.graph.value_info if v.name == "y").type.tensor_type
    assert y.elem_type == onnx.TensorProto.FLOAT
    return [d.dim_param or d.dim_value for d in y.shape.dim]


def test_onnx_shape_inference_takes_N_from_the_weight():
    assert inferred_y([6, 128]) == ["batch", "seq", 6]
    batch, seq, n = inferred_y(None)  # a weight of unknown shape: N is a new symbol, not K
    assert (batch, seq) == ("batch", "seq") and isinstance(n, str)


def test_exported_op_on_onnx_runtime_equals_the_torch_op():
    import onnxruntime as ort

    from edgeq.export.onnx_export import _translations
    from edgeq.runtime import ort_ops
    _, w, scale = inputs((1, 192), 40, 64)

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("weight", w)
            self.register_buffer("scale", scale)

        def forward(self, x):
            return custom.linear_w4a8(x, self.weight, self.scale, 0.0123, 64)

    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(Linear(), (inputs((2, 5, 192), 1, 64)[0],), dynamo=True,
                                  dynamic_shapes=(dims,), input_names=["x"], output_names=["y"],
                                  custom_translation_table=_translations()).model_proto
    onnx.checker.check_model(proto, full_check=True)
    y = proto.graph.output[0].type.tensor_type
    assert y.elem_type == onnx.TensorProto.FLOAT and y.shape.dim[2].dim_value == 40
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(ort_ops.register())
    session = ort.InferenceSession(ort_ops.for_ort(proto).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    for shape in ((2, 5, 192), (1, 1, 192), (3, 7, 192)):
        x = inputs(shape, 1, 64, seed=sum(shape))[0]
        got = session.run(None, {"x": x.numpy()})[0]
        np.testing.assert_array_equal(got, custom.linear_w4a8(x, w, scale, 0.0123, 64).numpy())
