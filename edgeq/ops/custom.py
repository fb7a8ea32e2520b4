"""edgeq ops registered with torch.library, so that models call them as single ops that the
ONNX exporter turns into custom nodes. The CPU implementation is the plain-torch reference."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import reference
from .table import CAUSAL_CONV1D, SELECTIVE_SCAN


@torch.library.custom_op(SELECTIVE_SCAN.torch_name, mutates_args=())
def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                   delta_bias: Tensor, state: Tensor, z: Optional[Tensor] = None,
                   delta_softplus: bool = True) -> tuple[Tensor, Tensor]:
    return reference.selective_scan(u, delta, A, B, C, D, delta_bias, state, z, delta_softplus)


@selective_scan.register_fake
def _(u, delta, A, B, C, D, delta_bias, state, z=None, delta_softplus=True):
    return torch.empty_like(u), torch.empty_like(state, dtype=torch.float32)


@torch.library.custom_op(CAUSAL_CONV1D.torch_name, mutates_args=())
def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor, state: Tensor,
                  activation: int = 1) -> tuple[Tensor, Tensor]:
    return reference.causal_conv1d(x, weight, bias, state, activation)


@causal_conv1d.register_fake
def _(x, weight, bias, state, activation=1):
    return torch.empty_like(x), torch.empty_like(state, dtype=x.dtype)
