"""ctypes bindings of the C++ CPU kernels (libedgeq_cpu), called with raw pointers.

The library is built and installed into edgeq/lib by `pip install`. EDGEQ_CPU_LIB overrides
where it is looked for.
"""
from __future__ import annotations

import ctypes
import functools
import os
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import EdgeqError
from ..ops.table import CAUSAL_CONV1D, SELECTIVE_SCAN

LIB_NAME = "libedgeq_cpu.so"
_p, _i64, _i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
_ARGTYPES = {
    SELECTIVE_SCAN.c_symbol: [_p] * 11 + [_i64] * 6 + [_i32, _p],
    CAUSAL_CONV1D.c_symbol: [_p] * 6 + [_i64] * 4 + [_i32, _p],
}


def _candidates():
    if os.environ.get("EDGEQ_CPU_LIB"):
        yield Path(os.environ["EDGEQ_CPU_LIB"])
    yield Path(__file__).resolve().parents[1] / "lib" / LIB_NAME
    try:  # the source tree imported while the built library sits in the installed package
        for f in metadata.files("edgeq") or ():
            if f.name == LIB_NAME:
                yield Path(f.locate())
    except metadata.PackageNotFoundError:
        pass


@functools.cache
def library() -> ctypes.CDLL:
    for path in _candidates():
        if path.is_file():
            lib = ctypes.CDLL(str(path))
            for name, argtypes in _ARGTYPES.items():
                fn = getattr(lib, name)
                fn.argtypes, fn.restype = argtypes, ctypes.c_int
            return lib
    raise EdgeqError(f"{LIB_NAME} not found; install edgeq with `pip install .` "
                     "(it builds the kernels) or set EDGEQ_CPU_LIB")


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _call(name: str, *args) -> None:
    rc = getattr(library(), name)(*args)
    if rc != 0:
        raise ValueError(f"{name} rejected its arguments (status {rc})")


def selective_scan(u, delta, A, B, C, D, delta_bias, state, z=None, delta_softplus=1):
    u, delta, A, B, C, D, delta_bias, state = map(_f32, (u, delta, A, B, C, D, delta_bias, state))
    z = None if z is None else _f32(z)
    batch, L, dim = u.shape
    heads, dstate = A.shape
    groups = B.shape[2]
    if (delta.shape != (batch, L, heads) or B.shape != (batch, L, groups, dstate)
            or C.shape != B.shape or D.shape != (dim,) or delta_bias.shape != (heads,)
            or state.shape != (batch, dim, dstate) or (z is not None and z.shape != u.shape)):
        raise ValueError("selective_scan: inconsistent shapes (see docs/ops.md)")
    y = np.empty_like(u)
    state_out = np.empty_like(state)
    _call(SELECTIVE_SCAN.c_symbol, u.ctypes.data, delta.ctypes.data, A.ctypes.data, B.ctypes.data,
          C.ctypes.data, D.ctypes.data, delta_bias.ctypes.data, state.ctypes.data,
          None if z is None else z.ctypes.data, y.ctypes.data, state_out.ctypes.data,
          batch, L, dim, heads, groups, dstate, int(delta_softplus), None)
    return y, state_out


def causal_conv1d(x, weight, bias, state, activation=1):
    x, weight, bias, state = map(_f32, (x, weight, bias, state))
    batch, L, channels = x.shape
    width = weight.shape[1]
    if weight.shape != (channels, width) or bias.shape != (channels,) \
            or state.shape != (batch, width - 1, channels):
        raise ValueError("causal_conv1d: inconsistent shapes (see docs/ops.md)")
    y = np.empty_like(x)
    state_out = np.empty_like(state)
    _call(CAUSAL_CONV1D.c_symbol, x.ctypes.data, weight.ctypes.data, bias.ctypes.data,
          state.ctypes.data, y.ctypes.data, state_out.ctypes.data, batch, L, channels, width,
          int(activation), None)
    return y, state_out
