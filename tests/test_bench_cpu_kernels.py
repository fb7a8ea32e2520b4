"""tools/bench_cpu_kernels.py on the installed CPU library against itself: it runs every case,
finds the same bits, and refuses a missing library (exit 2)."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT
from edgeq.runtime import kernels

TOOL = ROOT / "tools" / "bench_cpu_kernels.py"


def test_compares_two_builds(tmp_path):
    lib = kernels.library()._name
    out = tmp_path / "table.md"
    p = subprocess.run([sys.executable, TOOL, lib, lib, "--seconds", "0.01", "--out", out],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = [line for line in out.read_text().splitlines()[4:]]
    assert len(rows) == 14 and all(r.endswith("| True |") for r in rows)
    assert "(optimised " in out.read_text().splitlines()[0]


def test_missing_library_exits_2(tmp_path):
    p = subprocess.run([sys.executable, TOOL, tmp_path / "none.so", tmp_path / "none.so"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "no library at" in p.stderr and "Traceback" not in p.stderr
