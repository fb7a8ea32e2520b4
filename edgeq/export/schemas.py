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
# Port.dtype as an ONNX element type (an "act" output takes its first input's)
ELEM = {"fp32": onnx.TensorProto.FLOAT, "fp16": onnx.TensorProto.FLOAT16,
        "int8": onnx.TensorProto.INT8, "int4": onnx.TensorProto.INT4,
        "int64": onnx.TensorProto.INT64}
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
    like = [[p.name for p in op.inputs].index(p.like) for p in op.outputs]

    def infer(ctx):
        types = [ctx.get_input_type(i) if i < ctx.get_num_inputs() else None
                 for i in range(len(op.inputs))]
        shapes = [t.tensor_type.shape.dim if t is not None else None for t in types]
        elems = [t.tensor_type.elem_type if t is not None else 0 for t in types]
        for out, (port, (shape, elem)) in enumerate(zip(op.outputs, op.output_types(
                shapes, elems, ELEM.__getitem__))):
            t = onnx.TypeProto()
            t.CopyFrom(types[like[out]])
            t.tensor_type.elem_type = elem
            if (port.last_from or port.append_from) and shape:  # its own shape, not like's
                dims = t.tensor_type.shape.dim
                del dims[:]
                for d in shape:
                    new = dims.add()
                    if d is not None:  # unknown where its source shape is
                        new.CopyFrom(d)
            ctx.set_output_type(out, t)

    s.set_type_and_shape_inference_function(infer)
    return s


@functools.cache
def register() -> None:
    for op in OPS:
        if not onnx.defs.has(op.name, DOMAIN):
            onnx.defs.register_schema(schema(op))
