"""The int8 ops: C++ kernels against the plain-torch references, and the references against
their written definitions (docs/ops.md)."""
import numpy as np
import pytest
import torch

from edgeq.ops import custom, hadamard, reference
from edgeq.runtime import kernels


def assert_bitexact(got, want):
    """docs/ops.md "Reference numerics": the CPU kernels round like the reference. fp64 exp in
    two libraries may differ in its last bit, which survives the rounding to fp32 about once in
    10^8 values: allow that, nothing more."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    differ = got != want
    assert differ.mean() <= 1e-6, f"{differ.sum()} of {differ.size} values differ"


def q8(g, *shape):
    return torch.randint(-128, 128, shape, generator=g, dtype=torch.int8)


def test_quantize_rounds_half_to_even_and_saturates():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 126.6, 300.0, -300.0, -128.4])
    assert reference.quantize(x, 1.0).tolist() == [0, 2, 2, 0, -2, 127, 127, -128, -128]


@pytest.mark.parametrize("shape", [(2, 9, 96, 96, 1, 16), (1, 1, 64, 64, 1, 16), (2, 5, 64, 8, 2, 8)])
def test_scan_int8_kernel_and_reference(shape):
    b, L, D, H, G, N = shape
    g = torch.Generator().manual_seed(0)
    args = (q8(g, b, L, D), q8(g, b, L, H), -torch.rand(H, N, generator=g), q8(g, b, L, G, N),
            q8(g, b, L, G, N), torch.randn(D, generator=g), torch.randn(H, generator=g),
            torch.randn(b, D, N, generator=g), q8(g, b, L, D))
    scales = (0.02, 0.01, 0.03, 0.025, 0.02)
    y, s = reference.selective_scan_int8(*args, *scales)
    deq = [reference.dequantize(t, sc) for t, sc in zip([args[i] for i in (0, 1, 3, 4, 8)], scales)]
    y_fp, s_fp = reference.selective_scan(deq[0], deq[1], args[2], deq[2], deq[3], *args[5:8], deq[4])
    assert torch.equal(y, y_fp) and torch.equal(s, s_fp)  # int8 = dequantize, then the fp op
    y2, s2 = kernels.selective_scan_int8(*args, *scales)
    assert_bitexact(y2, y)
    assert_bitexact(s2, s)


def conv_scales(g, C, kind):
    """x, weight and y scales: per tensor, per channel (Quamba2's sort-and-cluster gives x and y
    per-group scales, weights are per channel) or a mix."""
    spread = lambda s: (s * torch.exp(0.5 * torch.randn(C, generator=g))).tolist()  # noqa: E731
    if kind == "tensor":
        return [0.05], [0.01], [0.02]
    return ([0.05] if kind == "mixed" else spread(0.05)), spread(0.01), spread(0.02)


@pytest.mark.parametrize("shape", [(2, 9, 96, 4), (1, 1, 1536, 4), (3, 4, 40, 3)])
@pytest.mark.parametrize("kind", ["tensor", "channel", "mixed"])
def test_conv_int8_kernel_and_reference(shape, kind):
    b, L, C, W = shape
    g = torch.Generator().manual_seed(1)
    args = (q8(g, b, L, C), q8(g, C, W), torch.randn(C, generator=g), q8(g, b, W - 1, C))
    sx, sw, sy = conv_scales(g, C, kind)
    y, s = reference.causal_conv1d_int8(*args, sx, sw, sy)
    # the written definition: int32 sums; per channel the fp32 product of the scales, bias,
    # SiLU in fp64 rounded once, quantize
    xx = torch.cat([args[3], args[0]], 1).int()
    acc = sum(args[1][:, k].int() * xx[:, k:k + L] for k in range(W))
    v = (acc.float() * (torch.tensor(sx) * torch.tensor(sw)) + args[2]).double()
    v = (v / (1 + torch.exp(-v))).float()
    want = torch.clamp(torch.round(v / torch.tensor(sy)), -128, 127).to(torch.int8)
    assert torch.equal(y, want) and torch.equal(s, xx[:, L:].to(torch.int8))
    y2, s2 = kernels.causal_conv1d_int8(*args, sx, sw, sy)
    np.testing.assert_array_equal(y2, y.numpy())
    np.testing.assert_array_equal(s2, s.numpy())


def test_conv_int8_refuses_scale_lengths_other_than_1_and_C():
    g = torch.Generator().manual_seed(1)
    args = (q8(g, 1, 2, 8), q8(g, 8, 4), torch.zeros(8), q8(g, 1, 3, 8))
    for bad in ([0.1] * 2, [0.1] * 9, []):
        with pytest.raises(ValueError):
            reference.causal_conv1d_int8(*args, [0.1], bad, [0.1])
        with pytest.raises(ValueError):
            kernels.causal_conv1d_int8(*args, [0.1], bad, [0.1])


# 2^k and every Mamba family: 12*2^k (d_inner 1536, 3072), 20*2^k (5120), 40*2^k, 28*2^k
@pytest.mark.parametrize("n", [16, 64, 96, 384, 1536, 320, 112, 448])
def test_hadamard_matrix_is_orthonormal(n):
    H = hadamard.matrix(n)
    assert torch.allclose(H @ H.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert set(torch.unique(H * np.sqrt(n)).round().tolist()) == {-1.0, 1.0}
    x = torch.randn(6, n, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(hadamard.transform(x).double(), x.double() @ H.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [64, 96, 1536, 3072, 5120, 320, 448, 7168])
def test_hadamard_int8_kernel_and_reference(n):
    x = torch.randn(6, n, generator=torch.Generator().manual_seed(n))
    y = reference.hadamard_int8(x, 0.01)
    assert torch.equal(y, reference.quantize(hadamard.transform(x), 0.01))
    y2 = kernels.hadamard_int8(x, 0.01)
    assert_bitexact(y2, y)


def test_hadamard_rejects_other_sizes():
    assert not hadamard.supported(100) and not hadamard.supported(24 * 3)
    with pytest.raises(ValueError):
        kernels.hadamard_int8(np.zeros((1, 100), np.float32), 1.0)


def test_add_rmsnorm_int8_kernel_and_reference():
    g = torch.Generator().manual_seed(2)
    x, r, w = torch.randn(3, 5, 96, generator=g), torch.randn(3, 5, 96, generator=g), torch.randn(96, generator=g)
    y, s = reference.add_rmsnorm_int8(x, r, w, 1e-5, 0.03)
    assert torch.equal(s, x + r)
    y2, s2 = kernels.add_rmsnorm_int8(x, r, w, 1e-5, 0.03)
    assert_bitexact(y2, y)
    np.testing.assert_array_equal(s2, s.numpy())


def test_int8_custom_ops_pass_opcheck():
    g = torch.Generator().manual_seed(3)
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(custom.hadamard_int8, (torch.randn(2, 96, generator=g), 0.1), test_utils=checks)
    torch.library.opcheck(custom.add_rmsnorm_int8, (torch.randn(2, 8), torch.randn(2, 8), torch.ones(8), 1e-5, 0.1),
                          test_utils=checks)
    torch.library.opcheck(custom.causal_conv1d_int8, (q8(g, 1, 3, 8), q8(g, 8, 4), torch.zeros(8), q8(g, 1, 3, 8),
                                                     [0.1], [0.1] * 8, [0.1] * 8, 1), test_utils=checks)
    torch.library.opcheck(custom.selective_scan_int8, (q8(g, 1, 2, 8), q8(g, 1, 2, 8), -torch.ones(8, 4),
                                                       q8(g, 1, 2, 1, 4), q8(g, 1, 2, 1, 4), torch.ones(8), torch.zeros(8),
                                                       torch.zeros(1, 8, 4), q8(g, 1, 2, 8), .1, .1, .1, .1, .1),
                          test_utils=checks)


# (batch, L, H, P, G, N, chunk): L below, at and across chunk boundaries; G = 1, 2, 3
SSD_SHAPES = [(2, 7, 4, 8, 1, 16, 4), (1, 1, 8, 4, 2, 8, 8), (2, 33, 6, 5, 3, 4, 8),
              (1, 64, 4, 16, 2, 32, 16), (3, 20, 2, 3, 2, 4, 256)]


def ssd_int8_inputs(shape, per_channel, seed=0):
    """EdgeqSSDScanInt8's tensors and scales: x per channel, dt per head, B and C per group
    (Quamba2), or every one per tensor; the fp16 state cache."""
    b, L, H, P, G, N, _ = shape
    g = torch.Generator().manual_seed(seed)
    x = dict(x=q8(g, b, L, H * P), dt=q8(g, b, L, H), A=-torch.rand(H, generator=g) * 4,
             B=q8(g, b, L, G, N), C=q8(g, b, L, G, N), D=torch.randn(H, generator=g),
             dt_bias=torch.randn(H, generator=g),
             state=torch.randn(b, H * P, N, generator=g).half())
    n = dict(x=H * P, dt=H, B=G, C=G) if per_channel else dict(x=1, dt=1, B=1, C=1)
    scales = {f"{k}_scale": (0.02 * torch.exp(0.5 * torch.randn(m, generator=g))).tolist()
              for k, m in n.items()}
    return x, scales


def ssd_dequantized(x, scales):
    """docs/ops.md: each int8 input times the scale of its channel, head or group."""
    s = {k: torch.tensor(v) for k, v in scales.items()}
    return dict(x, x=x["x"].float() * s["x_scale"], dt=x["dt"].float() * s["dt_scale"],
                B=x["B"].float() * s["B_scale"][:, None], C=x["C"].float() * s["C_scale"][:, None],
                state=x["state"].float())


def ssd_sequential(x, deq, state, t=slice(None)):
    """The sequential scan (the CPU kernel's order) of the dequantized tokens t from `state`:
    the selective scan with A and D per head."""
    H, N = x["A"].shape[0], x["B"].shape[3]
    one = {k: deq[k][:, t] for k in ("x", "dt", "B", "C")}
    return reference.selective_scan(one["x"], one["dt"], x["A"][:, None].expand(H, N), one["B"],
                                    one["C"], x["D"].repeat_interleave(x["x"].shape[2] // H),
                                    x["dt_bias"], state, None)


@pytest.mark.parametrize("shape", SSD_SHAPES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_ssd_scan_int8_kernel_and_reference(shape, per_channel):
    chunk = shape[6]
    x, scales = ssd_int8_inputs(shape, per_channel)
    y, s = reference.ssd_scan_int8(**x, **scales, chunk_size=chunk)
    deq = ssd_dequantized(x, scales)
    y_fp, s_fp = reference.ssd_scan(**deq, chunk_size=chunk)
    # int8 = dequantize, then the fp op; the state rounded to fp16 once
    assert torch.equal(y, y_fp) and torch.equal(s, s_fp.half()) and s.dtype == torch.float16
    # the CPU kernel scans sequentially: bit for bit the sequential reference, the selective
    # scan with A and D per head; within fp32 rounding of the chunked one (as EdgeqSSDScan)
    y_seq, s_seq = ssd_sequential(x, deq, deq["state"])
    y2, s2 = kernels.ssd_scan_int8(**x, **scales, chunk_size=chunk)
    assert_bitexact(y2, y_seq.numpy())
    assert_bitexact(s2, s_seq.half().numpy())  # the C++ fp16 rounding is torch's
    np.testing.assert_allclose(y2, y.numpy(), rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(s2, s.numpy(), rtol=2e-3, atol=1e-3)  # one fp16 ulp at most


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_ssd_scan_int8_decode_steps_round_the_state_every_token(impl):
    """L = 1 steps with the fp16 state carried: each step is the fp32 scan of one token on the
    widened state, rounded to fp16 (bit for bit on the sequential CPU kernel, within one fp16
    ulp on the chunked reference), and the steps stay within fp16 rounding of the full pass."""
    x, scales = ssd_int8_inputs((2, 12, 4, 8, 2, 16, 4), per_channel=True)
    run = reference.ssd_scan_int8 if impl == "reference" else kernels.ssd_scan_int8
    deq = ssd_dequantized(x, scales)
    state, want, ys, want_ys = x["state"], x["state"], [], []
    for t in range(12):
        step = {k: x[k][:, t:t + 1] for k in ("x", "dt", "B", "C")}
        yt, state = run(**dict(x, **step, state=torch.as_tensor(state)), **scales, chunk_size=4)
        ys.append(np.asarray(yt))
        wy, ws = ssd_sequential(x, deq, want.float(), slice(t, t + 1))
        want = ws.half()
        want_ys.append(wy.numpy())
    assert np.asarray(state).dtype == np.float16
    if impl == "cpu":
        np.testing.assert_array_equal(np.concatenate(ys, 1), np.concatenate(want_ys, 1))
        np.testing.assert_array_equal(state, want.numpy())
    else:
        np.testing.assert_allclose(np.concatenate(ys, 1), np.concatenate(want_ys, 1), rtol=1e-4,
                                   atol=5e-5)
        np.testing.assert_allclose(np.asarray(state, np.float32), want.float().numpy(),
                                   rtol=2e-3, atol=1e-3)
    y, s = run(**x, **scales, chunk_size=4)  # one call: the state rounded once
    np.testing.assert_allclose(np.concatenate(ys, 1), np.asarray(y), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(np.asarray(state, np.float32), np.asarray(s, np.float32),
                               rtol=1e-2, atol=1e-2)


def test_ssd_scan_int8_state_rounds_to_fp16_like_torch():
    """The CPU library's own fp16 conversion (it has no fp16 type): a step with decay 1 and
    B x = x_scale returns fp16(state + x_scale) for x_scale across fp16's whole range, ties,
    subnormals and overflow included, equal to torch's rounding; widening is exact."""
    g = torch.Generator().manual_seed(3)
    N = 1
    ties = (torch.arange(1, 2048, 2, dtype=torch.float64) * 2.0 ** -25)  # subnormal ties
    normal = torch.finfo(torch.float16).tiny * (1 + torch.arange(1, 4096, 3) / 2048.0)  # ties
    wide = torch.exp(torch.empty(4000).uniform_(-30, 12, generator=g))  # 1e-13 .. 1.6e5
    u = torch.cat([ties, normal.double(), wide.double(), torch.tensor([65504.0, 65519.0, 65520.0])]).float()
    n = len(u)
    x = dict(x=torch.ones(1, 1, n, dtype=torch.int8), dt=torch.ones(1, 1, n, dtype=torch.int8),
             A=torch.zeros(n), B=torch.ones(1, 1, n, N, dtype=torch.int8),
             C=torch.zeros(1, 1, n, N, dtype=torch.int8), D=torch.zeros(n), dt_bias=torch.zeros(n),
             state=torch.zeros(1, n, N, dtype=torch.float16))
    x["x"][0, 0, ::2] = -1  # both signs
    scales = dict(x_scale=u.tolist(), dt_scale=[1.0], B_scale=[1.0] * n, C_scale=[1.0])
    _, s = kernels.ssd_scan_int8(**x, **scales, dt_softplus=0)
    want = (x["x"][0, 0].float() * u).half()  # exp(0) = 1, dt = 1, B = 1: state = x * x_scale
    assert torch.equal(torch.from_numpy(s[0, :, 0]).view(torch.int16), want.view(torch.int16))
    assert torch.isinf(want[-1]) and not torch.isinf(want[-2]) and (want.abs() < 6.1e-5).sum() > 500
    # widening: every finite fp16 value through a step that adds nothing
    bits = torch.arange(0, 0x7C00, dtype=torch.int32)  # +0 .. 65504; the negatives (-0 + 0 = +0)
    every = torch.cat([bits, bits[1:] | 0x8000]).to(torch.int16).view(torch.float16)
    m = len(every)
    z = dict(x=torch.zeros(1, 1, m, dtype=torch.int8), dt=torch.ones(1, 1, m, dtype=torch.int8),
             A=torch.zeros(m), B=torch.zeros(1, 1, m, N, dtype=torch.int8),
             C=torch.zeros(1, 1, m, N, dtype=torch.int8), D=torch.zeros(m), dt_bias=torch.zeros(m),
             state=every.reshape(1, m, N))
    _, s = kernels.ssd_scan_int8(**z, x_scale=[1.0], dt_scale=[1.0], B_scale=[1.0], C_scale=[1.0],
                                 dt_softplus=0)
    assert torch.equal(torch.from_numpy(s).view(torch.int16), z["state"].view(torch.int16))


def test_ssd_scan_int8_refuses_scale_lengths_other_than_1_and_the_axis():
    x, scales = ssd_int8_inputs((1, 3, 4, 2, 2, 4, 8), per_channel=True)
    for name, bad in (("x_scale", [0.1] * 4), ("dt_scale", [0.1] * 2), ("B_scale", [0.1] * 4),
                      ("C_scale", [0.1] * 3)):
        with pytest.raises(ValueError):
            reference.ssd_scan_int8(**x, **dict(scales, **{name: bad}))
        with pytest.raises(ValueError):
            kernels.ssd_scan_int8(**x, **dict(scales, **{name: bad}))


def test_ssd_scan_int8_custom_op_passes_opcheck():
    x, scales = ssd_int8_inputs((2, 5, 4, 2, 2, 4, 8), per_channel=True)
    torch.library.opcheck(custom.ssd_scan_int8, (*x.values(), *scales.values()),
                          {"dt_softplus": True, "chunk_size": 8},
                          test_utils=("test_schema", "test_faketensor"))
    y, s = torch.ops.edgeq.ssd_scan_int8(*x.values(), *scales.values(), chunk_size=8)
    y2, s2 = reference.ssd_scan_int8(**x, **scales, chunk_size=8)
    assert torch.equal(y, y2) and torch.equal(s, s2) and y.dtype == torch.float32
