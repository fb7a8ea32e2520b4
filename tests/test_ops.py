"""The plain-torch reference (docs/ops.md) against independent formulations, and what the CPU
library and the torch custom ops do over calls: states carried, steps, shapes refused, schemas.
The kernel cases on every backend, these ops' CPU kernels included: test_backend_ops.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeq.ops import custom, reference
from edgeq.runtime import kernels

# (batch, L, D, H, G, N): Mamba-1 (H = D, G = 1), Mamba-2 style heads and groups, L = 1 steps
SCAN_SHAPES = [(2, 7, 96, 96, 1, 16), (1, 1, 64, 64, 1, 16), (3, 33, 48, 48, 1, 4),
               (2, 5, 64, 8, 2, 8), (1, 1, 32, 4, 4, 16)]


def scan_inputs(b, L, D, H, G, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(u=r(b, L, D), delta=r(b, L, H), A=-torch.rand(H, N, generator=g) * 3,
                B=r(b, L, G, N), C=r(b, L, G, N), D=r(D), delta_bias=r(H) * 2,
                state=r(b, D, N), z=r(b, L, D))


def naive_scan(u, delta, A, B, C, D, delta_bias, state, z, delta_softplus=True):
    """docs/ops.md's formula, one scalar at a time (numpy float64)."""
    u, delta, A, B, C, D, db, s, z = (np.asarray(t, np.float64) for t in
                                      (u, delta, A, B, C, D, delta_bias, state, z))
    b_, L, dim = u.shape
    H, G = A.shape[0], B.shape[2]
    P = dim // H
    y, s = np.zeros_like(u), s.copy()
    for b in range(b_):
        for d in range(dim):
            h = d // P
            g = h // (H // G)
            for t in range(L):
                dt = delta[b, t, h] + db[h]
                if delta_softplus:
                    dt = dt if dt > 20 else np.log1p(np.exp(dt))
                s[b, d] = np.exp(dt * A[h]) * s[b, d] + dt * B[b, t, g] * u[b, t, d]
                out = (s[b, d] * C[b, t, g]).sum() + D[d] * u[b, t, d]
                y[b, t, d] = out * z[b, t, d] / (1 + np.exp(-z[b, t, d]))
    return y, s


@pytest.mark.parametrize("shape", SCAN_SHAPES)
def test_reference_scan_is_the_written_formula(shape):
    x = scan_inputs(*shape)
    y, s = reference.selective_scan(**x)
    y2, s2 = naive_scan(**x)
    np.testing.assert_allclose(y.numpy(), y2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s.numpy(), s2, rtol=1e-4, atol=1e-4)


def test_softplus_threshold_20():
    x = torch.tensor([-5.0, 0.0, 19.9, 20.0, 20.1, 60.0])
    assert torch.equal(reference.softplus(x)[3:], x[3:])
    torch.testing.assert_close(reference.softplus(x)[:3], F.softplus(x)[:3])


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_scan_state_carries_across_calls(impl):
    x = scan_inputs(2, 20, 32, 32, 1, 8)
    run = reference.selective_scan if impl == "reference" else kernels.selective_scan
    y, s = run(**x)
    timed = ("u", "delta", "B", "C", "z")
    first = {k: v[:, :13] if k in timed else v for k, v in x.items()}
    rest = {k: v[:, 13:] if k in timed else v for k, v in x.items()}
    y1, s1 = run(**first)
    rest["state"] = torch.as_tensor(s1)
    y2, s2 = run(**rest)
    np.testing.assert_allclose(np.concatenate([np.asarray(y1), np.asarray(y2)], 1), np.asarray(y),
                               rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(s2), np.asarray(s), rtol=1e-4, atol=2e-5)


def conv_inputs(b, L, C, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, L, C, generator=g), torch.randn(C, W, generator=g),
            torch.randn(C, generator=g), torch.randn(b, W - 1, C, generator=g))


@pytest.mark.parametrize("act", [0, 1])
def test_reference_conv_is_torch_conv1d(act):
    x, w, bias, _ = conv_inputs(2, 9, 12, 4)
    state = torch.zeros(2, 3, 12)
    y, s = reference.causal_conv1d(x, w, bias, state, act)
    want = F.conv1d(x.transpose(1, 2), w[:, None], bias, padding=3, groups=12)[..., :9].transpose(1, 2)
    if act:
        want = F.silu(want)
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(s, x[:, -3:])


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_conv_steps_equal_full_pass(impl):
    run = reference.causal_conv1d if impl == "reference" else kernels.causal_conv1d
    x, w, bias, state = conv_inputs(2, 6, 24, 4)
    y, s = run(x, w, bias, state, 1)
    ys = []
    for t in range(6):
        yt, state = run(x[:, t:t + 1], w, bias, torch.as_tensor(state), 1)
        ys.append(np.asarray(yt))
    np.testing.assert_allclose(np.concatenate(ys, 1), np.asarray(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(state), np.asarray(s))


def test_kernels_reject_bad_shapes():
    x = scan_inputs(1, 3, 8, 8, 1, 4)
    x["delta"] = x["delta"][..., :5]
    with pytest.raises(ValueError):
        kernels.selective_scan(**x)


def test_torch_custom_ops_pass_opcheck():
    x = scan_inputs(2, 3, 16, 16, 1, 4)
    torch.library.opcheck(custom.selective_scan, tuple(x.values()), {"delta_softplus": True},
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(custom.causal_conv1d, conv_inputs(2, 3, 16, 4) + (1,),
                          test_utils=("test_schema", "test_faketensor"))
    y, s = torch.ops.edgeq.selective_scan(*x.values())
    y2, s2 = reference.selective_scan(**x)
    assert torch.equal(y, y2) and torch.equal(s, s2)


# (batch, L, H, P, G, N, chunk): L below, at and across chunk boundaries
SSD_SHAPES = [(2, 7, 4, 8, 1, 16, 4), (1, 1, 8, 4, 2, 8, 8), (2, 33, 6, 5, 3, 4, 8),
              (1, 64, 4, 16, 1, 32, 16), (3, 20, 2, 3, 2, 4, 256)]


@pytest.mark.parametrize("shape", SSD_SHAPES)
def test_ssd_scan_is_the_selective_scan_with_per_head_A(shape):
    b, L, H, P, G, N, c = shape
    g = torch.Generator().manual_seed(L)
    x = dict(x=torch.randn(b, L, H * P, generator=g), dt=torch.randn(b, L, H, generator=g),
             A=-torch.rand(H, generator=g) * 4, B=torch.randn(b, L, G, N, generator=g),
             C=torch.randn(b, L, G, N, generator=g), D=torch.randn(H, generator=g),
             dt_bias=torch.randn(H, generator=g), state=torch.randn(b, H * P, N, generator=g))
    y, s = reference.ssd_scan(**x, chunk_size=c)
    y2, s2 = reference.selective_scan(x["x"], x["dt"], x["A"][:, None].expand(H, N), x["B"], x["C"],
                                      x["D"].repeat_interleave(P), x["dt_bias"], x["state"], None)
    torch.testing.assert_close(y, y2, rtol=1e-4, atol=5e-5)
    torch.testing.assert_close(s, s2, rtol=1e-4, atol=5e-5)
    y3, s3 = kernels.ssd_scan(**x, chunk_size=c)
    np.testing.assert_allclose(y3, y.numpy(), rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(s3, s.numpy(), rtol=1e-4, atol=5e-5)
    torch.library.opcheck(custom.ssd_scan, tuple(x.values()), {"chunk_size": c},
                          test_utils=("test_schema", "test_faketensor"))
