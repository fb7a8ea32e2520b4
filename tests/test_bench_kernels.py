"""tools/bench_kernels.py without a GPU: it refuses to run (exit 2, nothing written), and its
PyTorch versions, run here on the CPU, compute the ops of edgeq.ops.reference. The timing
itself needs a GPU."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from edgeq.ops import reference

sys.path.insert(0, str(ROOT / "tools"))
import bench_kernels as bk  # noqa: E402


def test_exits_2_without_a_gpu(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # hides any GPU
    p = subprocess.run([sys.executable, ROOT / "tools" / "bench_kernels.py", "--out", tmp_path],
                       env=env, capture_output=True, text=True)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "no CUDA GPU visible" in p.stderr
    assert not list(tmp_path.iterdir())


def _int8_close(got, want):  # fp32 sums in another order: a value may land one step off
    diff = (got.int() - want.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() <= 0.01


@pytest.mark.parametrize("op,dtype,shape", [
    ("scan", "float16", (2, 5, 64)), ("scan", "int8", (2, 5, 64)), ("ssd", "float16", (2, 5, 128)),
    ("ssd", "int8", (2, 5, 128)), ("conv", "float16", (2, 5, 64)),
    ("conv", "int8", (2, 5, 64)), ("hadamard", "int8", (3, 96)), ("hadamard", "int8", (2, 320)),
    ("norm", "int8", (3, 40)), ("w4a8", "int8", (3, 256, 96))])
def test_torch_versions_compute_the_ops(op, dtype, shape):
    case = bk.make(op, dtype, shape, np.random.default_rng(0))
    x = {k: torch.from_numpy(v) for k, v in case["inputs"].items()}
    got = bk.torch_call(op, dtype, case, device="cpu")()
    sc = case.get("scales", [])
    if op == "scan":
        deq = {k: reference.dequantize(x[k], s) if sc else x[k].float()
               for k, s in zip(("u", "delta", "B", "C", "z"), sc or [1] * 5)}
        y, state = reference.selective_scan(deq["u"], deq["delta"], x["A"], deq["B"], deq["C"],
                                            x["D"], x["delta_bias"], x["state"], deq["z"])
        torch.testing.assert_close(got[0].float(), y if sc else y.half().float(),
                                   rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(got[1], state, rtol=1e-4, atol=1e-4)
    elif op == "ssd":
        if sc:
            y, state = reference.ssd_scan_int8(**x, x_scale=sc[0], dt_scale=sc[1], B_scale=sc[2],
                                               C_scale=sc[3])
            torch.testing.assert_close(got[0], y, rtol=2e-3, atol=2e-3)
            torch.testing.assert_close(got[1].float(), state.float(), rtol=1e-3, atol=1e-3)
        else:
            y, state = reference.ssd_scan(**{k: v.float() for k, v in x.items()})
            torch.testing.assert_close(got[0].float(), y.half().float(), rtol=2e-3, atol=2e-3)
            torch.testing.assert_close(got[1], state, rtol=1e-4, atol=1e-4)
    elif op == "conv":
        if sc:
            y, state = reference.causal_conv1d_int8(**x, x_scale=sc[0], weight_scale=sc[1],
                                                    y_scale=sc[2])
            _int8_close(got[0], y)
        else:
            y, state = reference.causal_conv1d(**x)
            torch.testing.assert_close(got[0], y, rtol=2e-3, atol=2e-3)
        assert torch.equal(got[1], state)
    elif op == "hadamard":
        _int8_close(got, reference.hadamard_int8(x["x"], 0.02))
    elif op == "w4a8":
        want = reference.linear_w4a8(**x, x_scale=sc[0], group_size=bk.GROUP)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    else:
        y, s = reference.add_rmsnorm_int8(x["x"], x["residual"], x["weight"], 1e-5, 0.03)
        _int8_close(got[0], y)
        assert torch.equal(got[1], s)


def test_report_lists_every_case():
    cases = list(bk.cases(bk.WIDTHS, quick=False))
    # 3 widths x 8 shapes x (scan, SSD, conv in fp16 and int8; Hadamard; add + RMSNorm; W4A8
    # in_proj and out_proj)
    assert len(cases) == 3 * 8 * 10
    row = dict(op="scan", dtype="int8", shape=[1, 128, 1536], d_inner=1536, ms=0.5, gbs=10.0,
               gflops=20.0, roofline_fraction=0.25, speedup_vs_torch=3.0, int8_over_fp16=0.8)
    dev = dict(name="GPU", sm=87, peak_gbs=68.0, peak_gbs_from="x", peak_gflops=1e3,
               peak_gflops_from="y", peak_int8_gops=2e4, peak_int8_gops_from="z")
    assert "| scan | int8 | 1x128x1536 | 1536 | 500.0 | 10.0 | 20.0 | 25.0 % | x3.0 | 0.80 |" in \
        bk.markdown(dev, [row])


def test_targets_are_checked_on_every_covered_row():
    def row(op, dtype, shape, **kw):
        return dict(dict(op=op, dtype=dtype, shape=shape, d_inner=shape[-1], ms=0.1, gbs=1.0,
                         gflops=1.0, roofline_fraction=0.9), **kw)
    rows = [row("scan", "float16", [64, 1, 1536]), row("ssd", "int8", [64, 1, 5120]),
            row("scan", "int8", [1, 1, 1536], roofline_fraction=0.1),  # batch 1: not a target
            row("conv", "int8", [64, 1, 1536], roofline_fraction=0.1),  # not a scan
            row("scan", "int8", [1, 512, 1536], int8_over_fp16=0.8),
            row("ssd", "int8", [1, 512, 5120], int8_over_fp16=0.9)]
    lines = bk.target_lines(rows)
    assert lines[0].startswith("scan decode step, batch 64: >= 70% of the roofline: met in 2 of 2")
    assert lines[1] == ("int8 prefill scan >= 1.2x the fp16 one: NOT met in 1 of 2 cases "
                        "(worst 1.11, ssd int8 1x512x5120)")
    rows[1]["roofline_fraction"] = 0.69
    assert "NOT met in 1 of 2 cases (worst 0.69, ssd int8 64x1x5120)" in bk.target_lines(rows)[0]
    assert f"- {lines[1]}" in bk.markdown(dict(name="GPU", sm=87, peak_gbs=68.0, peak_gbs_from="x",
                                                peak_gflops=1e3, peak_gflops_from="y",
                                                peak_int8_gops=2e4, peak_int8_gops_from="z"), rows)
