"""tools/bench_cpu_runtime.py in its fast mode (--tiny --skip-llama-cpp: a 2-layer width-96
model, one round): the table has every runtime, its ratios and op overheads are computed from
the measured numbers, and bad arguments exit 2 in one line. No timing is checked."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from conftest import ROOT

TOOL = ROOT / "tools" / "bench_cpu_runtime.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    p = subprocess.run([sys.executable, TOOL, "--tiny", "--skip-llama-cpp", "--out",
                        out / "t.md", "--json", out / "t.json"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads((out / "t.json").read_text()), (out / "t.md").read_text()


def test_table_has_every_runtime(tiny):
    result, md = tiny
    (model,) = result["models"]
    assert model["name"] == "tiny h96" and not model["failed"]
    assert set(model["speeds"]) == {"transformers fp32", "edgeq fp32 (ORT)",
                                    "edgeq int8 W8A8 (ORT)"}
    for s in model["speeds"].values():
        assert len(s["prefill"]) == len(s["decode"]) == 1 and min(s["prefill"] + s["decode"]) > 0
    assert "| llama.cpp Q8_0 | — | — | not run |" in md
    assert "llama.cpp: skipped (--skip-llama-cpp)" in md


def test_ratios_come_from_the_measured_numbers(tiny):
    result, md = tiny
    (model,) = result["models"]
    speeds, rows = model["speeds"], {r["ratio"]: r for r in model["ratios"]}
    int8 = speeds["edgeq int8 W8A8 (ORT)"]
    for name, other in (("int8 / transformers fp32", "transformers fp32"),
                        ("int8 / edgeq fp32", "edgeq fp32 (ORT)")):
        for kind in ("prefill", "decode"):
            want = statistics.median(int8[kind]) / statistics.median(speeds[other][kind])
            assert rows[name][kind] == pytest.approx(want)
        assert f"| {name} | {rows[name]['prefill']:.3f}x | {rows[name]['decode']:.3f}x |" in md
    llama = rows["int8 / llama.cpp Q8_0"]
    assert llama["prefill"] is None and "| int8 / llama.cpp Q8_0 | —x | —x | >= 0.5 |" in md


def test_op_overheads(tiny):
    result, md = tiny
    ops = result["ops"]
    assert ops["d_inner"] == 192 and ops["gflops"] > 0
    # the scan and the Hadamard are one call in the ORT session (cpu_fusion), timed as one
    fused = "EdgeqSelectiveScanInt8+EdgeqHadamardInt8"
    assert set(ops["per_op"]) == {fused, "EdgeqCausalConv1dInt8", "EdgeqAddRMSNormInt8"}
    for op, o in ops["per_op"].items():
        assert o["overhead_us"] == pytest.approx(o["call_us"] - o["kernel_us"])
        # the parts are measured separately and add up to the call
        assert o["kernel_us"] > 0 and o["python_us"] > 0 and o["bridge_us"] > 0
        assert o["kernel_us"] + o["python_us"] + o["bridge_us"] == pytest.approx(o["call_us"])
        assert o["calls_per_token"] > 0 and f"| {op} | {o['calls_per_token']:g} |" in md
    assert ops["per_op"][fused]["calls_per_token"] == 2  # one per layer


@pytest.mark.parametrize("args, message", [
    (["--edgeq-python", "/nonexistent/python"], "is not an executable Python"),
    (["--out", "/nonexistent/dir/t.md"], "no folder /nonexistent/dir"),
    (["--rounds", "0"], "--rounds and --threads must be 1 or more"),
    (["--readme"], "--readme links to the full table: give --out too"),
])
def test_bad_arguments_exit_2(args, message):
    p = subprocess.run([sys.executable, TOOL, "--skip-llama-cpp", "--tiny", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr
