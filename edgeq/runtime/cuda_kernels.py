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
from pathlib import Path

from ..errors import EdgeqError
from ..ops.table import (ADD_RMSNORM_INT8, CAUSAL_CONV1D, CAUSAL_CONV1D_INT8, EMBEDDING_W4,
                         HADAMARD_INT8, LINEAR_W4A8, SELECTIVE_SCAN, SELECTIVE_SCAN_INT8, SSD_SCAN,
                         SSD_SCAN_INT8)
from .kernels import _ARGTYPES  # the CPU library's: one C ABI, and fp16 takes fp32's signature

LIB_NAME = "libedgeq_cuda.so"
STATUS = {0: "EDGEQ_OK", 1: "EDGEQ_BAD_SHAPE", 2: "EDGEQ_NULL_POINTER", 3: "EDGEQ_CUDA_ERROR"}
OPS = (SELECTIVE_SCAN, CAUSAL_CONV1D, SSD_SCAN, SELECTIVE_SCAN_INT8, CAUSAL_CONV1D_INT8,
       HADAMARD_INT8, ADD_RMSNORM_INT8, LINEAR_W4A8,
       SSD_SCAN_INT8, EMBEDDING_W4)  # the ops the library has kernels for
F16_OPS = (SELECTIVE_SCAN, CAUSAL_CONV1D, SSD_SCAN)  # ... and these with fp16 activations too


def symbol(op, dtype: str = "float32") -> str:
    """The C symbol of `op` for activations of `dtype`: "float16" names the fp16 variant of an
    op in F16_OPS; any other dtype the op's own symbol."""
    return op.c_symbol[:-4] + "_f16" if dtype == "float16" and op in F16_OPS else op.c_symbol


def symbols() -> dict[str, list]:
    """Every symbol of the library, with its argtypes."""
    return {symbol(op, dtype): _ARGTYPES[op.c_symbol] for op in OPS
            for dtype in (("float32", "float16") if op in F16_OPS else ("float32",))}


def bind(lib: ctypes.CDLL, prefix: str = "") -> ctypes.CDLL:
    """Set argtypes/restype of every kernel symbol (named `prefix` + symbol) of `lib`."""
    for name, argtypes in symbols().items():
        fn = getattr(lib, prefix + name)
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return lib


def _candidates():
    if os.environ.get("EDGEQ_CUDA_LIB"):
        yield Path(os.environ["EDGEQ_CUDA_LIB"])
    yield Path(__file__).resolve().parents[1] / "lib" / LIB_NAME


@functools.cache
def library() -> ctypes.CDLL:
    for path in _candidates():
        if path.is_file():
            return bind(ctypes.CDLL(str(path)))
    raise EdgeqError(f"{LIB_NAME} not found; build it with -DEDGEQ_CUDA=ON "
                     "(pip install . -Ccmake.define.EDGEQ_CUDA=ON) or set EDGEQ_CUDA_LIB")


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
