"""GPTQ and round-to-nearest 4-bit group quantization (edgeq.quant.gptq)."""
import pytest
import torch

from edgeq.quant.gptq import Hessian, dequantize, gptq, group_size_for, quantize_rtn


def problem(seed=0, rows=2048, k=256, n=64):
    """Strongly correlated inputs (rank 24 plus a little noise) and random weights."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, 24, generator=g) @ torch.randn(24, k, generator=g)
    X = X + 0.05 * torch.randn(rows, k, generator=g)
    return X, torch.randn(n, k, generator=g)


def hessian(X):
    h = Hessian(X.shape[1])
    h.add(X[:1000])
    h.add(X[1000:].reshape(2, -1, X.shape[1]))  # leading dims are rows too
    return h.matrix()


def test_hessian_is_the_mean_over_rows():
    X, _ = problem(rows=300, k=32)
    H = hessian(X)
    assert H.dtype == torch.float64 and H.shape == (32, 32)
    torch.testing.assert_close(H, 2 / 300 * X.double().T @ X.double())
    with pytest.raises(ValueError):
        Hessian(4).matrix()


@pytest.mark.parametrize("k, preferred, want", [(256, 128, 128), (192, 128, 64), (768, 128, 128),
                                                (48, 128, 16), (96, 96, 96), (320, 128, 64)])
def test_group_size_for(k, preferred, want):
    assert group_size_for(k, preferred) == want


@pytest.mark.parametrize("k", [40, 24, 7])
def test_group_size_for_refuses_small_groups(k):
    with pytest.raises(ValueError, match="group size"):
        group_size_for(k)


def test_rtn_format_and_dequantize():
    _, W = problem(k=128, n=16)
    W[3, 32:64] = 0  # an all-zero group gets a harmless scale
    q, s = quantize_rtn(W, bits=4, group_size=32)
    assert q.dtype == torch.int8 and q.shape == W.shape
    assert s.dtype == torch.float32 and s.shape == (16, 4) and (s > 0).all()
    assert q.min() >= -7 and q.max() <= 7  # absmax / 7: RTN never needs -8
    # each group's absmax is representable, and every weight is within half a step
    amax = W.abs().reshape(16, 4, 32).amax(-1)
    torch.testing.assert_close(s * 7, torch.where(amax > 0, amax, torch.full_like(amax, 7.0)))
    step = s.repeat_interleave(32, 1)
    assert ((W - dequantize(q, s)).abs() <= step / 2 * (1 + 1e-6)).all()
    assert torch.equal(dequantize(q, s), q.float() * step)
    q3, s3 = quantize_rtn(W, bits=3, group_size=32)
    assert q3.min() >= -4 and q3.max() <= 3


def test_gptq_beats_rtn_on_correlated_inputs():
    X, W = problem()
    H = hessian(X)
    ref = X @ W.T

    def err(qs):
        return torch.linalg.norm(ref - X @ dequantize(*qs).T).item()

    rtn = err(quantize_rtn(W, 4, 128))
    for qs in (gptq(W, H, 4, 128), gptq(W, H, 4, 64, act_order=True)):
        q, s = qs
        assert q.dtype == torch.int8 and q.shape == W.shape and q.min() >= -8 and q.max() <= 7
        assert s.dtype == torch.float32 and (s > 0).all()
        assert err(qs) <= 0.8 * rtn  # about 0.2x here


def test_gptq_with_identity_hessian_is_rtn_exactly():
    # H = I (times 1 + damp) decouples the columns: no error is spread, nothing else differs
    _, W = problem(k=128, n=16)
    I = torch.eye(128, dtype=torch.float64)
    q, s = quantize_rtn(W, 4, 32)
    for act_order in (False, True):
        q2, s2 = gptq(W, I, 4, 32, act_order=act_order)
        assert torch.equal(q, q2) and torch.equal(s, s2)


def test_gptq_block_size_changes_nothing_and_is_deterministic():
    X, W = problem(rows=512, k=128, n=16)
    H = hessian(X)
    q, s = gptq(W, H, 4, 32)
    for block in (16, 32, 128):
        q2, s2 = gptq(W, H, 4, 32, block=block)
        assert torch.equal(q, q2) and torch.equal(s, s2)


def test_gptq_dead_inputs_are_rounded():
    X, W = problem(rows=512, k=128, n=16)
    X[:, [5, 70]] = 0
    q, s = gptq(W, hessian(X), 4, 32)
    # nothing reaches an input calibration never saw: its weights are plain RTN on the group scale
    for c in (5, 70):
        sc = s[:, c // 32].double()
        rtn = torch.clamp(torch.round(W[:, c].double() / sc), -8, 7).to(torch.int8)
        assert torch.equal(q[:, c], rtn)


def test_gptq_refuses_bad_shapes():
    with pytest.raises(ValueError):
        gptq(torch.zeros(4, 48), torch.eye(48), group_size=32)
    with pytest.raises(ValueError):
        gptq(torch.zeros(4, 64), torch.eye(32), group_size=32)
