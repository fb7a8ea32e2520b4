"""The stateful ONNX graph: structure, symbolic axes, and ORT with the C++ kernels against torch."""
import numpy as np
import onnx
import pytest

from edgeq.errors import EdgeqError
from edgeq.export import onnx_export
from edgeq.models import load_model
from edgeq.ops.table import BY_NAME, DOMAIN
from edgeq.runtime.backends import OrtBackend, TorchBackend

from conftest import CONFIGS, assert_backends_agree


@pytest.fixture(scope="module")
def exported(hf_model):
    cache = {}

    def get(name="h96"):
        if name not in cache:
            model, _ = load_model(str(hf_model(name)[1]))
            cache[name] = (model, onnx_export.to_onnx(model))
        return cache[name]
    return get


def test_graph_structure(exported):
    model, proto = exported()
    onnx.checker.check_model(proto, full_check=True)
    n = model.cfg.n_layer
    assert [i.name for i in proto.graph.input] == ["input_ids", "logits_at", *onnx_export.state_names(n)]
    assert [o.name for o in proto.graph.output] == ["logits", *onnx_export.state_names(n, "_out")]
    custom = [node for node in proto.graph.node if node.domain == DOMAIN]
    assert sorted(node.op_type for node in custom) == sorted(["EdgeqSelectiveScan", "EdgeqCausalConv1d"] * n)
    for node in custom:
        op = BY_NAME[node.op_type]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_version"] == op.version.encode()
        assert attrs["plugin_namespace"] == op.namespace.encode()
        assert set(attrs) == {a.name for a in op.attrs} | {"plugin_version", "plugin_namespace"}
        for a in node.attribute:
            assert a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS, onnx.AttributeProto.FLOAT,
                              onnx.AttributeProto.FLOATS, onnx.AttributeProto.STRING)
    # the Mamba-1 graph needs no op besides these and plain ONNX ones TensorRT imports
    assert {node.domain for node in proto.graph.node} <= {"", DOMAIN}
    # only edgeq's own metadata: no exporter stack traces, which cost 2 KB a node
    assert not [n for n in proto.graph.node if n.metadata_props] and not proto.graph.metadata_props
    assert {p.key for p in proto.metadata_props} == {"edgeq.config"}


def test_axes_are_symbolic(exported):
    _, proto = exported()
    dims = {v.name: v.type.tensor_type.shape.dim for v in list(proto.graph.input) + list(proto.graph.output)}
    assert [d.dim_param for d in dims["input_ids"]] == ["batch", "seq"]
    assert [d.dim_param for d in dims["logits_at"]] == ["positions"]
    assert [d.dim_param for d in dims["logits"][:2]] == ["batch", "positions"]
    for name, d in dims.items():
        if "state" in name:
            assert d[0].dim_param == "batch" and all(x.dim_value > 0 for x in d[1:])


def test_specialised_axis_is_refused(exported):
    _, proto = exported()
    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    bad.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 16
    with pytest.raises(Exception, match="specialised"):
        onnx_export.check_symbolic_axes(bad)


def tolerance(name, logits):
    # The edgeq ops agree bit for bit across backends; what remains is fp32 GEMM rounding (ORT's
    # MLAS and torch sum the 768..3072 products of a projection in different orders). At the
    # 130m widths, with logits of magnitude ~15, that alone reaches ~1e-4: there the bound is
    # relative, 1e-5 of the largest logit; everywhere else it is 1e-4.
    return max(1e-4, 1e-5 * np.abs(logits).max()) if name == "mamba130m-dims" else 1e-4


@pytest.mark.parametrize("name", ["h96", "h40-bias-untied", "mamba130m-dims"])
def test_ort_equals_torch_with_state_carried(exported, name):
    model, proto = exported(name)
    assert_backends_agree(TorchBackend(model), OrtBackend(proto), CONFIGS[name]["vocab_size"],
                          lambda logits: tolerance(name, logits))


def test_batch_one_and_long_sequence(exported):
    model, proto = exported()
    ort, torch_be = OrtBackend(proto), TorchBackend(model)
    ids = np.random.default_rng(1).integers(0, 1001, (1, 300))
    a, _ = torch_be.forward(ids, torch_be.new_state(1))
    b, _ = ort.forward(ids, ort.new_state(1))
    assert np.abs(a - b).max() < 1e-4


def test_logits_at_selects_positions(exported):
    """Generation asks for the last position's logits (last=True); the graph's logits_at input
    gives any positions, and the states do not depend on it."""
    model, proto = exported()
    ort, torch_be = OrtBackend(proto), TorchBackend(model)
    ids = np.random.default_rng(2).integers(0, 1001, (2, 9))
    for be in (ort, torch_be):
        full, s_full = be.forward(ids, be.new_state(2))
        last, s_last = be.forward(ids, be.new_state(2), last=True)
        assert full.shape == (2, 9, 1001) and last.shape == (2, 1, 1001)
        np.testing.assert_allclose(last, full[:, -1:], rtol=1e-5, atol=1e-5)
        for a, b in zip(flat(s_full), flat(s_last), strict=True):
            np.testing.assert_array_equal(a, b)
    feed = {"input_ids": ids, "logits_at": np.array([1, 4, 8]),
            **dict(zip(ort.state_names, ort.new_state(2)))}
    picked = ort.session.run(["logits"], feed)[0]
    np.testing.assert_allclose(picked, ort.forward(ids, ort.new_state(2))[0][:, [1, 4, 8]],
                               rtol=1e-5, atol=1e-5)


def flat(state):  # ORT's arrays, or torch's (conv, ssm) per layer
    return [np.asarray(t) for s in state for t in (s if isinstance(s, tuple) else (s,))]


def test_graph_without_logits_at_is_refused(exported):
    _, proto = exported()
    old = onnx.ModelProto()
    old.CopyFrom(proto)
    old.graph.input[1].name = "conv_state.0"
    with pytest.raises(EdgeqError, match="no logits_at input"):
        OrtBackend(old)


def test_save_is_checked_and_atomic(exported, tmp_path, monkeypatch):
    _, proto = exported()
    before = proto.SerializeToString()
    path = tmp_path / "m.onnx"
    onnx_export.save(proto, path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    # the > 2 GB path, exercised with a small threshold: weights go to m2.onnx.data
    monkeypatch.setattr(onnx_export, "TWO_GB", 1024)
    onnx_export.save(proto, tmp_path / "m2.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m2.onnx", "m2.onnx.data"]
    assert proto.SerializeToString() == before  # the caller's graph keeps its weights
    reloaded = onnx.load(str(tmp_path / "m2.onnx"))
    ids = np.array([[1, 2, 3]])
    a, _ = OrtBackend(reloaded).forward(ids, OrtBackend(reloaded).new_state(1))
    b, _ = OrtBackend(path).forward(ids, OrtBackend(path).new_state(1))
    np.testing.assert_array_equal(a, b)


def test_a_graph_protobuf_cannot_size_is_over_2gb():
    """upb's ByteSize raises past 2 GB (a 1.4B fp16 graph did) instead of returning the size."""
    from google.protobuf.message import EncodeError

    class Huge:
        def ByteSize(self):
            raise EncodeError("Failed to serialize proto")
    assert onnx_export.over_2gb(Huge())
    assert not onnx_export.over_2gb(onnx.ModelProto())
