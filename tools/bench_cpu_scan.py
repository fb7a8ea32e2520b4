"""Time two builds of the CPU kernel library's scans side by side, in one run, on the same
inputs: EdgeqSSDScan at the Mamba-2 demo's and Mamba2-2.7B's shapes, EdgeqSelectiveScan at
Mamba-130m's. Also says whether the two builds' outputs are the same bits.

    python tools/bench_cpu_scan.py BEFORE.so AFTER.so [--seconds S] [--out FILE.md]

Build a library with `cmake -S . -B DIR && cmake --build DIR` (DIR/libedgeq_cpu.so) at each
commit to compare."""
from __future__ import annotations

import argparse
import ctypes
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the source tree, as the other tools
from edgeq.ops.table import SELECTIVE_SCAN, SSD_SCAN  # noqa: E402
from edgeq.runtime.kernels import bind  # noqa: E402


def ssd_inputs(batch, L, heads, head_dim, N, groups):
    dim, r = heads * head_dim, np.random.default_rng(0)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    arrays = [f(batch, L, dim), f(batch, L, heads), -np.exp(f(heads)), f(batch, L, groups, N),
              f(batch, L, groups, N), np.ones(heads, np.float32), np.zeros(heads, np.float32),
              np.zeros((batch, dim, N), np.float32), np.empty((batch, L, dim), np.float32),
              np.empty((batch, dim, N), np.float32)]
    ints = [batch, L, dim, heads, groups, N, 1, 256]  # ..., dt_softplus, chunk_size
    return SSD_SCAN.c_symbol, arrays, ints


def scan_inputs(batch, L, dim, N):
    r = np.random.default_rng(0)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    arrays = [f(batch, L, dim), f(batch, L, dim), -np.exp(f(dim, N)), f(batch, L, 1, N),
              f(batch, L, 1, N), np.ones(dim, np.float32), np.zeros(dim, np.float32),
              np.zeros((batch, dim, N), np.float32), f(batch, L, dim),
              np.empty((batch, L, dim), np.float32), np.empty((batch, dim, N), np.float32)]
    ints = [batch, L, dim, dim, 1, N, 1]  # ..., delta_softplus
    return SELECTIVE_SCAN.c_symbol, arrays, ints


CASES = [  # name, inputs
    ("SSD, demo-mamba2 prefill (b1 L128, 12 heads x 32, N 32, 2 groups)",
     lambda: ssd_inputs(1, 128, 12, 32, 32, 2)),
    ("SSD, demo-mamba2 decode (b1 L1)", lambda: ssd_inputs(1, 1, 12, 32, 32, 2)),
    ("SSD, Mamba2-2.7B decode (b1 L1, 80 heads x 64, N 128)",
     lambda: ssd_inputs(1, 1, 80, 64, 128, 1)),
    ("SSD, Mamba2-2.7B prefill (b1 L64)", lambda: ssd_inputs(1, 64, 80, 64, 128, 1)),
    ("selective scan, Mamba-130m prefill (b1 L128, d 1536, N 16)",
     lambda: scan_inputs(1, 128, 1536, 16)),
]


def time_ms(lib, symbol, arrays, ints, seconds) -> tuple[float, list[np.ndarray]]:
    fn = getattr(lib, symbol)
    args = [a.ctypes.data for a in arrays] + ints + [None]
    assert fn(*args) == 0, f"{symbol} failed"
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        fn(*args)
        n += 1
    return (time.perf_counter() - start) / n * 1e3, [a.copy() for a in arrays[-2:]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--seconds", type=float, default=2.0, help="per case and library")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    for p in (args.before, args.after):
        if not p.is_file():
            print(f"bench_cpu_scan: no library at {p}; build one with cmake", file=sys.stderr)
            return 2
    before, after = (bind(ctypes.CDLL(str(p.resolve()))) for p in (args.before, args.after))
    lines = [f"CPU scans, {args.before} vs {args.after}, {platform.machine()}, "
             f"{args.seconds:g} s per case and library", "",
             "| case | before ms | after ms | before / after | same bits |",
             "|---|---|---|---|---|"]
    for name, make in CASES:
        symbol, arrays, ints = make()
        t0, out0 = time_ms(before, symbol, [a.copy() for a in arrays], ints, args.seconds)
        t1, out1 = time_ms(after, symbol, [a.copy() for a in arrays], ints, args.seconds)
        same = all(np.array_equal(a, b) for a, b in zip(out0, out1))
        lines.append(f"| {name} | {t0:.3f} | {t1:.3f} | {t0 / t1:.2f}x | {same} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
