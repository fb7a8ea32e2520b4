"""The kernel cases on the GPU backends (tests/support/backends.py), against edgeq.ops.reference:
the CUDA kernels at the Mamba-130m and -2.8B widths (Mamba-2-130m and -2.7B heads), batch 1..64,
decode and prefill, fp32, fp16 and int8; the small cases captured in a CUDA graph from a stream
of their own (as the TensorRT runtime replays its decode step), and under compute-sanitizer; the
TensorRT plugins on the GPU (where EDGEQ_TRT_INCLUDE names TensorRT's headers).

The library: EDGEQ_CUDA_LIB or the installed edgeq/lib/libedgeq_cuda.so, else built here for
the visible GPU (needs nvcc)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kernel_cases as kc
from backends import CudaGraph, params
from conftest import ROOT
from edgeq import gpu
from native_build import NVCC

pytestmark = pytest.mark.gpu
pytest.importorskip("cuda.bindings.runtime",
                    reason="cuda-python not installed (pip install cuda-python)")
if reason := gpu.no_gpu_reason():
    pytest.skip(f"no CUDA GPU visible ({reason})", allow_module_level=True)


@pytest.mark.parametrize("backend,kind,case", params(on_gpu=True))
def test_kernel_case(request, backend, kind, case):
    with backend.open(request) as (lib, mem, prefix):
        kc.RUNS[kind](lib, mem, case, prefix=prefix, tol=backend.tolerance)


@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "initcheck", "synccheck"])
def test_compute_sanitizer_finds_nothing(cuda_library, tool):
    # every kernel's small cases, captured in a CUDA graph, under each of compute-sanitizer's tools
    exe = shutil.which("compute-sanitizer") or (
        NVCC and str(Path(NVCC).parent / "compute-sanitizer"))
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip("compute-sanitizer not found (on PATH or beside nvcc)")
    p = subprocess.run(
        [exe, "--tool", tool, "--error-exitcode", "3", sys.executable, "-m", "pytest", "-q", "-x",
         "-p", "no:cacheprovider", "-p", "no:logging", __file__, "-k", CudaGraph.name],
        capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, EDGEQ_CUDA_LIB=cuda_library._name))
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "ERROR SUMMARY: 0 errors" in out, out[-6000:]
    assert f"{len(kc.SMALL)} passed" in out, out[-2000:]
