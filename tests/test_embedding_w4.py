"""EdgeqEmbeddingW4: the reference against its written definition (docs/ops.md), the C++ kernel
against the reference bit for bit, the ONNX schema's shapes and the exported op on ONNX Runtime
(its INT4 table handed to the PyOp as bytes)."""
import warnings

import numpy as np
import onnx
import pytest
import torch

import kernel_cases as kc
from edgeq.ops import custom, int4, reference
from edgeq.runtime import kernels


def inputs(vocab, d, group_size, ids_shape=(2, 5), seed=0):
    """ids (some outside the table), int4 values [vocab, d], fp16 scales [vocab, d/group]."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(-3, vocab + 3, ids_shape, generator=g)
    table = torch.randint(-8, 8, (vocab, d), generator=g, dtype=torch.int8)
    scale = (torch.rand(vocab, d // group_size, generator=g) * 0.02 + 1e-3).half()
    return ids, table, scale


def test_reference_follows_the_written_definition():
    ids, table, scale = inputs(11, 12, 4, (3, 4))
    y = reference.embedding_w4(ids, table, scale, 4)
    assert y.dtype == torch.float32 and y.shape == (3, 4, 12)
    for m, i in enumerate(ids.reshape(-1).tolist()):
        row = y.reshape(-1, 12)[m]
        if not 0 <= i < 11:
            assert not row.any()
            continue
        for k in range(12):  # one exact fp32 product
            assert row[k].item() == float(table[i, k]) * float(scale[i, k // 4])


@pytest.mark.parametrize("args", [((5, 12), (5, 2), 4), ((5, 12), (5, 3), 3),
                                  ((5, 12), (4, 3), 4), ((5, 12), (5, 3), 5)])
def test_bad_shapes_are_refused(args):
    (vocab, d), scale_shape, group = args
    ids, table = torch.zeros(2, dtype=torch.long), torch.zeros(vocab, d, dtype=torch.int8)
    scale = torch.ones(scale_shape, dtype=torch.float16)
    with pytest.raises(ValueError, match="do not fit"):
        reference.embedding_w4(ids, table, scale, group)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        kernels.embedding_w4(ids.numpy(), int4.pack(table).view(torch.int8).numpy(),
                             scale.numpy(), group)


@pytest.mark.parametrize("case", kc.EMBED_SMALL, ids=str)
def test_cpu_kernel_equals_the_reference(case):
    kc.run_embed(kernels.library(), kc.HostMem(), case)


def test_custom_op_passes_opcheck():
    torch.library.opcheck(custom.embedding_w4, (*inputs(9, 8, 4), 4),
                          test_utils=("test_schema", "test_faketensor"))


def test_onnx_shape_inference_appends_d():
    from edgeq.export import schemas
    from edgeq.ops.table import DOMAIN, EMBEDDING_W4
    schemas.register()
    h = onnx.helper
    node = h.make_node(EMBEDDING_W4.name, ["ids", "table", "scale"], ["y"], domain=DOMAIN,
                       **EMBEDDING_W4.node_attrs(group_size=64))
    ins = [h.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["batch", "seq"]),
           h.make_tensor_value_info("table", onnx.TensorProto.INT4, [50, 256]),
           h.make_tensor_value_info("scale", onnx.TensorProto.FLOAT16, [50, 4])]
    model = h.make_model(h.make_graph([node], "e", ins, []),
                         opset_imports=[h.make_opsetid("", 21), h.make_opsetid(DOMAIN, 1)])
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    y = next(v for v in model.graph.value_info if v.name == "y").type.tensor_type
    assert y.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in y.shape.dim] == ["batch", "seq", 256]


def test_exported_op_on_onnx_runtime_equals_the_torch_op():
    import onnxruntime as ort

    from edgeq.export.onnx_export import _int4_weights, _translations
    from edgeq.runtime import ort_ops
    _, table, scale = inputs(301, 256, 64)

    class Embedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", table)
            self.register_buffer("scale", scale)

        def forward(self, ids):
            return custom.embedding_w4(ids, self.table, self.scale, 64)

    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(Embedding(), (inputs(301, 256, 64, (2, 5))[0],), dynamo=True,
                                  dynamic_shapes=(dims,), input_names=["ids"], output_names=["y"],
                                  opset_version=21,
                                  custom_translation_table=_translations()).model_proto
    _int4_weights(proto.graph)
    onnx.checker.check_model(proto, full_check=True)
    t, = [i for i in proto.graph.initializer if i.dims == [301, 256]]
    assert t.data_type == onnx.TensorProto.INT4 and len(t.raw_data) == 301 * 128
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(ort_ops.register())
    session = ort.InferenceSession(ort_ops.for_ort(proto).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    for shape in ((2, 5), (1, 1), (3, 7)):
        ids = inputs(301, 256, 64, shape, seed=sum(shape))[0]
        got = session.run(None, {"ids": ids.numpy()})[0]
        np.testing.assert_array_equal(got, custom.embedding_w4(ids, table, scale, 64).numpy())
