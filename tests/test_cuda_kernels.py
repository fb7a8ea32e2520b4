"""The CUDA kernels on a GPU against edgeq.ops.reference (docs/ops.md): called through ctypes
(edgeq.runtime.cuda_kernels) with device buffers from cuda-python, at the Mamba-130m and
Mamba-2.8B widths (EdgeqSSDScan: Mamba-2-130m and -2.7B), batch 1..64, decode and prefill;
fp32, fp16 and the int8 ops.

The library: EDGEQ_CUDA_LIB or the installed edgeq/lib/libedgeq_cuda.so, else built here for
the visible GPU (needs nvcc).
"""
from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

import kernel_cases as kc
from edgeq.errors import EdgeqError
from edgeq.runtime import cuda_kernels
from native_build import cmake_build

pytestmark = pytest.mark.gpu
rt = pytest.importorskip("cuda.bindings.runtime",
                         reason="cuda-python not installed (pip install cuda-python)")


if reason := cuda_kernels.no_gpu_reason():
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


def test_runs_on_a_stream(lib, mem):
    # the kernels go on the stream they are given; results are there after it synchronises
    stream = cuda_kernels.check(rt.cudaStreamCreate())
    try:
        c = kc.Conv(2, 9, 256)
        x = kc.conv_inputs(c)
        p = {k: mem.put(v.numpy()) for k, v in x.items()}
        y = mem.empty((c.batch, c.L, c.C), "float32")
        rc = lib.edgeq_causal_conv1d_f32(p["x"], p["weight"], p["bias"], p["state"], y,
                                         p["state"], c.batch, c.L, c.C, c.W, 1, int(stream))
        assert rc == 0
        cuda_kernels.check(rt.cudaStreamSynchronize(stream))
        want, _ = kc.reference.causal_conv1d(**x, activation=1)
        np.testing.assert_allclose(mem.get(y), want.numpy(), rtol=1e-4, atol=1e-5)
    finally:
        cuda_kernels.check(rt.cudaStreamDestroy(stream))
