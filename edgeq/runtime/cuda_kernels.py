"""ctypes bindings of the CUDA kernels (libedgeq_cuda): the C ABI of plugins/common/edgeq_kernels.h
with device pointers and a cudaStream_t, plus the fp16-activation variants.

Built with the CMake option EDGEQ_CUDA=ON (`pip install . -Ccmake.define.EDGEQ_CUDA=ON` installs
it into edgeq/lib next to libedgeq_cpu). EDGEQ_CUDA_LIB overrides where it is looked for. The
caller owns device memory and streams (e.g. cuda-python); this module only binds the symbols.
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from ..errors import EdgeqError
from ..ops.table import CAUSAL_CONV1D, SELECTIVE_SCAN

LIB_NAME = "libedgeq_cuda.so"
STATUS = {0: "EDGEQ_OK", 1: "EDGEQ_BAD_SHAPE", 2: "EDGEQ_NULL_POINTER", 3: "EDGEQ_CUDA_ERROR"}
_p, _i64, _i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
_ARGS = {SELECTIVE_SCAN: [_p] * 11 + [_i64] * 6 + [_i32, _p],
         CAUSAL_CONV1D: [_p] * 6 + [_i64] * 4 + [_i32, _p]}


def symbol(op, dtype: str = "float32") -> str:
    """The C symbol of `op` for activations of `dtype` ("float32" or "float16")."""
    assert op.c_symbol.endswith("_f32")
    return op.c_symbol if dtype == "float32" else op.c_symbol[:-4] + "_f16"


def bind(lib: ctypes.CDLL, prefix: str = "") -> ctypes.CDLL:
    """Set argtypes/restype of every kernel symbol (named `prefix` + symbol) of `lib`."""
    for op, argtypes in _ARGS.items():
        for dtype in ("float32", "float16"):
            fn = getattr(lib, prefix + symbol(op, dtype))
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
