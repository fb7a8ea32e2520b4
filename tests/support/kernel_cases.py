"""The kernel cases and their checks against edgeq.ops.reference, one list for every backend
that runs the kernels' C ABI (backends.py, test_backend_ops.py): the torch custom ops, the CPU
library, the CUDA kernels' per-thread code on the CPU, the real kernels on a GPU (also in a CUDA
graph), and the TensorRT plugins over either.

`mem` moves arrays to where the kernel reads them: put(array) -> pointer, empty(shape, dtype) ->
pointer, get(pointer) -> array, describe(pointer) -> (shape, dtype), sync(). HostMem holds them
in host memory, DeviceMem on the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from edgeq.ops import int4, reference
from edgeq.gpu import check
from edgeq.runtime.cuda_kernels import max_scan_parts, ssd_chunked, symbol
from edgeq.runtime.kernels import Scales
from edgeq.ops.table import (ADD_RMSNORM_INT8, CAUSAL_CONV1D, CAUSAL_CONV1D_INT8, EMBEDDING_W4,
                             HADAMARD_INT8, LINEAR_W4A8, SELECTIVE_SCAN, SELECTIVE_SCAN_INT8, SSD_SCAN,
                             SSD_SCAN_INT8)


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
    dtype: str = "float32"  # or float16, or int8 (EdgeqSelectiveScanInt8: fp32 y, gate required)
    inplace: bool = False  # state_out is the state buffer
    max_parts: int = 0  # EDGEQ_SCAN_MAX_PARTS for the call (1: prompts on the sequential kernel)

    def __str__(self):
        return (f"b{self.batch}-L{self.L}-d{self.dim}-h{self.heads or self.dim}-g{self.groups}"
                f"-n{self.N}{'' if self.gate else '-nogate'}{'' if self.softplus else '-nosp'}"
                f"-{self.dtype}{'-inplace' if self.inplace else ''}"
                f"{f'-maxparts{self.max_parts}' if self.max_parts else ''}")


@dataclass(frozen=True)
class Ssd:  # EdgeqSSDScan: dim = heads * P
    batch: int
    L: int
    heads: int
    P: int
    groups: int = 1
    N: int = 128  # Mamba-2's
    softplus: int = 1
    chunk: int = 64  # the reference's chunk length (the CUDA kernel ignores it)
    dtype: str = "float32"  # or float16, or int8 (EdgeqSSDScanInt8: fp32 y)
    inplace: bool = False  # state_out is the state buffer
    per_channel: bool = False  # int8: x per channel, dt per head, B and C per group
    max_parts: int = 0  # as Scan's
    chunked: bool = True  # False: prompts off the tensor-core kernel (EDGEQ_SSD_CHUNKED=0)

    def __str__(self):
        return (f"b{self.batch}-L{self.L}-h{self.heads}-p{self.P}-g{self.groups}-n{self.N}"
                f"-c{self.chunk}{'' if self.softplus else '-nosp'}-{self.dtype}"
                f"{'-inplace' if self.inplace else ''}{'-perchannel' if self.per_channel else ''}"
                f"{f'-maxparts{self.max_parts}' if self.max_parts else ''}"
                f"{'' if self.chunked else '-unchunked'}")


@dataclass(frozen=True)
class Conv:
    batch: int
    L: int
    C: int
    W: int = 4
    activation: int = 1
    dtype: str = "float32"  # or float16, or int8 (EdgeqCausalConv1dInt8)
    inplace: bool = False
    per_channel: bool = False  # int8: x, weight and y scales one per channel

    def __str__(self):
        return (f"b{self.batch}-L{self.L}-c{self.C}-w{self.W}-act{self.activation}-{self.dtype}"
                f"{'-inplace' if self.inplace else ''}{'-perchannel' if self.per_channel else ''}")


@dataclass(frozen=True)
class Hadamard:  # EdgeqHadamardInt8 over rows (batch x L) of n
    rows: int
    n: int

    def __str__(self):
        return f"r{self.rows}-n{self.n}"


@dataclass(frozen=True)
class Norm:  # EdgeqAddRMSNormInt8 over rows of d
    rows: int
    d: int
    inplace: bool = False  # residual_out is the residual buffer

    def __str__(self):
        return f"r{self.rows}-d{self.d}{'-inplace' if self.inplace else ''}"


@dataclass(frozen=True)
class W4A8:  # EdgeqLinearW4A8: rows tokens of K times N output channels
    rows: int
    K: int
    N: int
    group_size: int = 128

    def __str__(self):
        return f"m{self.rows}-k{self.K}-n{self.N}-g{self.group_size}"


@dataclass(frozen=True)
class Embed:  # EdgeqEmbeddingW4: ids [batch, L] rows of a [vocab, d] table
    batch: int
    L: int
    vocab: int
    d: int
    group_size: int = 128

    def __str__(self):
        return f"b{self.batch}-l{self.L}-v{self.vocab}-d{self.d}-g{self.group_size}"


MAMBA_130M, MAMBA_2_8B = 1536, 5120  # d_inner
MAMBA_130M_MODEL, MAMBA_2_8B_MODEL = 768, 2560  # d_model: the add + RMSNorm's width
MAMBA2_130M_HEADS, MAMBA2_2_7B_HEADS = 24, 80  # Mamba-2: headdim 64, d_inner 1536 and 5120

# small enough for the CPU emulation in CI; they cover every code path
SCAN_SMALL = [
    Scan(1, 1, MAMBA_130M), Scan(2, 7, MAMBA_130M), Scan(3, 40, 96, gate=False),
    Scan(2, 9, 70, N=5, softplus=0), Scan(2, 6, 64, heads=4, groups=2, N=64),
    Scan(1, 5, 32, heads=32, N=128), Scan(1, 4, 16, heads=2, N=256),
    Scan(1, 300, 16, dtype="float16"), Scan(2, 5, 64, heads=8, groups=4, N=32, dtype="float16"),
    Scan(3, 1, 64, inplace=True), Scan(2, 11, 64, dtype="float16", inplace=True),
    Scan(1, 1, MAMBA_130M, dtype="int8"), Scan(2, 7, 64, heads=8, groups=4, N=32, dtype="int8"),
    Scan(2, 9, 70, N=5, softplus=0, dtype="int8"), Scan(3, 40, 64, dtype="int8", inplace=True),
    # decode (L = 1) with 2 to 32 threads per channel (16-byte parts), a part's second turn
    # (N = 256), blocks past the last channel, and dstate that the decode kernel leaves to the scan
    Scan(2, 1, 70, N=32, dtype="float16"), Scan(2, 1, 16, heads=2, N=256),
    Scan(2, 1, 64, heads=8, groups=4, N=32, dtype="int8"), Scan(2, 1, 33, N=5),
    Scan(1, 1, 40, N=24, softplus=0, gate=False),
    # prompts with dstate >= 32 split too (above: 32 to 256, 2 to 16 threads per channel); the
    # sequential kernel keeps dstate that is not 4 times a power of two
    Scan(2, 5, 32, heads=4, N=48), Scan(1, 4, 16, heads=2, N=100, dtype="float16"),
    # prompts cut over 4 to 32 lanes per channel (the emulation's wave is the Orin Nano's: 8 SMs
    # x 512 threads; above, L = 40 and 300 take 4 and 16 lanes): a part of the last block, a
    # part of the last chunk; the cap, and the sequential kernel on a long prompt
    Scan(1, 600, 37, N=5), Scan(2, 100, 30, dtype="int8", inplace=True),
    Scan(2, 200, 50, dtype="float16", max_parts=2), Scan(1, 300, 64, max_parts=1),
] + [  # the CPU kernels' first cases (b, L, D, H, G, N): Mamba-1 (H = D), heads; gated or not
    Scan(b, L, D, heads=0 if H == D else H, groups=G, N=N, gate=gate)
    for b, L, D, H, G, N in ((2, 7, 96, 96, 1, 16), (1, 1, 64, 64, 1, 16), (3, 33, 48, 48, 1, 4),
                             (2, 5, 64, 8, 2, 8), (1, 1, 32, 4, 4, 16), (2, 64, 1536, 1536, 1, 16))
    for gate in (True, False)]
SSD_SMALL = [
    Ssd(1, 1, MAMBA2_130M_HEADS, 64), Ssd(2, 7, 4, 8, N=16, chunk=4),
    Ssd(2, 33, 6, 5, groups=3, N=4, chunk=8), Ssd(1, 64, 4, 16, N=32, chunk=16, softplus=0),
    Ssd(2, 20, 2, 3, groups=2, N=256, chunk=256), Ssd(1, 300, 1, 16, N=16),
    Ssd(2, 9, 4, 16, groups=2, N=64, dtype="float16"), Ssd(3, 1, 8, 8, N=16, inplace=True),
    Ssd(2, 11, 4, 16, dtype="float16", inplace=True),
    Ssd(1, 1, MAMBA2_130M_HEADS, 64, dtype="int8", per_channel=True),
    Ssd(2, 7, 4, 8, N=16, chunk=4, dtype="int8"),
    Ssd(2, 33, 6, 5, groups=3, N=4, chunk=8, dtype="int8", per_channel=True),
    Ssd(1, 64, 4, 16, groups=2, N=32, chunk=16, softplus=0, dtype="int8", per_channel=True),
    Ssd(3, 1, 8, 8, groups=2, N=16, dtype="int8", per_channel=True, inplace=True),
    Ssd(2, 1, 6, 5, groups=3, N=64, dtype="float16"), Ssd(2, 1, 4, 3, groups=2, N=4),
    Ssd(2, 1, 4, 16, groups=2, N=128, dtype="int8", per_channel=True),
    Ssd(1, 130, 2, 8, N=16, dtype="int8", per_channel=True),  # 16 lanes per channel
    Ssd(2, 9, 4, 16, groups=2, N=128, dtype="int8", per_channel=True),  # 8 threads per channel
    Ssd(2, 6, 2, 8, N=200, chunk=4),  # the sequential kernel (NMAX 256)
    Ssd(2, 9, 4, 16, groups=2, N=64, dtype="float16", max_parts=2),  # ... NMAX 64, by the cap
    # prompts of two chunks and more on tensor cores: fp16 and int8, a chunk's part, heads of
    # 16 to 64 channels, dstate 16 to 128, groups, in place
    Ssd(1, 150, 2, 64, dtype="float16"), Ssd(2, 128, 4, 16, groups=2, N=32, dtype="int8"),
    Ssd(1, 200, 4, 32, groups=2, N=64, dtype="int8", per_channel=True, inplace=True),
    Ssd(2, 130, 2, 48, N=16, dtype="float16", inplace=True),
    Ssd(1, 128, 2, 16, N=32, dtype="int8", chunked=False),  # the split-state kernel instead
]
CONV_SMALL = [
    Conv(1, 1, MAMBA_130M), Conv(2, 7, MAMBA_130M), Conv(3, 2, 100, W=5), Conv(2, 40, 70, W=2),
    Conv(2, 9, 33, W=32, activation=0), Conv(2, 300, 64, dtype="float16"),
    Conv(3, 1, 64, inplace=True), Conv(2, 2, 64, W=7, dtype="float16", inplace=True),
    Conv(1, 1, MAMBA_130M, dtype="int8"), Conv(2, 9, 33, W=32, activation=0, dtype="int8"),
    Conv(2, 40, 70, W=3, dtype="int8", inplace=True),
    Conv(2, 7, MAMBA_130M, dtype="int8", per_channel=True),
    Conv(2, 9, 33, W=32, activation=0, dtype="int8", per_channel=True, inplace=True),
] + [Conv(b, L, C, W=W, activation=act)  # the CPU kernels' first cases
     for b, L, C, W in ((2, 7, 96, 4), (1, 1, 64, 4), (3, 2, 40, 3), (1, 5, 16, 2),
                        (2, 100, 1536, 4))
     for act in (0, 1)]
# every K (1, 12, 20, 28), M = 1, and the Mamba widths
# fewer rows than SMs split a row over blocks (the emulation: the Orin Nano's 8): 8192 by 8 parts
# (Mamba2-8B's d_inner), 5120 and 1536 by 4, 2560 by 8 uneven ones, 4096 in place
HADAMARD_SMALL = [Hadamard(3, 64), Hadamard(2, 96), Hadamard(2, 320), Hadamard(2, 448),
                  Hadamard(2, 12), Hadamard(1, 28), Hadamard(2, MAMBA_130M), Hadamard(1, 5120),
                  Hadamard(1, 8192)]
NORM_SMALL = [Norm(1, MAMBA_130M_MODEL), Norm(3, 96, inplace=True), Norm(2, 7),
              Norm(2, MAMBA_2_8B), Norm(1, 2600), Norm(1, 4096, inplace=True)]
# The GEMV: 16-byte chunks (group_size % 32 == 0) and single bytes; one token, a pass of 8;
# rows longer than a warp's 32 chunks; N not a multiple of a block's 4 warps; prompts whose
# groups are not whole 64-channel k steps. The tiled kernel (more than 8 tokens, group_size % 64
# == 0): one k step per group and two; part of a token tile (128) and of a channel tile (64);
# two token tiles and a third channel tile.
W4A8_SMALL = [W4A8(1, 384, 96), W4A8(7, 384, 33), W4A8(1, 4096, 6, 32), W4A8(3, 96, 5, 6),
              W4A8(9, 100, 7, 2), W4A8(2, 1536, 8, 512), W4A8(12, 256, 10, 32),
              W4A8(9, 128, 8), W4A8(11, 192, 17, 64), W4A8(70, 384, 96),
              W4A8(200, 256, 136, 64)]
# decode and prefill; groups of 2 and of a whole row; ids outside the table (rows of zeros)
EMBED_SMALL = [Embed(1, 1, 50, 768), Embed(2, 7, 301, 256, 64), Embed(3, 5, 9, 6, 2),
               Embed(1, 40, 1000, 128, 128)]
# the model sizes, decode and prefill, up to batch 64, in fp32, fp16 and int8
MODEL_SHAPES = ((1, 1), (64, 1), (1, 7), (64, 7), (1, 1000), (4, 1000), (1, 2100))


def _in_each_dtype(cases: list) -> list:
    return [replace(c, dtype=t) for c in cases for t in ("float32", "float16", "int8")]


def _once(cases: list) -> list:  # the small cases include some model sizes
    return list(dict.fromkeys(cases))


SCAN_GPU = _once(SCAN_SMALL + _in_each_dtype(
    [Scan(b, L, d) for d in (MAMBA_130M, MAMBA_2_8B) for b, L in MODEL_SHAPES]) + [
    Scan(64, 1, MAMBA_2_8B, dtype="float16", inplace=True),
    Scan(64, 1, MAMBA_2_8B, dtype="int8", inplace=True), Scan(2, 1000, 2048, heads=32, N=128),
    # long prompts on the sequential kernel too
    Scan(1, 2100, MAMBA_130M, max_parts=1), Scan(4, 1000, MAMBA_2_8B, dtype="int8", max_parts=1),
    Scan(1, 1000, MAMBA_130M, dtype="float16", max_parts=4)])
SSD_GPU = _once(SSD_SMALL + _in_each_dtype(
    [Ssd(b, L, h, 64) for h in (MAMBA2_130M_HEADS, MAMBA2_2_7B_HEADS) for b, L in MODEL_SHAPES]) + [
    Ssd(b, L, h, 64, groups=g, dtype="int8", per_channel=True)
    for h, g in ((MAMBA2_130M_HEADS, 1), (MAMBA2_2_7B_HEADS, 8)) for b, L in MODEL_SHAPES] + [
    Ssd(64, 1, MAMBA2_2_7B_HEADS, 64, dtype="float16", inplace=True),
    Ssd(64, 1, MAMBA2_2_7B_HEADS, 64, groups=8, dtype="int8", per_channel=True, inplace=True),
    # long prompts on the split-state and sequential kernels too
    Ssd(1, 1000, MAMBA2_130M_HEADS, 64, dtype="float16", chunked=False),
    Ssd(4, 1000, MAMBA2_2_7B_HEADS, 64, groups=8, dtype="int8", per_channel=True, chunked=False),
    Ssd(1, 1000, MAMBA2_130M_HEADS, 64, max_parts=1),
    Ssd(1, 1000, MAMBA2_2_7B_HEADS, 64, groups=8, dtype="int8", per_channel=True, max_parts=1)])
CONV_GPU = _once(CONV_SMALL + _in_each_dtype(
    [Conv(b, L, c) for c in (MAMBA_130M, MAMBA_2_8B)
     for b, L in MODEL_SHAPES + ((16, 1000), (8, 2100))]) + [
    Conv(64, 1, MAMBA_2_8B, dtype="float16", inplace=True),
    Conv(64, 1, MAMBA_2_8B, dtype="int8", inplace=True),
    Conv(4, 1000, MAMBA_2_8B, dtype="int8", per_channel=True)])
ROWS = (1, 7, 64, 64 * 7, 1000, 2100, 4 * 1000)  # batch x L: decode, short and long prefill
HADAMARD_GPU = HADAMARD_SMALL + [Hadamard(r, n) for n in (1536, 3072, 5120) for r in ROWS]
NORM_GPU = NORM_SMALL + [Norm(r, d) for d in (MAMBA_130M_MODEL, MAMBA_2_8B_MODEL, MAMBA_130M,
                                              MAMBA_2_8B) for r in ROWS] + [
    Norm(64, MAMBA_2_8B_MODEL, inplace=True)]
# Mamba-2 in_proj and out_proj (K, N): 130m, 2.7B and Quamba2's 8B
W4A8_LAYERS = ((768, 3352), (1536, 768), (2560, 10576), (5120, 2560), (4096, 18560), (8192, 4096))
EMBED_GPU = EMBED_SMALL + [Embed(b, L, 50280, d) for d in (768, 2560, 4096)
                           for b, L in ((1, 1), (64, 1), (1, 2100))]
W4A8_GPU = W4A8_SMALL + [W4A8(r, K, N) for K, N in W4A8_LAYERS for r in (1, 7, 64, 1000, 2100)]


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.numpy())


@dataclass(frozen=True)
class Tolerance:
    """How close a backend's outputs must be to the reference's. fp32 and fp16: (rtol, atol as a
    fraction of the largest reference value); int8: one value in `int8_one_step_off_per` may be
    one step off (none further)."""
    fp32: tuple[float, float] = (1e-4, 1e-5)  # both sides compute in fp32, in different orders
    fp16: tuple[float, float] = (2e-3, 1e-3)  # fp32 results round to fp16 once: one ulp, 2^-10
    int8_one_step_off_per: int = 1000


# docs/ops.md: GPU kernels may use fp32 intrinsics, so an int8 value within rounding error of a
# half step may land one step off; that is rare (about 1e-4 of the values), allow 1e-3
TOLERANCE = Tolerance()


def _check(name, got: np.ndarray, want: torch.Tensor, half: bool, tol: Tolerance = TOLERANCE):
    got, want = torch.from_numpy(got).float(), want.float()
    scale = want.abs().max().item() + 1e-6
    rtol, atol = tol.fp16 if half else tol.fp32
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale,
                               msg=lambda m: f"{name}: {m}")


def _check_int8(name, got: np.ndarray, want: torch.Tensor, tol: Tolerance = TOLERANCE):
    assert got.dtype == np.int8 and got.shape == tuple(want.shape), name
    diff = np.abs(got.astype(np.int32) - want.numpy().astype(np.int32))
    assert diff.max() <= 1 and (diff > 0).sum() <= max(1, diff.size // tol.int8_one_step_off_per), \
        f"{name}: {(diff > 0).sum()} of {diff.size} differ, by up to {diff.max()}"


def _scale(*ts: torch.Tensor) -> float:
    """A per-tensor scale as calibration picks it: max |x| over 127, as fp32."""
    return reference.f32(max(t.abs().max().item() for t in ts) / 127 + 1e-12)


def _channel_scale(t: torch.Tensor, axis: int) -> np.ndarray:
    """Per-channel scales along `axis`: max |x| over the other axes, over 127, as fp32."""
    others = tuple(i for i in range(t.ndim) if i != axis % t.ndim)
    return (t.abs().amax(others) / 127 + 1e-12).numpy().astype(np.float32)


def _scales_arg(mem, scales) -> Scales:
    """A scale attribute for a kernel: its fp32 values where the kernel reads them."""
    a = np.array(scales, np.float32).reshape(-1)
    return Scales(mem.put(a), a.size)


def _quantized(x: dict, scales: dict, axes: dict) -> tuple[dict, dict]:
    """The inputs named in `scales` as int8 (scales along axes[k], default the last), and what
    an int8 op computes on: the inputs with those dequantized."""
    q = {k: reference.quantize(v, scales[k], axes.get(k, -1)) if k in scales else v
         for k, v in x.items()}
    return q, {k: reference.dequantize(v, scales[k], axes.get(k, -1)) if k in scales else v
               for k, v in q.items()}


def _time_steps(g, c, H: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A scan's time step input [batch, L, H] and its bias [H]: with softplus, softplus(dt +
    bias) around 0.01..0.1 and a few above the threshold 20; without, dt + bias kept positive."""
    if c.softplus:
        dt = torch.randn(c.batch, c.L, H, generator=g) * 0.5
        bias = -3.0 + torch.randn(H, generator=g)
        dt.view(-1)[::97] = 25.0
        return dt, bias
    return torch.rand(c.batch, c.L, H, generator=g) * 0.1, torch.full((H,), 0.01)


def scan_inputs(c: Scan, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    H = c.heads or c.dim
    act = torch.float32 if c.dtype == "int8" else getattr(torch, c.dtype)  # quantized by run_scan
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    delta, bias = _time_steps(g, c, H)
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


def run_scan(lib, mem, c: Scan, prefix: str = "", x: dict | None = None,
             tol: Tolerance = TOLERANCE):
    """Check the scan kernels of `lib` on case c (inputs x, default scan_inputs(c))."""
    x = scan_inputs(c) if x is None else x
    scales, want_x, int8 = {}, x, c.dtype == "int8"
    if int8:  # EdgeqSelectiveScanInt8 is the fp scan of the dequantized inputs
        scales = {k: _scale(x[k]) for k in ("u", "delta", "B", "C", "z")}
        x, want_x = _quantized(x, scales, {})
    p = {k: None if v is None else mem.put(_np(v)) for k, v in x.items()}
    y = mem.empty((c.batch, c.L, c.dim), "float32" if int8 else c.dtype)
    state_out = p["state"] if c.inplace else mem.empty((c.batch, c.dim, c.N), "float32")
    with max_scan_parts(c.max_parts):
        rc = getattr(lib, prefix + symbol(SELECTIVE_SCAN_INT8 if int8 else SELECTIVE_SCAN,
                                          c.dtype))(
            p["u"], p["delta"], p["A"], p["B"], p["C"], p["D"], p["delta_bias"], p["state"],
            p["z"], y, state_out, c.batch, c.L, c.dim, c.heads or c.dim, c.groups, c.N,
            *scales.values(), c.softplus, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    want_y, want_state = scan_reference(c, want_x)
    half = c.dtype == "float16"
    _check("y", mem.get(y), want_y, half, tol)
    _check("state_out", mem.get(state_out), want_state, half, tol)


def ssd_inputs(c: Ssd, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    act = torch.float32 if c.dtype == "int8" else getattr(torch, c.dtype)  # quantized by run_ssd
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    dt, bias = _time_steps(g, c, c.heads)
    A = -(1 + 15 * torch.rand(c.heads, generator=g))  # Mamba-2's A_init_range (1, 16)
    dim = c.heads * c.P
    return dict(x=r(c.batch, c.L, dim).to(act), dt=dt.to(act), A=A,
                B=r(c.batch, c.L, c.groups, c.N).to(act), C=r(c.batch, c.L, c.groups, c.N).to(act),
                D=r(c.heads), dt_bias=bias, state=r(c.batch, dim, c.N) * 0.5)


def run_ssd(lib, mem, c: Ssd, prefix: str = "", x: dict | None = None,
            tol: Tolerance = TOLERANCE):
    x = ssd_inputs(c) if x is None else x
    axes, scales, int8 = {"x": -1, "dt": -1, "B": -2, "C": -2}, {}, c.dtype == "int8"
    dim = c.heads * c.P
    if int8:  # EdgeqSSDScanInt8 is the fp scan of the dequantized inputs; an fp16 state
        scales = {k: _channel_scale(x[k], ax) if c.per_channel else _scale(x[k])
                  for k, ax in axes.items()}
        x = dict(_quantized(x, scales, axes)[0], state=x["state"].half())
    p = {k: mem.put(_np(v)) for k, v in x.items()}
    y = mem.empty((c.batch, c.L, dim), "float32" if int8 else c.dtype)
    state_out = p["state"] if c.inplace else mem.empty((c.batch, dim, c.N), _np(x["state"]).dtype)
    with max_scan_parts(c.max_parts), ssd_chunked(c.chunked):
        rc = getattr(lib, prefix + symbol(SSD_SCAN_INT8 if int8 else SSD_SCAN, c.dtype))(
            *[p[k] for k in x], y, state_out, c.batch, c.L, dim, c.heads, c.groups, c.N,
            *[_scales_arg(mem, s) for s in scales.values()], c.softplus, c.chunk, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    # the chunked reference: the kernels differ from it by fp32 rounding only
    ref = reference.ssd_scan_int8 if int8 else reference.ssd_scan
    want_y, want_state = ref(**x, **{f"{k}_scale": v for k, v in scales.items()},
                             dt_softplus=bool(c.softplus), chunk_size=c.chunk)
    half = c.dtype == "float16"
    _check("y", mem.get(y), want_y, half, tol)
    _check("state_out", mem.get(state_out), want_state, half or int8, tol)


def conv_inputs(c: Conv, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    act = torch.float32 if c.dtype == "int8" else getattr(torch, c.dtype)  # quantized by run_conv
    r = lambda *s: torch.randn(*s, generator=g).to(act)  # noqa: E731
    return dict(x=r(c.batch, c.L, c.C), weight=r(c.C, c.W) * 0.5, bias=r(c.C) * 0.1,
                state=r(c.batch, c.W - 1, c.C))


def run_conv(lib, mem, c: Conv, prefix: str = "", tol: Tolerance = TOLERANCE):
    x = conv_inputs(c)
    scales, int8 = [], c.dtype == "int8"
    if int8:  # the state holds past inputs: x's scale; y's scale saturates a few outputs
        scales = [_scale(x["x"], x["state"]), _scale(x["weight"]), 0.02]
        if c.per_channel:
            spread = np.exp(0.3 * np.random.default_rng(0).standard_normal(c.C))
            scales = [_channel_scale(torch.cat([x["x"], x["state"]], 1), -1),
                      _channel_scale(x["weight"], 0), (0.02 * spread).astype(np.float32)]
        x = dict(x=reference.quantize(x["x"], scales[0]),
                 weight=reference.quantize(x["weight"], scales[1], axis=-2), bias=x["bias"],
                 state=reference.quantize(x["state"], scales[0]))
    p = {k: mem.put(_np(v)) for k, v in x.items()}
    y = mem.empty((c.batch, c.L, c.C), c.dtype)
    state_out = p["state"] if c.inplace else mem.empty((c.batch, c.W - 1, c.C), c.dtype)
    rc = getattr(lib, prefix + symbol(CAUSAL_CONV1D_INT8 if int8 else CAUSAL_CONV1D, c.dtype))(
        p["x"], p["weight"], p["bias"], p["state"], y, state_out, c.batch, c.L, c.C, c.W,
        *[_scales_arg(mem, s) for s in scales], c.activation, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    if int8:
        want_y, want_state = reference.causal_conv1d_int8(**x, x_scale=scales[0],
                                                          weight_scale=scales[1],
                                                          y_scale=scales[2],
                                                          activation=c.activation)
        _check_int8("y", mem.get(y), want_y, tol)
    else:
        want_y, want_state = reference.causal_conv1d(**x, activation=c.activation)
        _check("y", mem.get(y), want_y, c.dtype == "float16", tol)
    # the state is a copy of inputs: exact
    assert np.array_equal(mem.get(state_out), _np(want_state)), "state_out"


def run_hadamard(lib, mem, c: Hadamard, prefix: str = "", tol: Tolerance = TOLERANCE):
    x = torch.randn(c.rows, c.n, generator=torch.Generator().manual_seed(c.n))
    y_scale = 0.025  # |y| > 3.2 saturates: about 1 in 700
    y = mem.empty((c.rows, c.n), "int8")
    rc = getattr(lib, prefix + HADAMARD_INT8.c_symbol)(mem.put(_np(x)), y, c.rows, c.n, y_scale,
                                                       None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    # exact adds, +-1 products and one multiply, in the reference's order: equal, not close
    np.testing.assert_array_equal(mem.get(y), _np(reference.hadamard_int8(x, y_scale)))


def run_norm(lib, mem, c: Norm, prefix: str = "", tol: Tolerance = TOLERANCE):
    g = torch.Generator().manual_seed(c.d)
    x, residual = torch.randn(c.rows, c.d, generator=g), 2 * torch.randn(c.rows, c.d, generator=g)
    weight = 1 + 0.1 * torch.randn(c.d, generator=g)
    eps, y_scale = 1e-5, 0.03  # |y| > 3.8 saturates
    p = {k: mem.put(_np(v)) for k, v in dict(x=x, residual=residual, weight=weight).items()}
    y = mem.empty((c.rows, c.d), "int8")
    residual_out = p["residual"] if c.inplace else mem.empty((c.rows, c.d), "float32")
    rc = getattr(lib, prefix + ADD_RMSNORM_INT8.c_symbol)(
        p["x"], p["residual"], p["weight"], y, residual_out, c.rows, c.d, eps, y_scale, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    want_y, want_residual = reference.add_rmsnorm_int8(x, residual, weight, eps, y_scale)
    _check_int8("y", mem.get(y), want_y, tol)
    assert np.array_equal(mem.get(residual_out), _np(want_residual)), "residual_out"  # one add


def run_w4a8(lib, mem, c: W4A8, prefix: str = "", tol: Tolerance = TOLERANCE):
    g = torch.Generator().manual_seed(c.K + c.N)
    x = torch.randint(-128, 128, (c.rows, c.K), generator=g, dtype=torch.int8)
    weight = int4.pack(torch.randint(-8, 8, (c.N, c.K), generator=g, dtype=torch.int8)).view(torch.int8)
    scale = torch.rand(c.N, c.K // c.group_size, generator=g) * 0.02 + 1e-3
    x_scale = 0.0137
    y = mem.empty((c.rows, c.N), "float32")
    rc = getattr(lib, prefix + LINEAR_W4A8.c_symbol)(
        mem.put(_np(x)), mem.put(_np(weight)), mem.put(_np(scale)), y, c.rows, c.K, c.N,
        x_scale, c.group_size, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    # exact int32 sums; fp32 partial products added in another order than the reference's fp64
    want = reference.linear_w4a8(x, weight, scale, x_scale, c.group_size)
    _check("y", mem.get(y), want, False, tol)


def run_embed(lib, mem, c: Embed, prefix: str = "", tol: Tolerance = TOLERANCE):
    g = torch.Generator().manual_seed(c.vocab + c.d)
    ids = torch.randint(-2, c.vocab + 2, (c.batch, c.L), generator=g)  # some out of the table
    table = torch.randint(-8, 8, (c.vocab, c.d), generator=g, dtype=torch.int8)
    scale = (torch.rand(c.vocab, c.d // c.group_size, generator=g) * 0.02 + 1e-3).half()
    y = mem.empty((c.batch, c.L, c.d), "float32")
    rc = getattr(lib, prefix + EMBEDDING_W4.c_symbol)(
        mem.put(_np(ids)), mem.put(_np(int4.pack(table))), mem.put(_np(scale)), y,
        c.batch * c.L, c.vocab, c.d, c.group_size, None)
    assert rc == 0, f"status {rc}"
    mem.sync()
    # one exact product per element
    assert np.array_equal(mem.get(y), _np(reference.embedding_w4(ids, table, scale, c.group_size)))


RUNS = {"scan": run_scan, "ssd": run_ssd, "conv": run_conv, "hadamard": run_hadamard,
        "norm": run_norm, "w4a8": run_w4a8, "embed": run_embed}
SMALL = [(k, c) for k, cases in (("scan", SCAN_SMALL), ("ssd", SSD_SMALL), ("conv", CONV_SMALL),
                                 ("hadamard", HADAMARD_SMALL), ("norm", NORM_SMALL),
                                 ("w4a8", W4A8_SMALL), ("embed", EMBED_SMALL))
         for c in cases]


# every case once: the small ones and the GPU's model sizes
ALL = _once([(k, c) for k, cases in (("scan", SCAN_GPU), ("ssd", SSD_GPU), ("conv", CONV_GPU),
                                     ("hadamard", HADAMARD_GPU), ("norm", NORM_GPU),
                                     ("w4a8", W4A8_GPU), ("embed", EMBED_GPU))
             for c in cases])


class OnStream:
    """`lib` with each kernel call's last argument, the stream (the run_ functions pass the
    null stream), replaced by `stream`."""

    def __init__(self, lib, stream: int):
        self.lib, self.stream = lib, stream

    def __getattr__(self, name: str):
        f = getattr(self.lib, name)
        return lambda *args: f(*args[:-1], self.stream)


class HostMem:
    """Host arrays behind raw pointers, for the CPU emulation."""

    def __init__(self):
        self.arrays = {}

    def put(self, a: np.ndarray) -> int:
        a = np.array(a, copy=True)
        self.arrays[a.ctypes.data] = a
        return a.ctypes.data

    def empty(self, shape, dtype) -> int:  # NaN (int8: -1), as the GPU's 0xFF bytes
        return self.put(np.full(shape, -1 if np.dtype(dtype).kind == "i" else np.nan, dtype))

    def get(self, ptr: int) -> np.ndarray:
        return self.arrays[ptr].copy()

    def describe(self, ptr: int) -> tuple[tuple, np.dtype]:
        return self.arrays[ptr].shape, self.arrays[ptr].dtype

    def sync(self):
        pass


class DeviceMem:
    """Device buffers from cuda-python."""

    def __init__(self):
        from cuda.bindings import runtime
        self.rt = runtime
        self.buffers = {}  # pointer -> (shape, dtype)

    def empty(self, shape, dtype) -> int:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(check(self.rt.cudaMalloc(nbytes)))
        check(self.rt.cudaMemset(ptr, 0xFF, nbytes))  # NaN: an unwritten output fails
        self.buffers[ptr] = (tuple(shape), np.dtype(dtype))
        return ptr

    def put(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a)
        ptr = self.empty(a.shape, a.dtype)
        check(self.rt.cudaMemcpy(ptr, a.ctypes.data, a.nbytes,
                                   self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return ptr

    def get(self, ptr: int) -> np.ndarray:
        shape, dtype = self.buffers[ptr]
        out = np.empty(shape, dtype)
        check(self.rt.cudaMemcpy(out.ctypes.data, ptr, out.nbytes,
                                   self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        return out

    def describe(self, ptr: int) -> tuple[tuple, np.dtype]:
        return self.buffers[ptr]

    def sync(self):
        check(self.rt.cudaDeviceSynchronize())
        check(self.rt.cudaGetLastError())

    def free(self):
        for ptr in self.buffers:
            check(self.rt.cudaFree(ptr))
        self.buffers.clear()
