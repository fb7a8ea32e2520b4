"""ONNX schemas of the edgeq custom ops, generated from the op table and registered once, so
that the exporter can emit the nodes and onnx.checker can check them."""
from __future__ import annotations

import functools

import onnx
from onnx.defs import OpSchema

from ..ops.table import DOMAIN, OPS, OpDef

_ATTR_TYPES = {
    "INT": OpSchema.AttrType.INT, "INTS": OpSchema.AttrType.INTS,
    "FLOAT": OpSchema.AttrType.FLOAT, "FLOATS": OpSchema.AttrType.FLOATS,
    "STRING": OpSchema.AttrType.STRING,
}
OPSET_VERSION = 1
ELEM = {"int8": onnx.TensorProto.INT8, "float": onnx.TensorProto.FLOAT}  # Port.dtype
_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(int8)", "tensor(int4)",
          "tensor(int64)"]


def schema(op: OpDef) -> OpSchema:
    # one permissive type variable per port: dtype rules are the op spec's and the plugins'
    inputs = [OpSchema.FormalParameter(
        p.name, f"T{i}", p.doc,
        param_option=OpSchema.FormalParameterOption.Optional if p.optional
        else OpSchema.FormalParameterOption.Single) for i, p in enumerate(op.inputs)]
    outputs = [OpSchema.FormalParameter(p.name, f"O{i}", p.doc) for i, p in enumerate(op.outputs)]
    types = [(f"T{i}", _TYPES, "") for i in range(len(op.inputs))] + \
            [(f"O{i}", _TYPES, "") for i in range(len(op.outputs))]
    attrs = [OpSchema.Attribute(a.name, _ATTR_TYPES[a.type], a.doc) for a in op.attrs] + [
        OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version"),
        OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace")]
    s = OpSchema(op.name, DOMAIN, OPSET_VERSION, inputs=inputs, outputs=outputs,
                 type_constraints=types, attributes=attrs)
    names = [p.name for p in op.inputs]

    def infer(ctx):
        for out, port in enumerate(op.outputs):
            t = onnx.TypeProto()
            t.CopyFrom(ctx.get_input_type(names.index(port.like)))
            if port.dtype:
                t.tensor_type.elem_type = ELEM[port.dtype]
            dims = t.tensor_type.shape.dim
            if port.last_from and dims:
                rows = ctx.get_input_type(names.index(port.last_from)).tensor_type.shape.dim
                if rows:
                    dims[-1].CopyFrom(rows[0])
                else:  # that input's shape is unknown, so is this dim
                    dims[-1].Clear()
            if port.append_from:
                src = ctx.get_input_type(names.index(port.append_from)).tensor_type.shape.dim
                new = t.tensor_type.shape.dim.add()
                if src:
                    new.CopyFrom(src[-1])
            ctx.set_output_type(out, t)

    s.set_type_and_shape_inference_function(infer)
    return s


@functools.cache
def register() -> None:
    for op in OPS:
        if not onnx.defs.has(op.name, DOMAIN):
            onnx.defs.register_schema(schema(op))
