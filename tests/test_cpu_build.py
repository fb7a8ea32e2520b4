"""How the CPU kernel library is built: optimised, for this machine's vector instructions
(EDGEQ_NATIVE, on by default), and its own exp and log1p (which make the scans vectorise) give
libm's fp32 results; one token never wakes an OpenMP team (the thread policy beside ORT's
pool, docs/cpu-runtime.md)."""
from __future__ import annotations

import ctypes
import os
import platform
import re
import subprocess
import sys

from conftest import ROOT
from edgeq.runtime import kernels
from native_build import run


def build() -> str:
    fn = kernels.library().edgeq_cpu_build
    fn.restype = ctypes.c_char_p
    return fn().decode()


def host_flags() -> set[str]:
    text = open("/proc/cpuinfo").read()
    return set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())


def test_library_is_optimised_for_this_cpu():
    opt, isa = build().split()
    assert opt == "optimised", build()
    if platform.machine() == "x86_64":
        flags = host_flags()
        best = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else None
        if best:  # -march=native turns on the widest the machine has
            assert isa == best, f"libedgeq_cpu built for {isa}, this CPU has {best}"


def test_exp_and_log1p_round_like_libm(tmp_path):
    exe = tmp_path / "cpu_math_check"
    # the library's own flags (CMakeLists.txt): no contraction, vectorisable selects, native
    run(["g++", "-std=c++17", "-O3", "-ffp-contract=off", "-fno-trapping-math", "-march=native",
         f"-I{ROOT / 'plugins' / 'common'}", ROOT / "tests" / "support" / "cpu_math_check.cpp",
         "-o", exe])
    out = dict((line.split()[0], line.split()[1:]) for line in run([exe, 2000000]).splitlines())
    assert out["exp"][1] == "0" and float(out["exp"][3]) <= 1.5, out
    assert out["softplus"][1] == "0" and float(out["softplus"][3]) <= 2.0, out
    assert out["ends"] == ["mismatches", "0", "nan", "1"], out


# Every kernel that splits work among threads, at 2^17 elements or more per token: the work
# alone would open a team; one token must not. A process counts its threads before and after.
TEAMS = """
import os, numpy as np
from edgeq.runtime import kernels
threads = lambda: len(os.listdir("/proc/self/task"))
q8 = lambda *s: np.random.default_rng(0).integers(-128, 128, s).astype(np.int8)
f32 = lambda *s: np.ones(s, np.float32)
def calls(t):
    kernels.linear_w4a8(q8(t, 512), q8(1024, 256), f32(1024, 4), 0.1)
    kernels.add_rmsnorm_int8(f32(t, 1 << 17), f32(t, 1 << 17), f32(1 << 17), 1e-5, 0.1)
    kernels.hadamard_int8(f32(t, 1 << 17), 0.1)
    d, n = 8192, 16
    kernels.selective_scan(f32(1, t, d), f32(1, t, d), -f32(d, n), f32(1, t, 1, n),
                           f32(1, t, 1, n), f32(d), f32(d), f32(1, d, n))
kernels.library()
counts = [threads()]
for tokens in (1, 1, 2):
    calls(tokens)
    counts.append(threads())
print(*counts)
"""


def test_one_token_opens_no_openmp_team():
    p = subprocess.run([sys.executable, "-c", TEAMS], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert p.returncode == 0, p.stderr
    before, one, again, two = map(int, p.stdout.split())
    assert one == again == before, "a one-token call started OpenMP threads"
    assert two > before, "two tokens of the same work should open a team (the check sees one)"
