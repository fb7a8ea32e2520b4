"""4-bit weights with per-group scales: round-to-nearest and GPTQ (Frantar et al. 2022).

Format: w ~ q * scale, symmetric (zero point 0), q int8 in [-2^(b-1), 2^(b-1)-1] ([-8, 7] at 4
bits), scale fp32 [N, K / group_size], one per row and group of group_size consecutive inputs.
The scale is group absmax / (2^(b-1)-1), so +-absmax map to +-7 and RTN never clips; -8 is only
reached by GPTQ, whose error updates can push a weight past its group's absmax. q * scale
computed in fp32 is what ONNX DequantizeLinear (INT4, axis 1, block_size group_size) gives.
"""
from __future__ import annotations

import torch
from torch import Tensor


class Hessian:
    """The GPTQ Hessian of a linear layer, 2/n X^T X over the n calibration rows of its input."""

    def __init__(self, k: int):
        self.k, self.n = k, 0
        self.xtx: Tensor | None = None  # on the device of the first input (calibration's)

    def add(self, x: Tensor) -> None:
        x = x.detach().reshape(-1, self.k).double()
        if self.xtx is None:
            self.xtx = torch.zeros(self.k, self.k, dtype=torch.float64, device=x.device)
        self.xtx += x.T @ x
        self.n += x.shape[0]

    def matrix(self) -> Tensor:
        if self.n == 0:
            raise ValueError("Hessian: no calibration rows were added")
        return self.xtx * (2 / self.n)


def group_size_for(k: int, preferred: int = 128) -> int:
    """preferred if it divides k, else the largest power of two <= preferred dividing k."""
    g = preferred
    if k % g:
        g = 1 << (preferred.bit_length() - 1)
        while k % g:
            g //= 2
    if g < 16 or g % 2:
        raise ValueError(f"no usable 4-bit group size for {k} inputs: the best divisor is {g}, "
                         "groups need an even size >= 16; keep this layer at 8 bits")
    return g


def _range(bits: int) -> tuple[int, int]:
    if not 2 <= bits <= 8:
        raise ValueError(f"bits {bits}: must be 2..8 (q is stored as int8)")
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _scales(w: Tensor, group_size: int, qmax: int) -> Tensor:
    """fp32 absmax / qmax per row and group of w [N, g * group_size]; 1 for all-zero groups."""
    amax = w.double().abs().reshape(w.shape[0], -1, group_size).amax(-1)
    s = (amax / qmax).float()
    return torch.where(s > 0, s, torch.ones_like(s))


def _round(w: Tensor, s: Tensor, lo: int, hi: int) -> Tensor:
    return torch.clamp(torch.round(w.double() / s.double()), lo, hi).to(torch.int8)


def _check(w: Tensor, group_size: int) -> None:
    if w.dim() != 2 or w.shape[1] % group_size:
        raise ValueError(f"weight {tuple(w.shape)}: needs [N, K] with K a multiple of "
                         f"group_size {group_size}")


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """fp32 [N, K] weights of q [N, K] and scale [N, K / group_size]."""
    return q.float() * scale.float().repeat_interleave(q.shape[1] // scale.shape[1], 1)


def quantize_rtn(w: Tensor, bits: int = 4, group_size: int = 128) -> tuple[Tensor, Tensor]:
    _check(w, group_size)
    lo, hi = _range(bits)
    s = _scales(w, group_size, hi)
    return _round(w, s.repeat_interleave(group_size, 1), lo, hi), s


def gptq(w: Tensor, H: Tensor, bits: int = 4, group_size: int = 128, damp: float = 0.01,
         block: int = 128, act_order: bool = False) -> tuple[Tensor, Tensor]:
    """GPTQ of w [N, K] for the Hessian H [K, K] of its input; same format as quantize_rtn.

    Columns are quantized in order (act_order: by decreasing H diagonal), each one's rounding
    error spread over the columns not yet quantized through the Cholesky factor of H^-1, in
    fp64 throughout. A group's scales come from the error-updated weights when its first column
    is reached; with act_order a group's columns are scattered, so its scales come from the
    original weights (GPTQ's static groups) and the groups stay contiguous in the stored layout.
    """
    _check(w, group_size)
    lo, hi = _range(bits)
    N, K = w.shape
    if H.shape != (K, K):
        raise ValueError(f"Hessian {tuple(H.shape)} does not match weight {tuple(w.shape)}")
    W = w.detach().to("cpu", torch.float64).clone()
    H = H.detach().to("cpu", torch.float64).clone()
    # an input never seen in calibration decouples from the rest: its weights are just rounded
    dead = H.diagonal() == 0
    H[dead, dead] = 1
    H.diagonal().add_(damp * H.diagonal().mean())
    order = torch.argsort(H.diagonal(), descending=True, stable=True) if act_order \
        else torch.arange(K)
    W, H = W[:, order], H[order][:, order]
    try:
        U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except torch.linalg.LinAlgError:
        raise ValueError("GPTQ: the Hessian is not positive definite even after dampening; "
                         "raise damp or calibrate on more data") from None

    scale = _scales(w, group_size, hi) if act_order else torch.empty(N, K // group_size)
    group = order // group_size
    q = torch.empty(N, K, dtype=torch.int8)
    # blocks hold whole groups, so a group's scale sees every earlier column's error update
    block = max(block // group_size, 1) * group_size
    for i1 in range(0, K, block):
        i2 = min(i1 + block, K)
        W1, U1 = W[:, i1:i2], U[i1:i2, i1:i2]
        err = torch.empty(N, i2 - i1, dtype=torch.float64)
        for i in range(i2 - i1):
            c = i1 + i
            if not act_order and c % group_size == 0:
                scale[:, c // group_size] = _scales(W1[:, i:i + group_size], group_size, hi)[:, 0]
            s = scale[:, group[c]]
            q[:, c] = _round(W1[:, i], s, lo, hi)
            e = (W1[:, i] - (q[:, c].float() * s).double()) / U1[i, i]
            W1[:, i:] -= e[:, None] * U1[i, i:]
            err[:, i] = e
        W[:, i2:] -= err @ U[i1:i2, i2:]  # the block's errors reach later columns at once
    return q[:, torch.argsort(order)], scale
