"""Plain-torch references of the edgeq ops: the oracle every backend is tested against.

They follow docs/ops.md literally (fp32 math, a loop over time) and are differentiable, so the
training script uses them directly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def softplus(x: Tensor) -> Tensor:
    # threshold 20 as in mamba_ssm: above it softplus(x) == x in fp32
    return torch.where(x > 20.0, x, torch.log1p(torch.exp(x)))


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                   delta_bias: Tensor, state: Tensor, z: Tensor | None = None,
                   delta_softplus: bool = True) -> tuple[Tensor, Tensor]:
    batch, L, dim = u.shape
    H, N = A.shape
    G = B.shape[2]
    P = dim // H
    dt = delta.float() + delta_bias.float()
    if delta_softplus:
        dt = softplus(dt)
    # per channel: head h = d // P, group g = h // (H // G)
    dt = dt.repeat_interleave(P, dim=-1)  # [b, L, D]
    A_d = A.float().repeat_interleave(P, dim=0)  # [D, N]
    Bd = B.float().repeat_interleave(dim // G, dim=2)  # [b, L, D, N]
    Cd = C.float().repeat_interleave(dim // G, dim=2)
    uf = u.float()
    dA = torch.exp(dt.unsqueeze(-1) * A_d)  # [b, L, D, N]
    dBu = (dt * uf).unsqueeze(-1) * Bd
    s = state.float()
    ys = []
    # unbind, not indexing: its backward is one stack instead of L full-size scatters
    for dA_t, dBu_t, C_t in zip(dA.unbind(1), dBu.unbind(1), Cd.unbind(1)):
        s = dA_t * s + dBu_t
        ys.append((s * C_t).sum(-1))
    y = torch.stack(ys, dim=1) + uf * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype), s


def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor, state: Tensor,
                  activation: int = 1) -> tuple[Tensor, Tensor]:
    W = weight.shape[1]
    L = x.shape[1]
    xx = torch.cat([state.to(x.dtype), x], dim=1)  # [b, W-1+L, C]
    xf = xx.float()
    y = bias.float() + sum(weight[:, k].float() * xf[:, k:k + L] for k in range(W))
    if activation == 1:
        y = F.silu(y)
    return y.to(x.dtype), xx[:, L:L + W - 1].clone()


# ---- int8 variants (docs/ops.md): int8 tensors carry per-tensor scales as attributes ----

def quantize(x: Tensor, scale: float) -> Tensor:
    """ONNX QuantizeLinear, symmetric int8: round half to even of x / scale, saturate."""
    return torch.clamp(torch.round(x.float() / scale), -128, 127).to(torch.int8)


def dequantize(q: Tensor, scale: float) -> Tensor:
    return q.float() * scale


def selective_scan_int8(u, delta, A, B, C, D, delta_bias, state, z, u_scale, delta_scale,
                        B_scale, C_scale, z_scale, delta_softplus=True):
    return selective_scan(dequantize(u, u_scale), dequantize(delta, delta_scale), A,
                          dequantize(B, B_scale), dequantize(C, C_scale), D, delta_bias, state,
                          dequantize(z, z_scale), delta_softplus)


def causal_conv1d_int8(x, weight, bias, state, x_scale, weight_scale, y_scale, activation=1):
    W = weight.shape[1]
    L = x.shape[1]
    xx = torch.cat([state, x], dim=1)  # int8 window
    # int32 accumulation, exact in float64
    acc = sum(weight[:, k].double() * xx[:, k:k + L].double() for k in range(W))
    y = acc.float() * (x_scale * weight_scale) + bias.float()
    if activation == 1:
        y = F.silu(y)
    return quantize(y, y_scale), xx[:, L:L + W - 1].clone()


def hadamard_int8(x: Tensor, y_scale: float) -> Tensor:
    from .hadamard import transform
    return quantize(transform(x.float()), y_scale)


def add_rmsnorm_int8(x, residual, weight, eps: float, y_scale: float):
    s = x.float() + residual.float()
    r = s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return quantize(r, y_scale), s
