"""The TensorRT plugins driven as TensorRT builds and runs them (tests/trt_harness.cpp) over the
kernel cases, each checked against edgeq.ops.reference like the kernels themselves: on the CPU
emulation of the kernels wherever TensorRT's headers and nvcc are (the adapters' code: fields,
formats, shapes, serialization, and which buffer and value goes to which kernel argument), and
on the real library where a GPU is visible too."""
from __future__ import annotations

import pytest

import kernel_cases as kc
from edgeq.runtime import cuda_kernels
from native_build import cmake_build
from plugin_harness import PluginLib, build_emulated_plugins, build_harness
from test_cuda_build import NVCC, TRT_INCLUDE

if not TRT_INCLUDE:
    pytest.skip("EDGEQ_TRT_INCLUDE unset: set it to a TensorRT include/ folder (NvInferRuntime.h) "
                "to build and run the TensorRT plugins", allow_module_level=True)
if NVCC is None:
    pytest.skip("nvcc not on PATH: CUDA code not built", allow_module_level=True)

RUNS = {"scan": kc.run_scan, "ssd": kc.run_ssd, "conv": kc.run_conv,
        "hadamard": kc.run_hadamard, "norm": kc.run_norm, "w4a8": kc.run_w4a8}
SMALL = [(k, c) for k, cases in (("scan", kc.SCAN_SMALL), ("ssd", kc.SSD_SMALL),
                                 ("conv", kc.CONV_SMALL), ("hadamard", kc.HADAMARD_SMALL),
                                 ("norm", kc.NORM_SMALL), ("w4a8", kc.W4A8_SMALL))
         for c in cases]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return build_harness(NVCC, TRT_INCLUDE, tmp_path_factory.mktemp("harness"))


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    return build_emulated_plugins(NVCC, TRT_INCLUDE, tmp_path_factory.mktemp("emu-plugins"))


@pytest.fixture(scope="module")
def on_gpu(tmp_path_factory):
    if reason := cuda_kernels.no_gpu_reason():
        pytest.skip(f"no CUDA GPU visible ({reason})")
    out = tmp_path_factory.mktemp("trt-plugins")
    cmake_build(out, "-DEDGEQ_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native",
                f"-DTENSORRT_INCLUDE_DIR={TRT_INCLUDE}", targets=("edgeq_trt_plugins",))
    return out / "libedgeq_trt_plugins.so"


@pytest.mark.parametrize("kind,case", SMALL, ids=str)
def test_plugin_on_emulated_kernels(harness, emulated, kind, case):
    mem = kc.HostMem()
    RUNS[kind](PluginLib(harness, emulated, mem), mem, case)


@pytest.mark.gpu
@pytest.mark.parametrize("kind,case", SMALL, ids=str)
def test_plugin_on_gpu(harness, on_gpu, kind, case):
    mem = kc.DeviceMem()
    try:
        RUNS[kind](PluginLib(harness, on_gpu, mem), mem, case)
    finally:
        mem.free()
