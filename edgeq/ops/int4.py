"""Signed 4-bit weights packed two per byte, in ONNX's INT4 order: element 2j in the low nibble,
element 2j+1 in the high nibble, two's complement. The W4A8 op reads these bytes as int8 [N, K/2] (unpack takes either); the
W4A16 graphs store the same bytes as an ONNX INT4 initializer."""
from __future__ import annotations

import torch
from torch import Tensor


def pack(q: Tensor) -> Tensor:
    """int8 values in [-8, 7], last dim even -> uint8 [..., K/2]."""
    if q.shape[-1] % 2:
        raise ValueError(f"int4 packing needs an even last dimension, got {q.shape[-1]}")
    if q.min() < -8 or q.max() > 7:
        raise ValueError("int4 values must lie in [-8, 7]")
    n = q.to(torch.int16) & 0xF
    return (n[..., 0::2] | (n[..., 1::2] << 4)).to(torch.uint8)


def unpack(p: Tensor) -> Tensor:
    """The bytes, uint8 or int8 [..., K/2] -> int8 [..., K] in [-8, 7]."""
    b = p.to(torch.int16)
    lo, hi = b & 0xF, (b >> 4) & 0xF
    q = torch.stack([lo, hi], dim=-1).reshape(*p.shape[:-1], -1)
    return torch.where(q > 7, q - 16, q).to(torch.int8)
