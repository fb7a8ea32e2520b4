"""Builds of the native code for the tests: CMake into a temporary folder, and nvcc on one file."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
SUPPORT = Path(__file__).resolve().parent  # this folder: the harness sources

NVCC = shutil.which("nvcc")
TRT_INCLUDE = os.environ.get("EDGEQ_TRT_INCLUDE", "")
# EDGEQ_SANITIZE=address (with undefined) or thread: the host code these builds make (the CPU
# emulation of the CUDA kernels, and the TensorRT harness and adapters over it) instrumented,
# for test_sanitizers.py, which runs the tests in a Python with the sanitizer's runtime preloaded
SANITIZE = os.environ.get("EDGEQ_SANITIZE", "")
SANITIZERS = {"address": ("address", "undefined"), "thread": ("thread",)}


def sanitizer_flags(kind: str = SANITIZE) -> list[str]:
    """g++ options of a sanitizer build (none for "")."""
    if not kind:
        return []
    if kind not in SANITIZERS:
        raise ValueError(f"EDGEQ_SANITIZE={kind!r}: use one of {', '.join(SANITIZERS)}")
    # UBSan's findings abort like ASan's instead of printing and going on
    stop = ["-fno-sanitize-recover=all"] if kind == "address" else []
    return ["-g", "-fno-omit-frame-pointer", *(f"-fsanitize={s}" for s in SANITIZERS[kind]), *stop]


def nvcc_host(kind: str = SANITIZE) -> list[str]:
    """nvcc's options for position-independent host code, instrumented when `kind` is set."""
    return ["-Xcompiler", ",".join(["-fPIC", *sanitizer_flags(kind)])]


def run(cmd: list) -> str:
    # a sanitizer's runtime preloaded into the tests' Python stays out of the tools they run
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    assert p.returncode == 0, \
        f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return p.stdout


def cmake_build(build: Path, *defines: str, targets: tuple[str, ...] = ()) -> float:
    """Configure and build CMakeLists.txt into `build`; returns the seconds taken."""
    assert shutil.which("cmake"), "cmake not on PATH"
    start = time.monotonic()
    run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", *defines])
    target_args = [a for t in targets for a in ("--target", t)]
    run(["cmake", "--build", build, "--parallel", "2", *target_args])
    return time.monotonic() - start


def exported(lib: Path) -> set[str]:
    """Names a shared library exports (defined dynamic symbols)."""
    out = run(["nm", "-D", "--defined-only", lib])
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def undefined(lib: Path) -> set[str]:
    out = run(["nm", "-D", "-u", lib])
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def emulation_object(out: Path) -> Path:
    """tests/support/cuda_host_emu.cu compiled (PTX only: its device code does not run here), for a
    library of the emulated kernels and for the plugins linked over them."""
    obj = out / "cuda_host_emu.o"
    run([NVCC, "-std=c++17", "-O2", *nvcc_host(), "-gencode",
         "arch=compute_87,code=compute_87", "-I", ROOT / "plugins" / "common", "-c",
         SUPPORT / "cuda_host_emu.cu", "-o", obj])
    return obj
