"""ctypes bindings of the CUDA kernels (libedgeq_cuda): the C ABI of plugins/common/edgeq_kernels.h
with device pointers and a cudaStream_t, plus the fp16-activation variants of the fp ops.

Built with the CMake option EDGEQ_CUDA=ON (`pip install . -Ccmake.define.EDGEQ_CUDA=ON` installs
it into edgeq/lib next to libedgeq_cpu). EDGEQ_CUDA_LIB overrides where it is looked for. The
caller owns device memory and streams (e.g. cuda-python); this module only binds the symbols.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os

from ..errors import EdgeqError
from ..ops.table import OPS
from . import native

LIB_NAME = "libedgeq_cuda.so"
STATUS = {0: "EDGEQ_OK", 1: "EDGEQ_BAD_SHAPE", 2: "EDGEQ_NULL_POINTER", 3: "EDGEQ_CUDA_ERROR"}


def symbol(op, dtype: str = "float32") -> str:
    """The C symbol of `op` for activations of `dtype`: "float16" names the op's fp16 variant
    where it has one; any other dtype the op's own symbol."""
    return op.f16_symbol if dtype == "float16" and op.f16_symbol else op.c_symbol


def symbols() -> dict[str, list]:
    """Every symbol of the library, with its argtypes."""
    return native.symbols(OPS, f16=True)


def bind(lib: ctypes.CDLL, prefix: str = "") -> ctypes.CDLL:
    """Set argtypes/restype of every kernel symbol (named `prefix` + symbol) of `lib`."""
    return native.bind(lib, symbols(), prefix)


@functools.cache
def library() -> ctypes.CDLL:
    return native.load(LIB_NAME, "EDGEQ_CUDA_LIB", symbols(),
                       "build it with -DEDGEQ_CUDA=ON (pip install . -Ccmake.define.EDGEQ_CUDA=ON)")


def call(name: str, *args, lib: ctypes.CDLL | None = None) -> None:
    """Call kernel `name` with device pointers (ints), shapes and a stream (int or None)."""
    rc = getattr(lib or library(), name)(*args)
    if rc != 0:
        raise ValueError(f"{name} failed: {STATUS.get(rc, rc)}")


@contextlib.contextmanager
def _env(name: str, value: str | None):
    """Environment variable `name` set to `value` inside (None: left as it is)."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def max_scan_parts(cap: int):
    """EDGEQ_SCAN_MAX_PARTS=cap for the scans launched inside: the most threads a prompt's
    channel is cut over, in time or in states (plugins/selective_scan); 1 keeps prompts on the
    sequential kernel; 0 leaves the environment as it is."""
    return _env("EDGEQ_SCAN_MAX_PARTS", str(cap) if cap else None)


def ssd_chunked(on: bool):
    """EDGEQ_SSD_CHUNKED=0 inside unless `on`: the SSD scans' prompts off the tensor-core
    chunked kernel (plugins/ssd_scan), onto the split-state one."""
    return _env("EDGEQ_SSD_CHUNKED", None if on else "0")


def row_split(on: bool):
    """EDGEQ_ROW_SPLIT=0 inside unless `on`: the Hadamard and add + RMSNorm kernels keep one
    block per row at small batches instead of splitting rows over the SMs."""
    return _env("EDGEQ_ROW_SPLIT", None if on else "0")
