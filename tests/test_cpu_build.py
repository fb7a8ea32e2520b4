"""How the CPU kernel library is built: optimised, for this machine's vector instructions
(EDGEQ_NATIVE, on by default), and its own exp and log1p (which make the scans vectorise) give
libm's fp32 results."""
from __future__ import annotations

import ctypes
import platform
import re

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
