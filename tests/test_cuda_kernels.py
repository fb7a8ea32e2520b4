"""The CUDA kernels on a GPU against edgeq.ops.reference (docs/ops.md): called through ctypes
(edgeq.runtime.cuda_kernels) with device buffers from cuda-python, at the Mamba-130m and
Mamba-2.8B widths (EdgeqSSDScan: Mamba-2-130m and -2.7B), batch 1..64, decode and prefill;
fp32, fp16 and the int8 ops. The small cases also run captured in a CUDA graph from a stream of
their own (as the TensorRT runtime replays its decode step), and under compute-sanitizer.

The library: EDGEQ_CUDA_LIB or the installed edgeq/lib/libedgeq_cuda.so, else built here for
the visible GPU (needs nvcc).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kernel_cases as kc
from edgeq.errors import EdgeqError
from edgeq import gpu
from edgeq.runtime import cuda_kernels
from conftest import ROOT
from native_build import NVCC, cmake_build

pytestmark = pytest.mark.gpu
rt = pytest.importorskip("cuda.bindings.runtime",
                         reason="cuda-python not installed (pip install cuda-python)")


if reason := gpu.no_gpu_reason():
    pytest.skip(f"no CUDA GPU visible ({reason})", allow_module_level=True)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    try:
        return cuda_kernels.library()
    except EdgeqError:
        pass
    if shutil.which("nvcc") is None:
        pytest.skip("libedgeq_cuda.so not found (EDGEQ_CUDA_LIB) and nvcc not on PATH to build it")
    out = tmp_path_factory.mktemp("cuda-lib")
    cmake_build(out, "-DEDGEQ_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native",
                targets=("edgeq_cuda",))
    return cuda_kernels.bind(ctypes.CDLL(str(out / cuda_kernels.LIB_NAME)))


@pytest.fixture
def mem():
    m = kc.DeviceMem()
    yield m
    m.free()


@pytest.mark.parametrize("case", kc.SCAN_GPU, ids=str)
def test_selective_scan(lib, mem, case):
    kc.run_scan(lib, mem, case)


@pytest.mark.parametrize("case", kc.SSD_GPU, ids=str)
def test_ssd_scan(lib, mem, case):
    kc.run_ssd(lib, mem, case)


@pytest.mark.parametrize("case", kc.CONV_GPU, ids=str)
def test_causal_conv1d(lib, mem, case):
    kc.run_conv(lib, mem, case)


@pytest.mark.parametrize("case", kc.HADAMARD_GPU, ids=str)
def test_hadamard_int8(lib, mem, case):
    kc.run_hadamard(lib, mem, case)


@pytest.mark.parametrize("case", kc.NORM_GPU, ids=str)
def test_add_rmsnorm_int8(lib, mem, case):
    kc.run_norm(lib, mem, case)


@pytest.mark.parametrize("case", kc.W4A8_GPU, ids=str)
def test_linear_w4a8(lib, mem, case):
    kc.run_w4a8(lib, mem, case)


@pytest.mark.parametrize("case", kc.EMBED_GPU, ids=str)
def test_embedding_w4(lib, mem, case):
    kc.run_embed(lib, mem, case)


class Captured:
    """`lib` whose kernel calls are recorded from `stream` into a CUDA graph, which then runs
    once: as the TensorRT runtime replays its decode step, plugins and all. A launch on another
    stream, or a call that a capture forbids, breaks the capture; outputs start as NaN, so a
    graph that computes nothing fails the case's checks."""

    def __init__(self, lib, stream):
        self.lib, self.stream = lib, stream

    def __getattr__(self, name: str):
        f = getattr(self.lib, name)
        return lambda *args: self._call(f, args)

    def _call(self, f, args) -> int:
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        gpu.check(rt.cudaStreamBeginCapture(self.stream, mode))
        rc = f(*args[:-1], int(self.stream))
        graph = gpu.check(rt.cudaStreamEndCapture(self.stream))
        try:
            if rc == 0:
                run = gpu.check(rt.cudaGraphInstantiate(graph, 0))
                gpu.check(rt.cudaGraphLaunch(run, self.stream))
                gpu.check(rt.cudaStreamSynchronize(self.stream))
                gpu.check(rt.cudaGraphExecDestroy(run))
        finally:
            gpu.check(rt.cudaGraphDestroy(graph))
        return rc


@pytest.mark.parametrize("kind,case", kc.SMALL, ids=str)
def test_in_a_cuda_graph(lib, mem, kind, case):
    # a stream of its own that does not wait for the null stream: the kernels must go on the
    # stream they are given
    stream = gpu.check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    try:
        kc.RUNS[kind](Captured(lib, stream), mem, case)
    finally:
        gpu.check(rt.cudaStreamDestroy(stream))


@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "initcheck", "synccheck"])
def test_compute_sanitizer_finds_nothing(lib, tool):
    # every kernel's small cases (test_in_a_cuda_graph) under each of compute-sanitizer's tools
    exe = shutil.which("compute-sanitizer") or (
        NVCC and str(Path(NVCC).parent / "compute-sanitizer"))
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip("compute-sanitizer not found (on PATH or beside nvcc)")
    p = subprocess.run(
        [exe, "--tool", tool, "--error-exitcode", "3", sys.executable, "-m", "pytest", "-q", "-x",
         "-p", "no:cacheprovider", "-p", "no:logging", __file__, "-k", "test_in_a_cuda_graph"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, EDGEQ_CUDA_LIB=lib._name))
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "ERROR SUMMARY: 0 errors" in out, out[-6000:]
    assert f"{len(kc.SMALL)} passed" in out, out[-2000:]
