"""The edgeq custom ops in ONNX Runtime: onnxruntime-extensions PyOps that hand raw pointers
to the C++ CPU kernels (edgeq.runtime.kernels). PyOps register by op_type in the domain
ai.onnx.contrib, so graphs are rewritten from the `edgeq` domain in memory before loading."""
from __future__ import annotations

import functools

import onnx

from ..ops.table import (ADD_RMSNORM_INT8, CAUSAL_CONV1D, CAUSAL_CONV1D_INT8, DOMAIN,
                         HADAMARD_INT8, SELECTIVE_SCAN, SELECTIVE_SCAN_INT8)
from . import kernels

ORT_DOMAIN = "ai.onnx.contrib"


@functools.cache
def register() -> str:
    """Register the PyOps once; returns the onnxruntime-extensions library to load."""
    from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op
    f32, i64, i8 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64, PyCustomOpDef.dt_int8

    @onnx_op(op_type=SELECTIVE_SCAN.name, inputs=[f32] * len(SELECTIVE_SCAN.inputs),
             outputs=[f32, f32], attrs={"delta_softplus": i64})
    def selective_scan(u, delta, A, B, C, D, delta_bias, state, z, delta_softplus=1):
        return kernels.selective_scan(u, delta, A, B, C, D, delta_bias, state, z, delta_softplus)

    @onnx_op(op_type=CAUSAL_CONV1D.name, inputs=[f32] * len(CAUSAL_CONV1D.inputs),
             outputs=[f32, f32], attrs={"activation": i64})
    def causal_conv1d(x, weight, bias, state, activation=1):
        return kernels.causal_conv1d(x, weight, bias, state, activation)

    @onnx_op(op_type=SELECTIVE_SCAN_INT8.name, inputs=[i8, i8, f32, i8, i8, f32, f32, f32, i8],
             outputs=[f32, f32], attrs=_attrs(SELECTIVE_SCAN_INT8, f32, i64))
    def selective_scan_int8(u, delta, A, B, C, D, delta_bias, state, z, **a):
        return kernels.selective_scan_int8(u, delta, A, B, C, D, delta_bias, state, z, **a)

    @onnx_op(op_type=CAUSAL_CONV1D_INT8.name, inputs=[i8, i8, f32, i8], outputs=[i8, i8],
             attrs=_attrs(CAUSAL_CONV1D_INT8, f32, i64))
    def causal_conv1d_int8(x, weight, bias, state, **a):
        return kernels.causal_conv1d_int8(x, weight, bias, state, **a)

    @onnx_op(op_type=HADAMARD_INT8.name, inputs=[f32], outputs=[i8],
             attrs=_attrs(HADAMARD_INT8, f32, i64))
    def hadamard_int8(x, **a):
        return kernels.hadamard_int8(x, **a)

    @onnx_op(op_type=ADD_RMSNORM_INT8.name, inputs=[f32, f32, f32], outputs=[i8, f32],
             attrs=_attrs(ADD_RMSNORM_INT8, f32, i64))
    def add_rmsnorm_int8(x, residual, weight, **a):
        return kernels.add_rmsnorm_int8(x, residual, weight, **a)

    return get_library_path()


def _attrs(op, f32, i64) -> dict:
    return {a.name: f32 if a.type == "FLOAT" else i64 for a in op.attrs}


def for_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the graph with the edgeq domain renamed to the PyOps' domain."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if node.domain == DOMAIN:
            node.domain = ORT_DOMAIN
    for imp in out.opset_import:
        if imp.domain == DOMAIN:
            imp.domain = ORT_DOMAIN
    return out
