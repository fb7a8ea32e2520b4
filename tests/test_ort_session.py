"""The ORT session's own rewrites for speed: neighbouring custom nodes run as one PyOp
(cpu_fusion) and the custom nodes' constant inputs held in Python (ort_held). The session
computes exactly what the plain one does; nodes are fused only where no one else reads what the
chain hides; held arrays go when their session goes."""
import gc

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from edgeq.export.onnx_export import to_onnx
from edgeq.models import MambaConfig, MambaLM
from edgeq.ops.table import (ADD_RMSNORM_INT8, CAUSAL_CONV1D_INT8, DOMAIN, HADAMARD_INT8,
                             LINEAR_W4A8, SELECTIVE_SCAN_INT8, SSD_SCAN_INT8)
from edgeq.quant import calib_data, pipeline, recipe as R
from edgeq.quant.qmodel import load_model
from edgeq.runtime import cpu_fusion, ort_held, ort_ops
from edgeq.runtime.backends import OrtBackend

ADD, CONV, SCAN, HAD, W4A8 = (op.name for op in (ADD_RMSNORM_INT8, CAUSAL_CONV1D_INT8,
                                                  SELECTIVE_SCAN_INT8, HADAMARD_INT8, LINEAR_W4A8))
SSD = SSD_SCAN_INT8.name
# the custom nodes of a 3-layer graph's ORT session, fused: (arch, recipe) -> op types
FUSED = {
    ("mamba1", "quamba-w8a8"): [ADD, CONV, f"{SCAN}+{HAD}"] * 3,
    ("mamba1", "quamba2-w4a8"): [f"{ADD}+{W4A8}", CONV]
    + [f"{SCAN}+{HAD}+{W4A8}+{ADD}+{W4A8}", CONV] * 2 + [f"{SCAN}+{HAD}+{W4A8}"],
    ("mamba2", "quamba2-w8a8"): [ADD, CONV, SSD, HAD] * 3,
    ("mamba2", "quamba2-w4a8"): [f"{ADD}+{W4A8}", CONV, SSD]
    + [f"{HAD}+{W4A8}+{ADD}+{W4A8}", CONV, SSD] * 2 + [f"{HAD}+{W4A8}"],
}


@pytest.fixture(scope="module", params=sorted(FUSED), ids="-".join)
def graph(request):
    arch, name = request.param
    cfg = MambaConfig(d_model=64, n_layer=3, vocab_size=301, **(
        dict(arch="mamba2", d_state=16, headdim=16, ngroups=2, chunk_size=8)
        if arch == "mamba2" else {}))
    torch.manual_seed(0)
    model = MambaLM(cfg).eval()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 301, 2000))
    qfp, t, s = pipeline.run(model, calib_data.windows(ids, 8, 64, 301), R.load(name))
    return to_onnx(load_model(qfp.cfg, t, s, R.load(name))), \
        FUSED[request.param]


def custom_types(proto):
    return [n.op_type for n in ort_ops.for_ort(proto).graph.node
            if n.domain == ort_ops.ORT_DOMAIN]


def test_session_computes_the_same_bits(graph, monkeypatch):
    """Each layer's run of custom ops (cpu_fusion.PATH) is one call and its weights are held;
    logits and every state equal the plain session's, at prefill and decode."""
    proto, fused_types = graph
    assert custom_types(proto) == fused_types
    fast = OrtBackend(proto)
    monkeypatch.setattr(cpu_fusion, "CHAINS", ())
    monkeypatch.setattr(ort_held, "hold", lambda graph: [])
    plain = OrtBackend(proto)
    assert all("+" not in t for t in custom_types(proto))
    ids = np.random.default_rng(1).integers(0, 301, (2, 9))
    a, b = fast.new_state(2), plain.new_state(2)
    for step in (ids[:, :7], ids[:, 7:8], ids[:, 8:]):  # prefill, then decode steps
        (la, a), (lb, b) = fast.forward(step, a), plain.forward(step, b)
        np.testing.assert_array_equal(la, lb)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_constant_inputs_are_held_for_the_session_s_life(graph):
    proto, _ = graph
    before = set(ort_held._HELD)
    session = ort_ops.for_ort(proto)
    weights = {i.name for i in session.graph.initializer}
    read = {i for n in session.graph.node if n.domain == ort_ops.ORT_DOMAIN for i in n.input}
    keys = ort_held.hold(session.graph)
    ort_ops.drop_unused(session.graph)
    held = {k.split(":", 1)[1] for k in keys}
    assert held == weights & read and held  # every initializer a custom node reads
    assert held - {i.name for i in session.graph.initializer}  # gone from ORT's graph
    for n in session.graph.node:
        # a held one stays in ORT's graph only for ORT's own nodes (the final norm's weight)
        assert not held & set(n.input) or n.domain != ort_ops.ORT_DOMAIN
        if n.domain == ort_ops.ORT_DOMAIN:
            text = next(a.s.decode() for a in n.attribute if a.name == ort_held.ATTR)
            for pair in text.split():
                k, key = pair.split("=", 1)
                assert n.input[int(k)].startswith("edgeq_held_empty_") and key in keys
    ort_held.release(keys)
    session = OrtBackend(proto).session  # the backend gone, its session kept: still held
    gc.collect()
    assert len(set(ort_held._HELD) - before) == len(held)
    del session
    gc.collect()
    assert set(ort_held._HELD) == before


def _graph(extra_nodes=(), outputs=("h", "state_out")) -> onnx.GraphProto:
    """scan -> Hadamard, with `extra_nodes` after the scan; types do not matter to fuse()."""
    names = [p.name for p in SELECTIVE_SCAN_INT8.inputs]
    scan = helper.make_node(SELECTIVE_SCAN_INT8.name, names, ["y", "state_out"], name="scan",
                            domain=DOMAIN, **SELECTIVE_SCAN_INT8.node_attrs(u_scale=0.5))
    had = helper.make_node(HADAMARD_INT8.name, ["y"], ["h"], name="had", domain=DOMAIN,
                           **HADAMARD_INT8.node_attrs(y_scale=0.25))
    value = lambda n: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
    return helper.make_graph([scan, *extra_nodes, had], "g", [value(n) for n in names],
                             [value(n) for n in outputs])


def test_fused_node_keeps_the_inputs_outputs_and_attributes():
    g = _graph()
    cpu_fusion.fuse(g)
    (node,) = g.node
    assert node.op_type == f"{SCAN}+{HAD}" and node.domain == DOMAIN
    assert list(node.input) == [p.name for p in SELECTIVE_SCAN_INT8.inputs]
    assert list(node.output) == ["state_out", "h"]  # the scan's y is not an output any more
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["0.u_scale"] == 0.5 and attrs["1.y_scale"] == 0.25
    assert not any("plugin" in k for k in attrs)
    assert set(attrs) == {f"0.{a.name}" for a in SELECTIVE_SCAN_INT8.attrs} | \
        {f"1.{a.name}" for a in HADAMARD_INT8.attrs}


@pytest.mark.parametrize("case", ["y is a graph output", "y read twice", "state read in between",
                                  "an input absent"])
def test_no_fusion_where_the_chain_hides_a_read_tensor(case):
    between = helper.make_node("Identity", ["state_out"], ["s2"])
    g = {"y is a graph output": lambda: _graph(outputs=("h", "state_out", "y")),
         "y read twice": lambda: _graph([helper.make_node("Identity", ["y"], ["y2"])],
                                        ("h", "state_out", "y2")),
         "state read in between": lambda: _graph([between], ("h", "s2")),
         "an input absent": lambda: _graph()}[case]()
    if case == "an input absent":
        g.node[0].input[8] = ""  # z
    before = [n.op_type for n in g.node]
    cpu_fusion.fuse(g)
    assert [n.op_type for n in g.node] == before
