"""Quantize, dequantize and the int8 linear as torch custom ops. They are standard ONNX ops
(QuantizeLinear, DequantizeLinear + MatMul, following TensorRT's explicit-quantization rules),
not plugins, so they have no row in the op table; the exporter translates them."""
from __future__ import annotations

import torch
from torch import Tensor

from . import reference


@torch.library.custom_op("edgeq::quantize", mutates_args=())
def quantize(x: Tensor, scale: float) -> Tensor:
    return reference.quantize(x, scale)


@quantize.register_fake
def _(x, scale):
    return torch.empty_like(x, dtype=torch.int8)


@torch.library.custom_op("edgeq::dequantize", mutates_args=())
def dequantize(q: Tensor, scale: float) -> Tensor:
    return reference.dequantize(q, scale)


@dequantize.register_fake
def _(q, scale):
    return torch.empty_like(q, dtype=torch.float32)


@torch.library.custom_op("edgeq::qlinear", mutates_args=())
def qlinear(xq: Tensor, x_scale: float, w_t: Tensor, w_scale: Tensor) -> Tensor:
    """xq int8 [..., in] times w_t int8 [in, out]: int32 accumulation (exact in float64), then
    one fp32 multiply by x_scale * w_scale (w_scale: 0-d per tensor or [out] per channel)."""
    return reference.qlinear(xq, x_scale, w_t, w_scale)


@qlinear.register_fake
def _(xq, x_scale, w_t, w_scale):
    return xq.new_empty((*xq.shape[:-1], w_t.shape[1]), dtype=torch.float32)


# DequantizeLinear takes block_size (the form dequantize_int4 exports to) from ONNX opset 21
INT4_OPSET = 21


@torch.library.custom_op("edgeq::dequantize_int4", mutates_args=())
def dequantize_int4(w: Tensor, s: Tensor, axis: int = 0) -> Tensor:
    """A block-quantized 4-bit weight in the scales' dtype (fp32 or fp16): w int8 values in
    [-8, 7] (2-D), one scale per block of w.shape[axis] / s.shape[axis] elements along `axis`
    (s has w's shape but on that axis). ONNX: DequantizeLinear of an INT4 initializer with axis
    and block_size, TensorRT's weight-only INT4 form (NvInfer.h, IDequantizeLayer: block
    dequantization of a 2-D INT4 constant, scale shaped as the input but on the blocked axis)."""
    return reference.dequantize_int4(w, s, axis)


@dequantize_int4.register_fake
def _(w, s, axis=0):
    return w.new_empty(w.shape, dtype=s.dtype)


@torch.library.custom_op("edgeq::matmul_t", mutates_args=())
def matmul_t(x: Tensor, w: Tensor) -> Tensor:
    """x [M, K] times w [N, K] transposed, in x's dtype. ONNX Gemm(transB=1): the parser makes
    that a matrix multiply with B's MatrixOperation::kTRANSPOSE (onnx-tensorrt 10.1-GA
    onnxOpImporters.cpp, Gemm importer: getMatrixOp(inputB, transB)), so a table stored
    [N, K] stays one constant; Transpose(table) -> MatMul would fold into a second one."""
    return x @ w.t()


@matmul_t.register_fake
def _(x, w):
    return x.new_empty((x.shape[0], w.shape[0]))


def linear_rows(x: Tensor, w: Tensor) -> Tensor:
    """x [..., K] times w [N, K] transposed, as one Gemm(transB=1) over the rows of x."""
    return matmul_t(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[0])
