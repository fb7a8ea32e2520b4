"""The native libraries the kernel and plugin tests run, as fixtures built once per session where
their tools are (nvcc, TensorRT's headers, cuda-python and a GPU); without them, the tests that
need one skip and say why. conftest.py imports them."""
from __future__ import annotations

import ctypes
import shutil

import pytest

from edgeq import gpu
from edgeq.errors import EdgeqError
from edgeq.runtime import cuda_kernels
import native_build
from native_build import NVCC, TRT_INCLUDE, cmake_build, nvcc_host, run


def _needs_nvcc():
    if NVCC is None:
        pytest.skip("nvcc not on PATH: CUDA code not built")


def _needs_trt():
    if not TRT_INCLUDE:
        pytest.skip("EDGEQ_TRT_INCLUDE unset: set it to a TensorRT include/ folder "
                    "(NvInferRuntime.h) to build and run the TensorRT plugins")
    _needs_nvcc()


def _needs_gpu():
    pytest.importorskip("cuda.bindings.runtime",
                        reason="cuda-python not installed (pip install cuda-python)")
    if reason := gpu.no_gpu_reason():
        pytest.skip(f"no CUDA GPU visible ({reason})")


@pytest.fixture(scope="session")
def emulation_object(tmp_path_factory):
    """The CPU emulation of the CUDA kernels, compiled once for the libraries that link it."""
    _needs_nvcc()
    return native_build.emulation_object(tmp_path_factory.mktemp("emu-object"))


@pytest.fixture(scope="session")
def emulated_kernels(emulation_object, tmp_path_factory):
    """The CUDA kernels' per-thread code run on the CPU: the C ABI with an emu_ prefix."""
    out = tmp_path_factory.mktemp("emu") / "libemu.so"
    run([NVCC, "-shared", *nvcc_host(), emulation_object, "-o", out])
    return cuda_kernels.bind(ctypes.CDLL(str(out)), prefix="emu_")


@pytest.fixture(scope="session")
def cuda_library(tmp_path_factory):
    """libedgeq_cuda: EDGEQ_CUDA_LIB or the installed one, else built here for the visible GPU."""
    _needs_gpu()
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


@pytest.fixture(scope="session")
def harness(tmp_path_factory):
    """tests/support/trt_harness.cpp: drives a plugin library as TensorRT does."""
    from plugin_harness import build_harness
    _needs_trt()
    return build_harness(NVCC, TRT_INCLUDE, tmp_path_factory.mktemp("harness"))


@pytest.fixture(scope="session")
def emulated_plugins(emulation_object, tmp_path_factory):
    """The TensorRT plugin library over the CPU emulation of the kernels."""
    from plugin_harness import build_emulated_plugins
    _needs_trt()
    return build_emulated_plugins(NVCC, TRT_INCLUDE, emulation_object,
                                  tmp_path_factory.mktemp("emu-plugins"))


@pytest.fixture(scope="session")
def gpu_plugins(tmp_path_factory):
    """The TensorRT plugin library built for the visible GPU."""
    _needs_trt()
    _needs_gpu()
    out = tmp_path_factory.mktemp("trt-plugins")
    cmake_build(out, "-DEDGEQ_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native",
                f"-DTENSORRT_INCLUDE_DIR={TRT_INCLUDE}", targets=("edgeq_trt_plugins",))
    return out / "libedgeq_trt_plugins.so"
