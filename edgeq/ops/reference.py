"""Plain-torch references of the edgeq ops: the oracle every backend is tested against.

They follow docs/ops.md literally (fp32 math, a loop over time) and are differentiable, so the
training script uses them directly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def softplus(x: Tensor) -> Tensor:
    # threshold 20 as in mamba_ssm: above it softplus(x) == x in fp32
    return torch.where(x > 20.0, x, torch.log1p(torch.exp(x.double())).to(x.dtype))


def silu(x: Tensor) -> Tensor:
    """SiLU in fp64, rounded once to fp32 (the CPU kernels' numerics)."""
    xd = x.double()
    return (xd / (1 + torch.exp(-xd))).to(x.dtype)


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
    # exp, the sum over N and the gate in fp64, each rounded once to fp32 (docs/ops.md,
    # "Reference numerics"): the C++ kernel does the same and agrees bit for bit
    dA = torch.exp(dt.unsqueeze(-1).double() * A_d.double()).float()  # [b, L, D, N]
    dBu = (dt * uf).unsqueeze(-1) * Bd
    s = state.float()
    ys = []
    # unbind, not indexing: its backward is one stack instead of L full-size scatters
    for dA_t, dBu_t, C_t in zip(dA.unbind(1), dBu.unbind(1), Cd.unbind(1)):
        s = dA_t * s + dBu_t
        ys.append((s * C_t).double().sum(-1).float())
    y = torch.stack(ys, dim=1) + uf * D.float()
    if z is not None:
        y = y * silu(z.float())
    return y.to(u.dtype), s


def _segsum(x: Tensor) -> Tensor:
    """[..., T] -> [..., T, T]: sum of x over (j, i] at [i, j] for j <= i, -inf above."""
    T = x.shape[-1]
    cs = torch.cumsum(x, -1)
    out = cs[..., :, None] - cs[..., None, :]
    return out.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device)), float("-inf"))


def ssd_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, dt_bias: Tensor,
             state: Tensor, dt_softplus: bool = True, chunk_size: int = 256
             ) -> tuple[Tensor, Tensor]:
    """EdgeqSSDScan: the selective scan with one A per head, computed the SSD way (mamba_ssm's
    ssd_minimal): matmuls inside chunks of chunk_size tokens, a recurrence between chunks."""
    b, L, dim = x.shape
    H, G, N = A.shape[0], B.shape[2], B.shape[3]
    P, c = dim // H, chunk_size
    dt = dt.float() + dt_bias.float()
    if dt_softplus:
        dt = softplus(dt)
    pad = (-L) % c  # zero dt: decay 1 and no input, so padding changes nothing
    X = F.pad((x.float() * dt.repeat_interleave(P, -1)), (0, 0, 0, pad)).view(b, -1, c, H, P)
    dA = F.pad(dt * A.float(), (0, 0, 0, pad)).view(b, -1, c, H).permute(0, 3, 1, 2)  # b h z c
    Bh = F.pad(B.float().repeat_interleave(H // G, 2), (0, 0, 0, 0, 0, pad)).view(b, -1, c, H, N)
    Ch = F.pad(C.float().repeat_interleave(H // G, 2), (0, 0, 0, 0, 0, pad)).view(b, -1, c, H, N)
    cs = torch.cumsum(dA, -1)
    y = torch.einsum("bzlhn,bzshn,bhzls,bzshp->bzlhp", Ch, Bh, torch.exp(_segsum(dA)), X)
    states = torch.einsum("bzlhn,bhzl,bzlhp->bzhpn", Bh, torch.exp(cs[..., -1:] - cs), X)
    states = torch.cat([state.float().view(b, 1, H, P, N), states], 1)
    decay = torch.exp(_segsum(F.pad(cs[..., -1], (1, 0))))  # b h (z+1) (z+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay, states)
    y = y + torch.einsum("bzlhn,bzhpn,bhzl->bzlhp", Ch, states[:, :-1], torch.exp(cs))
    y = y.reshape(b, -1, dim)[:, :L] + x.float() * D.float().repeat_interleave(P)
    return y.to(x.dtype), states[:, -1].reshape(b, dim, N)


def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor, state: Tensor,
                  activation: int = 1) -> tuple[Tensor, Tensor]:
    W = weight.shape[1]
    L = x.shape[1]
    xx = torch.cat([state.to(x.dtype), x], dim=1)  # [b, W-1+L, C]
    xf = xx.float()
    y = bias.float() + sum(weight[:, k].float() * xf[:, k:k + L] for k in range(W))
    if activation == 1:
        y = silu(y)
    return y.to(x.dtype), xx[:, L:L + W - 1].clone()


# ---- int8 variants (docs/ops.md): int8 tensors carry their scales as attributes ----

def f32(v: float) -> float:
    """A scale or eps as the fp32 attribute the graph carries."""
    return float(np.float32(v))


def scales(scale, n: int) -> Tensor:
    """A scale attribute as fp32 values: FLOAT, or FLOATS of length 1 (per tensor, then 0-d) or
    n (one per channel, head or group)."""
    s = torch.from_numpy(np.array(scale, np.float32).reshape(-1))
    if s.numel() not in (1, n):
        raise ValueError(f"a scale needs 1 or {n} values, got {s.numel()}")
    return s.reshape(()) if s.numel() == 1 else s


def _along(scale, t: Tensor, axis: int) -> Tensor:
    """scales(scale) shaped to broadcast along `axis` (negative) of t."""
    s = scales(scale, t.shape[axis])
    return s if s.ndim == 0 else s.reshape(-1, *[1] * (-axis - 1))


def quantize(x: Tensor, scale, axis: int = -1) -> Tensor:
    """ONNX QuantizeLinear, symmetric int8: round half to even of x / scale, saturate. A FLOATS
    scale runs along `axis`."""
    return torch.clamp(torch.round(x.float() / _along(scale, x, axis)), -128, 127).to(torch.int8)


def dequantize(q: Tensor, scale, axis: int = -1) -> Tensor:
    return q.float() * _along(scale, q, axis)


def qlinear(xq: Tensor, x_scale: float, w_t: Tensor, w_scale: Tensor) -> Tensor:
    """int8 [..., in] x int8 [in, out]: int32 accumulation (exact in fp64), then one fp32
    multiply by x_scale * w_scale (0-d per tensor, [out] per channel)."""
    acc = (xq.double() @ w_t.double()).float()
    return acc * (f32(x_scale) * w_scale.float())


def dequantize_int4(w: Tensor, s: Tensor, axis: int = 0) -> Tensor:
    """ONNX DequantizeLinear with block_size along `axis` (zero point 0), in the scales' dtype:
    each product rounded once to it."""
    out = w.float() * s.float().repeat_interleave(w.shape[axis] // s.shape[axis], dim=axis)
    return out.to(s.dtype)


def embedding_w4(ids: Tensor, table: Tensor, table_scale: Tensor, group_size: int = 128) -> Tensor:
    """EdgeqEmbeddingW4 (docs/ops.md): the rows of int4 `table` (int8 values in [-8, 7],
    [vocab, d]) at `ids`, each element times its group's scale (fp16 [vocab, d/group_size])
    in fp32: out [..., d] fp32. An id outside [0, vocab) gives a row of zeros."""
    vocab, d = table.shape
    if group_size < 2 or group_size % 2 or d % group_size or \
            table_scale.shape != (vocab, d // group_size):
        raise ValueError(f"embedding_w4: table {tuple(table.shape)}, table_scale "
                         f"{tuple(table_scale.shape)} and group_size {group_size} do not fit "
                         "(see docs/ops.md)")
    ok = (ids >= 0) & (ids < vocab)
    safe = torch.where(ok, ids, torch.zeros_like(ids))
    rows = table[safe].float() * table_scale[safe].float().repeat_interleave(group_size, dim=-1)
    return torch.where(ok.unsqueeze(-1), rows, torch.zeros_like(rows))


def selective_scan_int8(u, delta, A, B, C, D, delta_bias, state, z, u_scale, delta_scale,
                        B_scale, C_scale, z_scale, delta_softplus=True):
    return selective_scan(dequantize(u, u_scale), dequantize(delta, delta_scale), A,
                          dequantize(B, B_scale), dequantize(C, C_scale), D, delta_bias, state,
                          dequantize(z, z_scale), delta_softplus)


def ssd_scan_int8_fp32_state(x, dt, A, B, C, D, dt_bias, state, x_scale, dt_scale, B_scale,
                             C_scale, dt_softplus=True, chunk_size=256):
    """EdgeqSSDScanInt8 before its state's fp16 rounding: the fp32 scan of the dequantized inputs
    (x per channel, dt per head, B and C per group, or per tensor) from `state` widened to fp32;
    returns y and the fp32 state."""
    return ssd_scan(dequantize(x, x_scale), dequantize(dt, dt_scale), A,
                    dequantize(B, B_scale, axis=-2), dequantize(C, C_scale, axis=-2), D, dt_bias,
                    state.float(), dt_softplus, chunk_size)


def ssd_scan_int8(x, dt, A, B, C, D, dt_bias, state, x_scale, dt_scale, B_scale, C_scale,
                  dt_softplus=True, chunk_size=256):
    """EdgeqSSDScanInt8: the state an fp16 cache, computed on in fp32 and rounded once."""
    if state.dtype != torch.float16:
        raise ValueError(f"ssd_scan_int8: the state must be fp16, got {state.dtype}")
    y, s = ssd_scan_int8_fp32_state(x, dt, A, B, C, D, dt_bias, state, x_scale, dt_scale,
                                    B_scale, C_scale, dt_softplus, chunk_size)
    return y, s.half()


def causal_conv1d_int8(x, weight, bias, state, x_scale, weight_scale, y_scale, activation=1):
    W = weight.shape[1]
    L = x.shape[1]
    xx = torch.cat([state, x], dim=1)  # int8 window
    # int32 accumulation, exact in float64
    acc = sum(weight[:, k].double() * xx[:, k:k + L].double() for k in range(W))
    scale = _along(x_scale, x, -1) * _along(weight_scale, x, -1)  # fp32 product per channel
    y = acc.float() * scale + bias.float()
    if activation == 1:
        y = silu(y)
    return quantize(y, y_scale), xx[:, L:L + W - 1].clone()


def hadamard_int8(x: Tensor, y_scale: float) -> Tensor:
    from .hadamard import transform
    return quantize(transform(x.float()), y_scale)


def add_rmsnorm_int8(x, residual, weight, eps: float, y_scale: float):
    s = x.float() + residual.float()
    # the sum of squares in fp64 and 1/rms rounded once to fp32 make every backend agree bit
    # for bit, which matters: one flipped int8 value persists in the SSM state
    ss = s.double().pow(2).sum(-1, keepdim=True)
    inv = (1.0 / torch.sqrt(ss / s.shape[-1] + f32(eps))).float()
    return quantize(s * inv * weight.float(), y_scale), s


def linear_w4a8(x: Tensor, weight: Tensor, weight_scale: Tensor, x_scale: float,
                group_size: int = 128) -> Tensor:
    """int8 x [..., K] times int4 weight [N, K] (packed, bytes as int8 [N, K/2]) with a scale per group
    of group_size input channels: exact int32 group sums, one fp32 product per group, the
    groups added in fp64 in order, one fp32 multiply by x_scale (docs/ops.md)."""
    from .int4 import unpack
    K, N = x.shape[-1], weight.shape[0]
    if weight.dtype != torch.int8:
        raise ValueError(f"linear_w4a8: weight must be the packed bytes as int8, got {weight.dtype}")
    if group_size < 2 or group_size % 2 or K % group_size or weight.shape != (N, K // 2) \
            or weight_scale.shape != (N, K // group_size):
        raise ValueError(f"linear_w4a8: shapes x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
                         f"weight_scale {tuple(weight_scale.shape)} and group_size {group_size} "
                         "do not fit (see docs/ops.md)")
    G = K // group_size
    w = unpack(weight).double().view(N, G, group_size)
    xg = x.reshape(-1, G, group_size).double()
    s = torch.zeros(xg.shape[0], N, dtype=torch.float64, device=x.device)
    for g in range(G):  # in g order, as the kernels: fp64 addition is not associative
        acc = xg[:, g] @ w[:, g].T  # integers below 2^53: exact in fp64
        s += acc.float() * weight_scale[:, g].float()
    return (s.float() * f32(x_scale)).reshape(*x.shape[:-1], N)
