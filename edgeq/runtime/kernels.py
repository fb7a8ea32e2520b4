"""ctypes bindings of the C++ CPU kernels (libedgeq_cpu), called with raw pointers.

The library is built and installed into edgeq/lib by `pip install`. EDGEQ_CPU_LIB overrides
where it is looked for.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from ..ops.table import (ADD_RMSNORM_INT8, CAUSAL_CONV1D, CAUSAL_CONV1D_INT8, EMBEDDING_W4,
                         HADAMARD_INT8, LINEAR_W4A8, OPS, SELECTIVE_SCAN, SELECTIVE_SCAN_INT8,
                         SSD_SCAN, SSD_SCAN_INT8)
from . import native
from .native import Scales

LIB_NAME = "libedgeq_cpu.so"
SYMBOLS = native.symbols(OPS, f16=False)  # the CPU library has no fp16 variants


def bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Set argtypes/restype of every kernel symbol of a CPU kernel library."""
    return native.bind(lib, SYMBOLS)


@functools.cache
def library() -> ctypes.CDLL:
    return native.load(LIB_NAME, "EDGEQ_CPU_LIB", SYMBOLS,
                       "install edgeq with `pip install .` (it builds the kernels)")


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _exact(a, dtype=np.int8) -> np.ndarray:
    """A tensor of exactly `dtype` (int8, fp16): casting one would change its values."""
    a = np.asarray(a)
    if a.dtype != dtype:
        raise ValueError(f"expected an {np.dtype(dtype)} tensor, got {a.dtype}")
    return np.ascontiguousarray(a)


def _ptr(a):
    """The address of an array's data through a ctypes view of a writable buffer: `a.ctypes.data`
    builds numpy's ctypes helper on every access, a few times slower, and a decode step takes
    hundreds of these pointers (docs/cpu-runtime.md)."""
    if a is None:
        return None
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError):  # read-only or empty
        return a.ctypes.data


def _scales(values) -> np.ndarray:
    """A scale attribute (a number or a sequence) as its fp32 values."""
    if isinstance(values, np.ndarray) and values.dtype == np.float32 and values.ndim == 1:
        return values  # ort_ops' parsed attributes, shared between calls
    return np.array(values, np.float32).reshape(-1)


_STRUCTS: dict[int, tuple[np.ndarray, Scales]] = {}


def _struct(a: np.ndarray) -> Scales:  # the caller keeps `a` alive until the call returns
    if a.flags.writeable:
        return Scales(_ptr(a), a.size)
    # a read-only array is an attribute's values, parsed once (ort_ops._floats): its struct
    # is made once too, kept beside it so that the id stays its own
    hit = _STRUCTS.get(id(a))
    if hit is None or hit[0] is not a:
        if len(_STRUCTS) > 4096:
            _STRUCTS.clear()
        hit = _STRUCTS[id(a)] = (a, Scales(a.ctypes.data, a.size))
    return hit[1]


def _call(name: str, *args) -> None:
    rc = getattr(library(), name)(*args)
    if rc != 0:
        raise ValueError(f"{name} rejected its arguments (status {rc})")


def _scan_dims(u, delta, A, B, C, D, delta_bias, state, z):
    batch, L, dim = u.shape
    heads, dstate = A.shape
    groups = B.shape[2]
    if (delta.shape != (batch, L, heads) or B.shape != (batch, L, groups, dstate)
            or C.shape != B.shape or D.shape != (dim,) or delta_bias.shape != (heads,)
            or state.shape != (batch, dim, dstate) or (z is not None and z.shape != u.shape)):
        raise ValueError("selective_scan: inconsistent shapes (see docs/ops.md)")
    return batch, L, dim, heads, groups, dstate


def selective_scan(u, delta, A, B, C, D, delta_bias, state, z=None, delta_softplus=1):
    u, delta, A, B, C, D, delta_bias, state = map(_f32, (u, delta, A, B, C, D, delta_bias, state))
    z = None if z is None else _f32(z)
    dims = _scan_dims(u, delta, A, B, C, D, delta_bias, state, z)
    y, state_out = np.empty_like(u), np.empty_like(state)
    _call(SELECTIVE_SCAN.c_symbol, *map(_ptr, (u, delta, A, B, C, D, delta_bias, state, z, y,
                                               state_out)), *dims, int(delta_softplus), None)
    return y, state_out


def _ssd_dims(x, dt, A, B, C, D, dt_bias, state):
    heads = A.shape[0]
    # the per-channel form's shape checks, with A and D per head
    dims = _scan_dims(x, dt, np.empty((heads, B.shape[3]), np.float32), B, C,
                      np.empty(x.shape[2], np.float32), dt_bias, state, None)
    if A.shape != (heads,) or D.shape != (heads,):
        raise ValueError("ssd_scan: A and D must be [heads] (see docs/ops.md)")
    return dims


def ssd_scan(x, dt, A, B, C, D, dt_bias, state, dt_softplus=1, chunk_size=256):
    x, dt, A, B, C, D, dt_bias, state = map(_f32, (x, dt, A, B, C, D, dt_bias, state))
    dims = _ssd_dims(x, dt, A, B, C, D, dt_bias, state)
    y, state_out = np.empty_like(x), np.empty_like(state)
    _call(SSD_SCAN.c_symbol, *map(_ptr, (x, dt, A, B, C, D, dt_bias, state, y, state_out)), *dims,
          int(dt_softplus), int(chunk_size), None)
    return y, state_out


def ssd_scan_int8(x, dt, A, B, C, D, dt_bias, state, x_scale, dt_scale, B_scale, C_scale,
                  dt_softplus=1, chunk_size=256):
    x, dt, B, C = map(_exact, (x, dt, B, C))
    state = _exact(state, np.float16)  # the fp16 state cache
    A, D, dt_bias = map(_f32, (A, D, dt_bias))
    dims = _ssd_dims(x, dt, A, B, C, D, dt_bias, state)
    y, state_out = np.empty(x.shape, np.float32), np.empty_like(state)
    scales = [_scales(v) for v in (x_scale, dt_scale, B_scale, C_scale)]
    _call(SSD_SCAN_INT8.c_symbol, *map(_ptr, (x, dt, A, B, C, D, dt_bias, state, y, state_out)),
          *dims, *map(_struct, scales), int(dt_softplus), int(chunk_size), None)
    return y, state_out


def selective_scan_int8(u, delta, A, B, C, D, delta_bias, state, z, u_scale, delta_scale,
                        B_scale, C_scale, z_scale, delta_softplus=1):
    u, delta, B, C, z = map(_exact, (u, delta, B, C, z))
    A, D, delta_bias, state = map(_f32, (A, D, delta_bias, state))
    dims = _scan_dims(u, delta, A, B, C, D, delta_bias, state, z)
    y, state_out = np.empty(u.shape, np.float32), np.empty_like(state)
    _call(SELECTIVE_SCAN_INT8.c_symbol, *map(_ptr, (u, delta, A, B, C, D, delta_bias, state, z,
                                                    y, state_out)), *dims, u_scale, delta_scale,
          B_scale, C_scale, z_scale, int(delta_softplus), None)
    return y, state_out


def _conv_dims(x, weight, bias, state):
    batch, L, channels = x.shape
    width = weight.shape[1]
    if weight.shape != (channels, width) or bias.shape != (channels,) \
            or state.shape != (batch, width - 1, channels):
        raise ValueError("causal_conv1d: inconsistent shapes (see docs/ops.md)")
    return batch, L, channels, width


def causal_conv1d(x, weight, bias, state, activation=1):
    x, weight, bias, state = map(_f32, (x, weight, bias, state))
    dims = _conv_dims(x, weight, bias, state)
    y, state_out = np.empty_like(x), np.empty_like(state)
    _call(CAUSAL_CONV1D.c_symbol, *map(_ptr, (x, weight, bias, state, y, state_out)), *dims,
          int(activation), None)
    return y, state_out


def causal_conv1d_int8(x, weight, bias, state, x_scale, weight_scale, y_scale, activation=1):
    x, weight, state = map(_exact, (x, weight, state))
    bias = _f32(bias)
    dims = _conv_dims(x, weight, bias, state)
    y, state_out = np.empty_like(x), np.empty_like(state)
    scales = [_scales(v) for v in (x_scale, weight_scale, y_scale)]
    _call(CAUSAL_CONV1D_INT8.c_symbol, *map(_ptr, (x, weight, bias, state, y, state_out)), *dims,
          *map(_struct, scales), int(activation), None)
    return y, state_out


def hadamard_int8(x, y_scale):
    x = _f32(x)
    y = np.empty(x.shape, np.int8)
    _call(HADAMARD_INT8.c_symbol, _ptr(x), _ptr(y), x.size // x.shape[-1],
          x.shape[-1], y_scale, None)
    return y


def add_rmsnorm_int8(x, residual, weight, eps, y_scale):
    x, residual, weight = map(_f32, (x, residual, weight))
    if residual.shape != x.shape or weight.shape != x.shape[-1:]:
        raise ValueError("add_rmsnorm_int8: inconsistent shapes (see docs/ops.md)")
    y, residual_out = np.empty(x.shape, np.int8), np.empty_like(x)
    _call(ADD_RMSNORM_INT8.c_symbol, *map(_ptr, (x, residual, weight, y, residual_out)),
          x.size // x.shape[-1], x.shape[-1], eps, y_scale, None)
    return y, residual_out


def linear_w4a8(x, weight, weight_scale, x_scale, group_size=128):
    x, weight, weight_scale = _exact(x), _exact(weight), _f32(weight_scale)
    K, N, gs = x.shape[-1], weight.shape[0], int(group_size)
    if K < 1 or K % 2 or gs < 1 or weight.shape != (N, K // 2) \
            or weight_scale.shape != (N, K // gs):
        raise ValueError("linear_w4a8: inconsistent shapes (see docs/ops.md)")
    y = np.empty((*x.shape[:-1], N), np.float32)
    _call(LINEAR_W4A8.c_symbol, *map(_ptr, (x, weight, weight_scale, y)), x.size // K, K, N,
          x_scale, gs, None)
    return y


def embedding_w4(ids, table, table_scale, group_size=128):
    """ids int64 [...], table the packed bytes int8 [vocab, d/2], table_scale fp16."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    table, table_scale = _exact(table), _exact(table_scale, np.float16)
    gs = int(group_size)
    if table.ndim != 2 or gs < 2 or gs % 2 or (2 * table.shape[1]) % gs \
            or table_scale.shape != (table.shape[0], 2 * table.shape[1] // gs):
        raise ValueError("embedding_w4: inconsistent shapes (see docs/ops.md)")
    vocab, d = table.shape[0], 2 * table.shape[1]
    y = np.empty((*ids.shape, d), np.float32)
    _call(EMBEDDING_W4.c_symbol, *map(_ptr, (ids, table, table_scale, y)), ids.size, vocab, d,
          gs, None)
    return y
