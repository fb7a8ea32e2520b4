"""Cases and checks shared by the CUDA kernel tests: the real kernels on a GPU
(test_cuda_kernels.py) and their per-thread code run on the CPU (test_cuda_build.py).

`mem` moves arrays to where the kernel reads them: put(array) -> pointer, empty(shape, dtype) ->
pointer, get(pointer) -> array, sync().
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgeq.ops import reference
from edgeq.runtime.cuda_kernels import symbol
from edgeq.ops.table import CAUSAL_CONV1D, SELECTIVE_SCAN


@dataclass(frozen=True)
class Scan:
    batch: int
    L: int
    dim: int
    heads: int = 0  # 0: Mamba-1, one head per channel
    groups: int = 1
    N: int = 16
    gate: bool = True
    softplus: int = 1
    dtype: str = "float32"
    inplace: bool = False  # state_out is the state buffer

    def __str__(self):
        return (f"b{self.batch}-L{self.L}-d{self.dim}-h{self.heads or self.dim}-g{self.groups}"
                f"-n{self.N}{'' if self.gate else '-nogate'}{'' if self.softplus else '-nosp'}"
                f"-{self.dtype}{'-inplace' if self.inplace else ''}")


@dataclass(frozen=True)
class Conv:
    batch: int
    L: int
    C: int
    W: int = 4
    activation: int = 1
    dtype: str = "float32"
    inplace: bool = False

    def __str__(self):
        return (f"b{self.batch}-L{self.L}-c{self.C}-w{self.W}-act{self.activation}-{self.dtype}"
                f"{'-inplace' if self.inplace else ''}")


MAMBA_130M, MAMBA_2_8B = 1536, 5120  # d_inner

# small enough for the CPU emulation in CI; they cover every code path
SCAN_SMALL = [
    Scan(1, 1, MAMBA_130M), Scan(2, 7, MAMBA_130M), Scan(3, 40, 96, gate=False),
    Scan(2, 9, 70, N=5, softplus=0), Scan(2, 6, 64, heads=4, groups=2, N=64),
    Scan(1, 5, 32, heads=32, N=128), Scan(1, 4, 16, heads=2, N=256),
    Scan(2, 300, 64, dtype="float16"), Scan(2, 5, 64, heads=8, groups=4, N=32, dtype="float16"),
    Scan(3, 1, 64, inplace=True), Scan(2, 11, 64, dtype="float16", inplace=True),
]
CONV_SMALL = [
    Conv(1, 1, MAMBA_130M), Conv(2, 7, MAMBA_130M), Conv(3, 2, 100, W=5), Conv(2, 40, 70, W=2),
    Conv(2, 9, 33, W=32, activation=0), Conv(2, 300, 64, dtype="float16"),
    Conv(3, 1, 64, inplace=True), Conv(2, 2, 64, W=7, dtype="float16", inplace=True),
]
# the model sizes, decode and prefill, up to batch 64
SCAN_GPU = SCAN_SMALL + [
    Scan(b, L, d) for d in (MAMBA_130M, MAMBA_2_8B)
    for b, L in ((1, 1), (64, 1), (1, 7), (64, 7), (1, 1000), (4, 1000), (1, 2100))
] + [Scan(64, 1, MAMBA_2_8B, dtype="float16", inplace=True),
     Scan(1, 2100, MAMBA_130M, dtype="float16"), Scan(64, 7, MAMBA_130M, dtype="float16"),
     Scan(2, 1000, 2048, heads=32, N=128)]
CONV_GPU = CONV_SMALL + [
    Conv(b, L, c) for c in (MAMBA_130M, MAMBA_2_8B)
    for b, L in ((1, 1), (64, 1), (1, 7), (64, 7), (1, 1000), (16, 1000), (1, 2100), (8, 2100))
] + [Conv(64, 1, MAMBA_2_8B, dtype="float16", inplace=True),
     Conv(1, 2100, MAMBA_130M, dtype="float16")]


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.numpy())


def _check(name, got: np.ndarray, want: torch.Tensor, half: bool):
    got, want = torch.from_numpy(got).float(), want.float()
    scale = want.abs().max().item() + 1e-6
    # fp32: both sides compute in fp32, in different orders. fp16: the fp32 results round to
    # fp16 once, so they may differ by one fp16 ulp (2^-10 relative)
    rtol, atol = (2e-3, 1e-3 * scale) if half else (1e-4, 1e-5 * scale)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


def scan_inputs(c: Scan, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    H = c.heads or c.dim
    act = getattr(torch, c.dtype)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    if c.softplus:  # dt = softplus(delta + bias) around 0.01..0.1, a few above the threshold 20
        delta, bias = r(c.batch, c.L, H) * 0.5, -3.0 + r(H)
        delta.view(-1)[::97] = 25.0
    else:  # dt = delta + bias itself, kept positive
        delta, bias = torch.rand(c.batch, c.L, H, generator=g) * 0.1, torch.full((H,), 0.01)
    A = -torch.arange(1, c.N + 1).float().repeat(H, 1) * torch.exp(0.3 * r(H, c.N))
    return dict(u=r(c.batch, c.L, c.dim).to(act), delta=delta.to(act), A=A,
                B=r(c.batch, c.L, c.groups, c.N).to(act), C=r(c.batch, c.L, c.groups, c.N).to(act),
                D=r(c.dim), delta_bias=bias, state=r(c.batch, c.dim, c.N) * 0.5,
                z=r(c.batch, c.L, c.dim).to(act) if c.gate else None)


def scan_reference(c: Scan, x: dict):
    # in chunks over time (the reference materialises [batch, L, dim, N] tensors)
    chunk = max(1, 2_000_000 // (c.batch * c.dim * c.N))
    state, ys = x["state"], []
    for t in range(0, c.L, chunk):
        part = lambda k: None if x[k] is None else x[k][:, t:t + chunk]  # noqa: E731
        y, state = reference.selective_scan(part("u"), part("delta"), x["A"], part("B"), part("C"),
                                            x["D"], x["delta_bias"], state, part("z"), c.softplus)
        ys.append(y)
    return torch.cat(ys, 1), state


def run_scan(lib, mem, c: Scan, prefix: str = ""):
    x = scan_inputs(c)
    p = {k: None if v is None else mem.put(_np(v)) for k, v in x.items()}
    y = mem.empty((c.batch, c.L, c.dim), c.dtype)
    state_out = p["state"] if c.inplace else mem.empty((c.batch, c.dim, c.N), "float32")
    rc = getattr(lib, prefix + symbol(SELECTIVE_SCAN, c.dtype))(
        p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["delta_bias"], p["state"], p["z"],
        y, state_out, c.batch, c.L, c.dim, c.heads or c.dim, c.groups, c.N, c.softplus, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    want_y, want_state = scan_reference(c, x)
    half = c.dtype == "float16"
    _check("y", mem.get(y), want_y, half)
    _check("state_out", mem.get(state_out), want_state, half)


def conv_inputs(c: Conv, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    act = getattr(torch, c.dtype)
    r = lambda *s: torch.randn(*s, generator=g).to(act)  # noqa: E731
    return dict(x=r(c.batch, c.L, c.C), weight=r(c.C, c.W) * 0.5, bias=r(c.C) * 0.1,
                state=r(c.batch, c.W - 1, c.C))


def run_conv(lib, mem, c: Conv, prefix: str = ""):
    x = conv_inputs(c)
    p = {k: mem.put(_np(v)) for k, v in x.items()}
    y = mem.empty((c.batch, c.L, c.C), c.dtype)
    state_out = p["state"] if c.inplace else mem.empty((c.batch, c.W - 1, c.C), c.dtype)
    rc = getattr(lib, prefix + symbol(CAUSAL_CONV1D, c.dtype))(
        p["x"], p["weight"], p["bias"], p["state"], y, state_out, c.batch, c.L, c.C, c.W,
        c.activation, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    want_y, want_state = reference.causal_conv1d(**x, activation=c.activation)
    _check("y", mem.get(y), want_y, c.dtype == "float16")
    # the state is a copy of inputs: exact
    assert np.array_equal(mem.get(state_out), _np(want_state)), "state_out"


class HostMem:
    """Host arrays behind raw pointers, for the CPU emulation."""

    def __init__(self):
        self.arrays = {}

    def put(self, a: np.ndarray) -> int:
        a = np.array(a, copy=True)
        self.arrays[a.ctypes.data] = a
        return a.ctypes.data

    def empty(self, shape, dtype) -> int:
        return self.put(np.full(shape, np.nan, dtype=dtype))

    def get(self, ptr: int) -> np.ndarray:
        return self.arrays[ptr].copy()

    def sync(self):
        pass
