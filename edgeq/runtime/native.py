"""Loading edgeq's kernel libraries (libedgeq_cpu, libedgeq_cuda) with ctypes: both export the
C ABI of plugins/common/edgeq_kernels.h, whose argument types come from the op table."""
from __future__ import annotations

import ctypes
import os
from importlib import metadata
from pathlib import Path

from ..errors import EdgeqError
from ..ops.table import OpDef


class Scales(ctypes.Structure):
    """edgeq_scales: a FLOATS scale attribute's values (a pointer) and their count."""
    _fields_ = [("values", ctypes.c_void_p), ("count", ctypes.c_int64)]


_ATTR_CTYPES = {"INT": ctypes.c_int32, "int64": ctypes.c_int64, "FLOAT": ctypes.c_float,
                "FLOATS": Scales}


def argtypes(op: OpDef) -> list:
    """The C ABI's arguments: a pointer per input and output, the shape ints, the attributes
    in the table's order, the stream."""
    ports = [ctypes.c_void_p] * (len(op.inputs) + len(op.outputs))
    dims = [ctypes.c_int64] * len(op.dims)
    attrs = [_ATTR_CTYPES[a.c_type or a.type] for a in op.attrs]
    return ports + dims + attrs + [ctypes.c_void_p]


def symbols(ops, f16: bool) -> dict[str, list]:
    """Each op's symbol (and its fp16 variant's with `f16`) with its argtypes: one signature."""
    out = {}
    for op in ops:
        out[op.c_symbol] = argtypes(op)
        if f16 and op.f16_symbol:
            out[op.f16_symbol] = out[op.c_symbol]
    return out


def bind(lib: ctypes.CDLL, table: dict[str, list], prefix: str = "") -> ctypes.CDLL:
    """Set argtypes/restype of every symbol in `table` (named `prefix` + symbol) of `lib`."""
    for name, types in table.items():
        fn = getattr(lib, prefix + name)
        fn.argtypes, fn.restype = types, ctypes.c_int
    return lib


def _candidates(name: str, env: str):
    if os.environ.get(env):
        yield Path(os.environ[env])
    yield Path(__file__).resolve().parents[1] / "lib" / name
    try:  # the source tree imported while the built library sits in the installed package
        for f in metadata.files("edgeq") or ():
            if f.name == name:
                yield Path(f.locate())
    except metadata.PackageNotFoundError:
        pass


def load(name: str, env: str, table: dict[str, list], how: str) -> ctypes.CDLL:
    """Library `name` from $`env`, edgeq/lib or the installed package, bound to `table`;
    EdgeqError saying `how` to build it when there is none."""
    for path in _candidates(name, env):
        if path.is_file():
            return bind(ctypes.CDLL(str(path)), table)
    raise EdgeqError(f"{name} not found; {how} or set {env}")
