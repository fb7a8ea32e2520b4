"""Export a Mamba model (MambaLM, or its quantized QuantMambaLM) to one stateful ONNX graph.

Inputs: input_ids [batch, seq], logits_at [n] (the sequence positions whose logits come out:
generation asks for the last, validation for all) and per-layer conv_state.i / ssm_state.i;
outputs: logits [batch, n, vocab] plus conv_state_out.i / ssm_state_out.i. The edgeq custom ops
become nodes named after their TensorRT plugins (domain `edgeq`), translated through the
schemas from the op table.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import onnx
import onnx.external_data_helper
import torch
from google.protobuf.message import EncodeError
from onnxscript import values

from ..errors import EdgeqError
from ..output import check_output, writing
from ..ops import custom, qdq  # noqa: F401  (registers the ops the translations refer to)
from ..ops.table import DOMAIN, OPS
from . import schemas

OPSET = 20
TWO_GB = 2**31


def state_names(n_layer: int, suffix: str = "") -> list[str]:
    return [f"{kind}_state{suffix}.{i}" for i in range(n_layer) for kind in ("conv", "ssm")]


class _Stateful(torch.nn.Module):
    """MambaLM with states flattened into positional tensors (what the exporter needs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, logits_at, *states):
        pairs = list(zip(states[0::2], states[1::2]))
        logits, new = self.model(input_ids, pairs, logits_at)
        return (logits, *[t for pair in new for t in pair])


def _translations() -> dict:
    """One ONNX translation per op of the table: the op's tensors become the node's inputs and
    its remaining (scalar) arguments its attributes, in the table's order."""
    schemas.register()
    opset = values.Opset(DOMAIN, schemas.OPSET_VERSION)

    def translation(op):
        node = values.Op(opset, op.name, onnx.defs.get_schema(op.name, schemas.OPSET_VERSION, DOMAIN))
        n_in = len(op.inputs)

        def translate(*args, **kwargs):
            attrs = dict(zip([a.name for a in op.attrs], args[n_in:]), **kwargs)
            attrs = {a.name: _onnx_attr(a, attrs[a.name]) for a in op.attrs if a.name in attrs}
            return node(*args[:n_in], **op.node_attrs(**attrs))
        return translate

    table = {getattr(torch.ops.edgeq, op.torch_name.split("::")[1]).default: translation(op)
             for op in OPS}
    return {**table, **_qdq_translations()}


def _qdq_translations() -> dict:
    """edgeq.ops.qdq as standard ONNX: QuantizeLinear / DequantizeLinear (zero point 0, so
    symmetric as TensorRT requires) and DQ(x) -> MatMul <- DQ(w) for the int8 linear."""
    from onnxscript import opset20 as op

    def scale(s: float):
        return op.Constant(value=onnx.helper.make_tensor("scale", onnx.TensorProto.FLOAT, [], [s]))

    def zero():
        return op.Constant(value=onnx.helper.make_tensor("zero", onnx.TensorProto.INT8, [], [0]))

    def quantize(x, s: float):
        return op.QuantizeLinear(x, scale(s), zero())

    def dequantize(q, s: float):
        return op.DequantizeLinear(q, scale(s), zero())

    def qlinear(xq, x_scale: float, w_t, w_scale):
        # w_scale: [out] per output channel (w_t is [in, out]) or 0-d per tensor
        w = op.DequantizeLinear(w_t, w_scale, axis=1)
        return op.MatMul(dequantize(xq, x_scale), w)

    def dequantize_int4(w, s, axis: int = 0):
        from onnxscript import opset21
        return opset21.DequantizeLinear(w, s, axis=axis, block_size=w.shape[axis] // s.shape[axis])

    def matmul_t(x, w):
        return op.Gemm(x, w, transB=1)

    return {torch.ops.edgeq.quantize.default: quantize,
            torch.ops.edgeq.dequantize.default: dequantize,
            torch.ops.edgeq.qlinear.default: qlinear,
            torch.ops.edgeq.dequantize_int4.default: dequantize_int4,
            torch.ops.edgeq.matmul_t.default: matmul_t}


def _int4_weights(graph: onnx.GraphProto) -> None:
    """The exporter stores the 4-bit weights of DequantizeLinear(block_size) and the tables of
    EdgeqEmbeddingW4 as INT8 values in [-8, 7]; store them as ONNX INT4 (packed two per byte)
    as the graph means them. A tied table is one initializer for both."""
    from onnx import numpy_helper

    from ..ops import int4
    from ..ops.table import EMBEDDING_W4
    inits = {t.name: t for t in graph.initializer}
    done = set()
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and any(a.name == "block_size" for a in node.attribute) \
                or node.op_type == EMBEDDING_W4.name:
            t = inits[node.input[0 if node.op_type == "DequantizeLinear" else 1]]
            if t.data_type == onnx.TensorProto.INT8:
                q = torch.from_numpy(numpy_helper.to_array(t).copy())
                packed = int4.pack(q.reshape(-1)).numpy()
                t.CopyFrom(onnx.helper.make_tensor(t.name, onnx.TensorProto.INT4, list(t.dims),
                                                   packed.tobytes(), raw=True))
                done.add(t.name)
    for v in graph.value_info:  # the exporter's INT8 type for them
        if v.name in done:
            v.type.tensor_type.elem_type = onnx.TensorProto.INT4


def _onnx_attr(attr, value):
    convert = {"INT": int, "FLOAT": float, "FLOATS": lambda v: [float(x) for x in v]}
    return convert.get(attr.type, lambda v: v)(value)


def check_symbolic_axes(model: onnx.ModelProto) -> None:
    """The exporter can silently specialise a dynamic axis; refuse such a graph."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        want = [0, 1] if value.name == "input_ids" else [0]
        for axis in want:
            if not dims[axis].dim_param:
                raise EdgeqError(f"export specialised axis {axis} of {value.name} to "
                                 f"{dims[axis].dim_value}; this is an edgeq bug, please report it")


def _opset(model) -> int:
    """OPSET, or the newer one a module of the model says its ops need (`onnx_opset`)."""
    return max([OPSET, *(getattr(m, "onnx_opset", OPSET) for m in model.modules())])


def to_onnx(model, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    cfg = model.cfg
    if not model.exportable:
        raise ValueError("export needs a model built on the edgeq custom ops (ops='custom')")
    wrapper = _Stateful(model).eval()
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=1, max=1 << 20)
    ids, at = torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 2])
    states = [t for pair in model.new_state(2) for t in pair]
    positions = torch.export.Dim("positions", min=1, max=1 << 20)
    dynamic = ({0: batch, 1: seq}, {0: positions}, tuple({0: batch} for _ in states))  # *states: one arg
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter's notes (torchvision absent, axis renames)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (ids, at, *states), dynamo=True, opset_version=_opset(model),
                dynamic_shapes=dynamic, custom_translation_table=_translations(),
                input_names=["input_ids", "logits_at", *state_names(cfg.n_layer)],
                output_names=["logits", *state_names(cfg.n_layer, "_out")],
                optimize=True, verbose=False)
    finally:
        quiet.setLevel(level)
    proto = program.model_proto
    _int4_weights(proto.graph)
    # the exporter leaves value_info without a type after some custom-node outputs
    typed = [v for v in proto.graph.value_info if v.type.HasField("tensor_type")]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(typed)
    check_symbolic_axes(proto)
    # the exporter's debug notes (stack traces, fx nodes, the program's signature): 2 KB a node
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.graph.metadata_props[:]
    meta = {"edgeq.config": json.dumps(cfg.to_dict()), **(metadata or {})}
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    return proto


def over_2gb(proto: onnx.ModelProto) -> bool:
    """Past protobuf's 2 GB limit, where a graph cannot be serialized whole."""
    try:
        return proto.ByteSize() >= TWO_GB
    except EncodeError:  # upb's ByteSize refuses past the limit itself
        return True


def save(proto: onnx.ModelProto, path: Path) -> None:
    """Check and write atomically: a temp folder beside the target, then rename. Graphs over
    2 GB keep their weights in PATH.data; PROTO keeps its weights in memory either way."""
    path = Path(path)
    parent = check_output(path)
    with writing(path, move=False) as tmp:
        out = tmp / path.name
        if over_2gb(proto):
            onnx.save_model(proto, out, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=path.name + ".data", size_threshold=1024)
            onnx.checker.check_model(str(out), full_check=True)
            # save_model moved the weights out of PROTO: read them back for the caller
            onnx.external_data_helper.load_external_data_for_model(proto, str(tmp))
            for t in proto.graph.initializer:
                t.ClearField("data_location")  # DEFAULT, as it was: unset
            os.replace(tmp / (path.name + ".data"), parent / (path.name + ".data"))
        else:
            onnx.checker.check_model(proto, full_check=True)
            onnx.save_model(proto, out)
        os.replace(out, path)
