"""edgeq ops registered with torch.library, so that models call them as single ops that the
ONNX exporter turns into custom nodes. The CPU implementation is the plain-torch reference."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import reference
from .table import (ADD_RMSNORM_INT8, CAUSAL_CONV1D, CAUSAL_CONV1D_INT8, EMBEDDING_W4,
                    HADAMARD_INT8, LINEAR_W4A8, SELECTIVE_SCAN, SELECTIVE_SCAN_INT8, SSD_SCAN,
                    SSD_SCAN_INT8)


@torch.library.custom_op(SELECTIVE_SCAN.torch_name, mutates_args=())
def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                   delta_bias: Tensor, state: Tensor, z: Optional[Tensor] = None,
                   delta_softplus: bool = True) -> tuple[Tensor, Tensor]:
    return reference.selective_scan(u, delta, A, B, C, D, delta_bias, state, z, delta_softplus)


@selective_scan.register_fake
def _(u, delta, A, B, C, D, delta_bias, state, z=None, delta_softplus=True):
    return torch.empty_like(u), torch.empty_like(state, dtype=torch.float32)


@torch.library.custom_op(SSD_SCAN.torch_name, mutates_args=())
def ssd_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, dt_bias: Tensor,
             state: Tensor, dt_softplus: bool = True, chunk_size: int = 256
             ) -> tuple[Tensor, Tensor]:
    return reference.ssd_scan(x, dt, A, B, C, D, dt_bias, state, dt_softplus, chunk_size)


@ssd_scan.register_fake
def _(x, dt, A, B, C, D, dt_bias, state, dt_softplus=True, chunk_size=256):
    return torch.empty_like(x), torch.empty_like(state, dtype=torch.float32)


@torch.library.custom_op(CAUSAL_CONV1D.torch_name, mutates_args=())
def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor, state: Tensor,
                  activation: int = 1) -> tuple[Tensor, Tensor]:
    return reference.causal_conv1d(x, weight, bias, state, activation)


@causal_conv1d.register_fake
def _(x, weight, bias, state, activation=1):
    return torch.empty_like(x), torch.empty_like(state, dtype=x.dtype)


@torch.library.custom_op(SELECTIVE_SCAN_INT8.torch_name, mutates_args=())
def selective_scan_int8(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                        delta_bias: Tensor, state: Tensor, z: Tensor, u_scale: float,
                        delta_scale: float, B_scale: float, C_scale: float, z_scale: float,
                        delta_softplus: bool = True) -> tuple[Tensor, Tensor]:
    return reference.selective_scan_int8(u, delta, A, B, C, D, delta_bias, state, z, u_scale,
                                         delta_scale, B_scale, C_scale, z_scale, delta_softplus)


@selective_scan_int8.register_fake
def _(u, delta, A, B, C, D, delta_bias, state, z, *scales, delta_softplus=True):
    return torch.empty_like(u, dtype=torch.float32), torch.empty_like(state)


@torch.library.custom_op(SSD_SCAN_INT8.torch_name, mutates_args=())
def ssd_scan_int8(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                  dt_bias: Tensor, state: Tensor, x_scale: list[float], dt_scale: list[float],
                  B_scale: list[float], C_scale: list[float], dt_softplus: bool = True,
                  chunk_size: int = 256) -> tuple[Tensor, Tensor]:
    return reference.ssd_scan_int8(x, dt, A, B, C, D, dt_bias, state, x_scale, dt_scale, B_scale,
                                   C_scale, dt_softplus, chunk_size)


@ssd_scan_int8.register_fake
def _(x, dt, A, B, C, D, dt_bias, state, *scales, dt_softplus=True, chunk_size=256):
    return torch.empty_like(x, dtype=torch.float32), torch.empty_like(state)


@torch.library.custom_op(CAUSAL_CONV1D_INT8.torch_name, mutates_args=())
def causal_conv1d_int8(x: Tensor, weight: Tensor, bias: Tensor, state: Tensor, x_scale: list[float],
                       weight_scale: list[float], y_scale: list[float], activation: int = 1
                       ) -> tuple[Tensor, Tensor]:
    return reference.causal_conv1d_int8(x, weight, bias, state, x_scale, weight_scale, y_scale,
                                        activation)


@causal_conv1d_int8.register_fake
def _(x, weight, bias, state, x_scale, weight_scale, y_scale, activation=1):
    return torch.empty_like(x), torch.empty_like(state)


@torch.library.custom_op(HADAMARD_INT8.torch_name, mutates_args=())
def hadamard_int8(x: Tensor, y_scale: float) -> Tensor:
    return reference.hadamard_int8(x, y_scale)


@hadamard_int8.register_fake
def _(x, y_scale):
    return torch.empty_like(x, dtype=torch.int8)


@torch.library.custom_op(ADD_RMSNORM_INT8.torch_name, mutates_args=())
def add_rmsnorm_int8(x: Tensor, residual: Tensor, weight: Tensor, eps: float, y_scale: float
                     ) -> tuple[Tensor, Tensor]:
    return reference.add_rmsnorm_int8(x, residual, weight, eps, y_scale)


@add_rmsnorm_int8.register_fake
def _(x, residual, weight, eps, y_scale):
    return torch.empty_like(x, dtype=torch.int8), torch.empty_like(x, dtype=torch.float32)


@torch.library.custom_op(LINEAR_W4A8.torch_name, mutates_args=())
def linear_w4a8(x: Tensor, weight: Tensor, weight_scale: Tensor, x_scale: float,
                group_size: int = 128) -> Tensor:
    return reference.linear_w4a8(x, weight, weight_scale, x_scale, group_size)


@linear_w4a8.register_fake
def _(x, weight, weight_scale, x_scale, group_size=128):
    return x.new_empty((*x.shape[:-1], weight.shape[0]), dtype=torch.float32)


@torch.library.custom_op(EMBEDDING_W4.torch_name, mutates_args=())
def embedding_w4(ids: Tensor, table: Tensor, table_scale: Tensor, group_size: int = 128) -> Tensor:
    return reference.embedding_w4(ids, table, table_scale, group_size)


@embedding_w4.register_fake
def _(ids, table, table_scale, group_size=128):
    return ids.new_empty((*ids.shape, table.shape[1]), dtype=torch.float32)
