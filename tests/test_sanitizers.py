"""The native code under the compiler's sanitizers: the CPU's stand-in for compute-sanitizer.
AddressSanitizer with UndefinedBehaviorSanitizer over the CPU kernels (the ops' tests) and over
the CUDA kernels' code on the CPU emulation (and the TensorRT adapters over it where headers are
given); ThreadSanitizer over the emulated kernels, whose threads share memory between barriers
and warp collectives as a block's do. Each runs existing tests in a Python with the sanitizer's
runtime preloaded (EDGEQ_SANITIZE instruments the builds, tests/support/native_build.py); a
planted fault shows each sanitizer is live."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from native_build import NVCC, TRT_INCLUDE, cmake_build, run, sanitizer_flags

# the sanitizer's runtime, and libstdc++ loaded right after it: ASan's C++ exception hook finds
# no __cxa_throw when a library loaded later (onnx) throws
RUNTIME = {"address": ("libasan.so", "libstdc++.so"), "thread": ("libtsan.so",)}
REPORT = {"address": "AddressSanitizer: heap-buffer-overflow", "thread": "ThreadSanitizer: data race"}
CANARY = {"address": "edgeq_canary_overflow(16)", "thread": "edgeq_canary_race()"}


def runtime(kind: str) -> str:
    paths = [run(["g++", f"-print-file-name={name}"]).strip() for name in RUNTIME[kind]]
    if not all(os.path.isabs(p) for p in paths):
        pytest.skip(f"g++ lacks {RUNTIME[kind][0]} (Debian: libasan8, libtsan2)")
    return " ".join(paths)


def sanitized(kind: str, cmd: list, **env) -> subprocess.CompletedProcess:
    """cmd in an environment whose Python preloads the sanitizer; torch's OpenMP threads
    (uninstrumented) stay off under ThreadSanitizer."""
    env = dict(os.environ, EDGEQ_SANITIZE=kind, LD_PRELOAD=runtime(kind),
               ASAN_OPTIONS="detect_leaks=0", TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0",
               **({"OMP_NUM_THREADS": "1"} if kind == "thread" else {}), **env)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=ROOT)


def pytest_clean(kind: str, args: list, **env) -> str:
    """Runs pytest on args sanitized; every test must pass, none skip, nothing reported."""
    # -s: a sanitizer's report ends the process before pytest would show captured output
    p = sanitized(kind, [sys.executable, "-m", "pytest", "-q", "-x", "-s", "-p", "no:cacheprovider",
                         "-p", "no:logging", *args], **env)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "Sanitizer" not in out, out[-6000:]
    summary = p.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
    return summary


@pytest.mark.parametrize("kind", sorted(RUNTIME))
def test_sanitizer_reports_a_planted_fault(kind, tmp_path):
    lib = tmp_path / "libcanary.so"
    run(["g++", "-std=c++17", "-shared", "-fPIC", *sanitizer_flags(kind),
         ROOT / "tests" / "support" / "sanitizer_canary.cpp", "-o", lib, "-pthread"])
    p = sanitized(kind, [sys.executable, "-c",
                         f"import ctypes; ctypes.CDLL({str(lib)!r}).{CANARY[kind]}"])
    assert p.returncode != 0 and REPORT[kind] in p.stderr, p.stderr[-3000:]


def test_cpu_kernels_under_address_sanitizer(tmp_path):
    flags = " ".join(sanitizer_flags("address"))
    cmake_build(tmp_path, f"-DCMAKE_CXX_FLAGS={flags}", targets=("edgeq_cpu",))
    tests = [f"tests/{t}.py" for t in ("test_ops", "test_ops_int8", "test_linear_w4a8",
                                        "test_ort_ops", "test_backend_ops")]
    # test_backend_ops' cases on the CPU library
    tests += ["-k", "not torch- and not cuda- and not plugin-"]
    print(pytest_clean("address", tests, EDGEQ_CPU_LIB=str(tmp_path / "libedgeq_cpu.so")))


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH: CUDA code not built")
@pytest.mark.parametrize("kind", sorted(RUNTIME))
def test_emulated_cuda_kernels_under_sanitizer(kind):
    tests = ["tests/test_backend_ops.py", "tests/test_cuda_build.py"]
    k = "cuda-emulation or kernel_code_on"
    if TRT_INCLUDE and kind == "address":
        # the TensorRT adapters' fields, serialization and enqueue over host memory; not under
        # ThreadSanitizer, which ONNX Runtime's own (uninstrumented) thread pool trips
        tests, k = [*tests, "tests/test_trt_plugins.py"], f"{k} or plugin-emulation or emulated"
    print(pytest_clean(kind, [*tests, "-k", k]))
