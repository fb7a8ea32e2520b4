"""Time two builds of the CPU kernel library side by side, in one run, on the same inputs: the
scans, the int8 conv, Hadamard and AddRMSNorm at Mamba-130m's widths (d_inner 1536; batch-1
decode and a 128-token prompt), and EdgeqSSDScan at the Mamba-2 demo's and Mamba2-2.7B's.
Times are of the C call alone (the inputs made once, by edgeq.runtime.kernels' own wrappers);
the table also says whether the two builds' outputs are the same bits, and how each library
was compiled. Prompts run on one OpenMP thread unless OMP_NUM_THREADS says otherwise.

    python tools/bench_cpu_kernels.py BEFORE.so AFTER.so [--seconds S] [--out FILE.md]

Build a library with `cmake -S . -B DIR && cmake --build DIR` (DIR/libedgeq_cpu.so) at each
commit to compare."""
from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before libgomp loads: prompts on one thread
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the source tree, as the other tools
from edgeq.runtime import kernels  # noqa: E402

R = np.random.default_rng(0)


def f32(*s):
    return R.standard_normal(s).astype(np.float32)


def i8(*s):
    return R.integers(-128, 128, s, dtype=np.int8)


def ssd(L, heads, head_dim, N, groups):
    dim = heads * head_dim
    args = (f32(1, L, dim), f32(1, L, heads), -np.exp(f32(heads)), f32(1, L, groups, N),
            f32(1, L, groups, N), np.ones(heads, np.float32), np.zeros(heads, np.float32),
            np.zeros((1, dim, N), np.float32))
    return lambda: kernels.ssd_scan(*args)


def scan(L, dim=1536, N=16):
    args = (f32(1, L, dim), f32(1, L, dim), -np.exp(f32(dim, N)), f32(1, L, 1, N),
            f32(1, L, 1, N), np.ones(dim, np.float32), np.zeros(dim, np.float32),
            np.zeros((1, dim, N), np.float32), f32(1, L, dim))
    return lambda: kernels.selective_scan(*args)


def scan_int8(L, dim=1536, N=16):
    args = (i8(1, L, dim), i8(1, L, dim), -np.exp(f32(dim, N)), i8(1, L, 1, N), i8(1, L, 1, N),
            np.ones(dim, np.float32), np.zeros(dim, np.float32), f32(1, dim, N), i8(1, L, dim),
            0.02, 0.01, 0.03, 0.03, 0.05)
    return lambda: kernels.selective_scan_int8(*args)


def conv_int8(L, dim=1536, width=4):
    args = (i8(1, L, dim), i8(dim, width), f32(dim), i8(1, width - 1, dim), 0.05,
            np.full(dim, 0.01, np.float32), 0.04)
    return lambda: kernels.causal_conv1d_int8(*args)


def hadamard_int8(L, dim=1536):
    x = f32(1, L, dim)
    return lambda: kernels.hadamard_int8(x, 0.1)


def add_rmsnorm_int8(L, d=768):
    args = (f32(1, L, d), f32(1, L, d), f32(d), 1e-5, 0.03)
    return lambda: kernels.add_rmsnorm_int8(*args)


CASES = [  # name, a call of the kernel's wrapper
    ("SSD, demo-mamba2 prefill (b1 L128, 12 heads x 32, N 32, 2 groups)", ssd(128, 12, 32, 32, 2)),
    ("SSD, demo-mamba2 decode (b1 L1)", ssd(1, 12, 32, 32, 2)),
    ("SSD, Mamba2-2.7B decode (b1 L1, 80 heads x 64, N 128)", ssd(1, 80, 64, 128, 1)),
    ("SSD, Mamba2-2.7B prefill (b1 L64)", ssd(64, 80, 64, 128, 1)),
    ("selective scan, Mamba-130m prefill (b1 L128, d 1536, N 16)", scan(128)),
    ("selective scan, Mamba-130m decode (b1 L1)", scan(1)),
    ("selective scan int8, Mamba-130m prefill (b1 L128)", scan_int8(128)),
    ("selective scan int8, Mamba-130m decode (b1 L1)", scan_int8(1)),
    ("causal conv1d int8, Mamba-130m prefill (b1 L128, d 1536, width 4)", conv_int8(128)),
    ("causal conv1d int8, Mamba-130m decode (b1 L1)", conv_int8(1)),
    ("Hadamard int8, Mamba-130m prefill (128 rows of 1536)", hadamard_int8(128)),
    ("Hadamard int8, Mamba-130m decode (1 row)", hadamard_int8(1)),
    ("AddRMSNorm int8, Mamba-130m prefill (128 rows of 768)", add_rmsnorm_int8(128)),
    ("AddRMSNorm int8, Mamba-130m decode (1 row)", add_rmsnorm_int8(1)),
]


def time_ms(lib: ctypes.CDLL, call, seconds: float) -> tuple[float, list[np.ndarray]]:
    """ms per kernel call with `lib` behind the wrapper `call`, and the call's outputs. The
    timing runs inside the wrapper's C call, while the arrays it made are alive; the scans
    write a new state array, so repeated calls compute the same thing."""
    ms = []

    def timed(name, *args):
        fn = getattr(lib, name)
        if fn(*args) != 0:
            raise ValueError(f"{name} rejected its arguments")
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            fn(*args)
            n += 1
        ms.append((time.perf_counter() - start) / n * 1e3)

    plain, kernels._call = kernels._call, timed
    try:
        out = call()
    finally:
        kernels._call = plain
    return ms[0], [np.array(a) for a in (out if isinstance(out, tuple) else (out,))]


def build(lib: ctypes.CDLL) -> str:
    fn = getattr(lib, "edgeq_cpu_build", None)  # newer than some libraries compared
    if fn is None:
        return "not recorded"
    fn.restype = ctypes.c_char_p
    return fn().decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--seconds", type=float, default=2.0, help="per case and library")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    for p in (args.before, args.after):
        if not p.is_file():
            print(f"bench_cpu_kernels: no library at {p}; build one with cmake", file=sys.stderr)
            return 2
    before, after = (kernels.bind(ctypes.CDLL(str(p.resolve()))) for p in (args.before, args.after))
    lines = [f"CPU kernels, {args.before} ({build(before)}) vs {args.after} ({build(after)}), "
             f"{platform.machine()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
             f"{args.seconds:g} s per case and library", "",
             "| case | before ms | after ms | before / after | same bits |",
             "|---|---|---|---|---|"]
    for name, call in CASES:
        t0, out0 = time_ms(before, call, args.seconds)
        t1, out1 = time_ms(after, call, args.seconds)
        same = all(np.array_equal(a, b) for a, b in zip(out0, out1))
        lines.append(f"| {name} | {t0:.3f} | {t1:.3f} | {t0 / t1:.2f}x | {same} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
