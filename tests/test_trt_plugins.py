"""The TensorRT plugins driven as TensorRT builds and runs them (tests/support/trt_harness.cpp)
over every custom node of exported graphs, checked against ONNX Runtime, on the CPU emulation of
the kernels wherever TensorRT's headers and nvcc are (the adapters' code: fields, formats,
shapes, serialization, and which buffer and value goes to which kernel argument); and the
harness's check of CUDA calls inside enqueueV3. The plugins over the kernel cases, emulated and
on a GPU: test_backend_ops.py and test_backend_ops_gpu.py."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import kernel_cases as kc
from edgeq.export.onnx_export import to_onnx
from edgeq.models import MambaConfig, MambaLM
from edgeq.ops import int4
from edgeq.ops.table import BY_NAME, DOMAIN
from edgeq.quant import calib_data, pipeline, recipe as R
from edgeq.quant.qmodel import load_model
from edgeq.runtime.backends import OrtBackend
from native_build import NVCC, TRT_INCLUDE
from plugin_harness import PluginLib, field, run_plugin

if not TRT_INCLUDE:
    pytest.skip("EDGEQ_TRT_INCLUDE unset: set it to a TensorRT include/ folder (NvInferRuntime.h) "
                "to build and run the TensorRT plugins", allow_module_level=True)
if NVCC is None:
    pytest.skip("nvcc not on PATH: CUDA code not built", allow_module_level=True)


def test_harness_sees_the_plugins_cuda_calls(harness, emulated_plugins):
    """The check that no CUDA runtime call happens inside enqueueV3 (tests/support/trt_harness.cpp)
    is live: the emulated library reports its calls to the harness, here the device copies of
    per-channel scales that attachToContext makes (two contexts, three FLOATS fields each)."""
    case = kc.Conv(2, 7, 64, dtype="int8", per_channel=True)
    before = harness.edgeq_harness_cuda_calls()
    mem = kc.HostMem()
    kc.RUNS["conv"](PluginLib(harness, emulated_plugins, mem), mem, case)
    # per context, one for each FLOATS field: cudaMalloc, cudaMemcpy, and cudaFree at its end
    assert harness.edgeq_harness_cuda_calls() - before == 2 * 3 * 3


def _graph(kind: str) -> onnx.ModelProto:
    cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=301, **(
        dict(arch="mamba2", d_state=16, headdim=16, ngroups=2, chunk_size=8)
        if kind.startswith("mamba2") else {}))
    torch.manual_seed(0)
    model = MambaLM(cfg).eval()
    if kind.endswith("fp16"):
        return to_onnx(model.half())
    rec = R.load(kind.split()[1], h2t=kind.endswith("h2t"))
    ids = np.random.default_rng(0).integers(0, 301, 2000)
    qfp, t, s = pipeline.run(model, calib_data.windows(ids, 8, 64, 301), rec)
    return to_onnx(load_model(qfp.cfg, t, s, rec))


def _custom_node_values(proto: onnx.ModelProto, feeds: list[dict]) -> list[dict]:
    """Per feed, every custom node's input and output values as ONNX Runtime computes them."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    outputs = {o.name for o in m.graph.output}
    known = consts.keys() | outputs
    names = sorted({x for n in m.graph.node if n.domain == DOMAIN
                    for x in (*n.input, *n.output) if x and x not in known})
    m.graph.output.extend(onnx.ValueInfoProto(name=x) for x in names)
    session = OrtBackend(m).session
    out_names = [o.name for o in session.get_outputs()]
    return [{**consts, **dict(zip(out_names, session.run(None, f)))} for f in feeds]


@pytest.mark.parametrize("kind", ["mamba1 quamba-w8a8", "mamba2 quamba2-w4a8", "mamba1 fp16",
                                  "mamba2 fp16", "mamba1 quamba2-w4a8 h2t"])
def test_exported_graph_nodes_on_emulated_plugins(harness, emulated_plugins, kind):
    # every custom node of an exported graph, prefill and a decode step, run by its plugin with
    # the node's attributes as the ONNX parser passes them, equals ONNX Runtime (the C++ CPU
    # kernels) on the same inputs
    proto = _graph(kind)
    ids = np.random.default_rng(1).integers(0, 301, (2, 10))
    ob = OrtBackend(proto)
    _, state = ob.forward(ids[:, :9], ob.new_state(2))
    states = dict(zip(ob.state_names, state))
    feeds = [{"input_ids": ids[:, :9], "logits_at": np.arange(9),
              **dict(zip(ob.state_names, ob.new_state(2)))},
             {"input_ids": ids[:, 9:], "logits_at": np.arange(1), **states}]
    nodes = []  # (node, op, its plugin fields)
    for n in proto.graph.node:
        if n.domain == DOMAIN:
            op = BY_NAME[n.op_type]
            kinds = {a.name: a.type for a in op.attrs}
            nodes.append((n, op, {a.name: field(kinds[a.name], onnx.helper.get_attribute_value(a))
                                  for a in n.attribute if a.name in kinds}))
    assert nodes
    for values in _custom_node_values(proto, feeds):
        for n, op, fields in nodes:
            mem = kc.HostMem()
            want = [values[o] for o in n.output]
            outs = [mem.empty(w.shape, w.dtype) for w in want]
            ins = [values[i] for i in n.input if i]
            packed = frozenset({1}) if op.name == "EdgeqEmbeddingW4" else frozenset()
            if packed:  # the INT4 table as TensorRT holds it: two values a byte
                ins[1] = int4.pack(torch.from_numpy(ins[1].astype(np.int8))).numpy()
            run_plugin(harness, emulated_plugins, op, fields, [mem.put(v) for v in ins], outs, mem,
                       int4=packed)
            for name, p, w in zip(n.output, outs, want):
                if w.dtype == np.int8:
                    kc._check_int8(f"{n.name} {name}", mem.get(p), torch.from_numpy(w))
                else:
                    kc._check(f"{n.name} {name}", mem.get(p), torch.from_numpy(w),
                              w.dtype == np.float16)
