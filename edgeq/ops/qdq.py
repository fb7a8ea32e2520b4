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


@torch.library.custom_op("edgeq::dequantize_int4", mutates_args=())
def dequantize_int4(w_t: Tensor, s_t: Tensor) -> Tensor:
    """A block-quantized 4-bit weight in the scales' dtype (fp32 or fp16): w_t int8 values in
    [-8, 7], [in, out], one scale per block of in / s_t.shape[0] rows (s_t [in / block, out]).
    ONNX: DequantizeLinear of an INT4 initializer with axis 0 and block_size, TensorRT's
    weight-only INT4 form."""
    return reference.dequantize_int4(w_t, s_t)


@dequantize_int4.register_fake
def _(w_t, s_t):
    return w_t.new_empty(w_t.shape, dtype=s_t.dtype)
