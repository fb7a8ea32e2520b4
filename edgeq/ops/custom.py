"""edgeq ops registered with torch.library, so that models call them as single ops that the
ONNX exporter turns into custom nodes. Each is made from its op table row: the schema from the
ports and attributes, the CPU implementation the plain-torch reference of the same name, the
fake (shapes and dtypes for tracing) the table's output rule. `custom.selective_scan(...)` etc.
"""
from __future__ import annotations

import torch

from . import reference
from .table import OPS, OpDef

# the attribute types as torch schema types; INT is SymInt unless the row says otherwise
_TORCH_TYPES = {"INT": "SymInt", "FLOAT": "float", "FLOATS": "float[]"}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8,
           "int64": torch.int64}


def schema(op: OpDef) -> str:
    """`(Tensor u, ..., bool delta_softplus=True) -> (Tensor, Tensor)`: inputs, then the
    attributes (INT ones with their default)."""
    args = [f"Tensor? {p.name}=None" if p.optional else f"Tensor {p.name}" for p in op.inputs]
    for a in op.attrs:
        kind = a.torch_type or _TORCH_TYPES[a.type]
        default = "" if a.type != "INT" else f"={bool(a.default) if kind == 'bool' else a.default}"
        args.append(f"{kind} {a.name}{default}")
    outs = ", ".join(["Tensor"] * len(op.outputs))
    return f"({', '.join(args)}) -> {outs if len(op.outputs) == 1 else f'({outs})'}"


def _fake(op: OpDef):
    n = len(op.inputs)
    like = [[p.name for p in op.inputs].index(p.like) for p in op.outputs]

    def fake(*args):
        tensors = args[:n]  # then the attributes
        shapes = [None if t is None else tuple(t.shape) for t in tensors]
        dtypes = [None if t is None else t.dtype for t in tensors]
        outs = [tensors[i].new_empty(shape, dtype=dtype) for i, (shape, dtype) in
                zip(like, op.output_types(shapes, dtypes, _DTYPES.__getitem__))]
        return outs[0] if len(outs) == 1 else tuple(outs)
    return fake


def _define(op: OpDef):
    fn = torch.library.custom_op(op.torch_name, getattr(reference, op.py_name), mutates_args=(),
                                 schema=schema(op))
    fn.register_fake(_fake(op))
    return fn


for _op in OPS:  # module attributes named as the ops: custom.selective_scan, ...
    globals()[_op.py_name] = _define(_op)
