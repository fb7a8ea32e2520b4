"""The TensorRT plugins behind the kernels' C ABI, for the kernel cases (kernel_cases.py).

PluginLib answers each kernel call that a case makes with the op's TensorRT plugin, driven
through its IPluginV3 interfaces the way TensorRT builds and runs an engine
(tests/support/trt_harness.cpp) on the call's buffers. The C ABI's arguments are the op's
inputs, its outputs, shape ints, its attributes in op-table order and the stream
(edgeq_kernels.h), so the call maps onto the plugin's inputs, outputs and fields; the plugin
derives the shapes itself.

The plugin library is the real one (CUDA kernels; a GPU runs it) or one linked over the CPU
emulation of the kernels (tests/support/cuda_host_emu.cu) with host memory standing in for
device memory (tests/support/host_cudart.cpp), which runs the adapters' code on a machine
without a GPU.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from edgeq.runtime import cuda_kernels
from edgeq.ops.table import OPS
from native_build import ROOT, SUPPORT, nvcc_host, run

# TensorRT's DataType values (NvInferRuntimeBase.h)
TRT_TYPES = {np.dtype("float32"): 0, np.dtype("float16"): 1, np.dtype("int8"): 2,
             np.dtype("int64"): 8}
INT4 = 9  # kINT4: packed bytes [..., n/2] that TensorRT describes as [..., n]
BY_SYMBOL = {cuda_kernels.symbol(op, dtype): op for op in OPS for dtype in ("float32", "float16")}
ADAPTERS = [ROOT / "plugins" / "trt" / "registry.cpp"] + sorted(ROOT.glob("plugins/*/*_trt.cpp"))


def build_harness(nvcc: str, trt_include: str, out: Path) -> ctypes.CDLL:
    lib = out / "libtrt_harness.so"
    run([nvcc, "-std=c++17", "-shared", *nvcc_host(), "-isystem", trt_include,
         SUPPORT / "trt_harness.cpp", "-o", lib, "-ldl"])
    # global: the emulated plugin library reports its CUDA calls to edgeq_harness_cuda_call
    h = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    p, i32 = ctypes.c_void_p, ctypes.c_int32
    h.edgeq_harness_run.argtypes = [ctypes.c_char_p, ctypes.c_char_p, i32, p, p, p, p, i32, i32,
                                    p, p, p, p, p, i32, ctypes.c_char_p, i32]
    h.edgeq_harness_run.restype = ctypes.c_int
    h.edgeq_harness_cuda_calls.restype = ctypes.c_int64
    return h


def build_emulated_plugins(nvcc: str, trt_include: str, emu: Path, out: Path) -> Path:
    """libedgeq_trt_plugins' adapters over the emulated kernels (the object `emu`): every
    kernel symbol the adapters call is redirected (--wrap, --defsym) to its emu_ twin, and the
    CUDA runtime calls to host memory."""
    common = ["-std=c++17", "-O2", *nvcc_host(), "-I", ROOT / "plugins" / "common"]
    objects = []
    for src in ADAPTERS:
        obj = out / f"{src.stem}.o"
        run([nvcc, *common, "-isystem", trt_include, "-I", ROOT / "plugins" / "trt", "-c", src,
             "-o", obj])
        objects.append(obj)
    wraps = [f"--wrap={f}" for f in ("cudaMalloc", "cudaFree", "cudaMemcpy", "cudaMemcpyAsync")]
    for name in cuda_kernels.symbols():
        wraps += [f"--wrap={name}", f"--defsym=__wrap_{name}=emu_{name}"]
    lib = out / "libedgeq_trt_plugins_emu.so"
    run([nvcc, "-shared", *common, *objects, emu, SUPPORT / "host_cudart.cpp", "-o", lib,
         "-Xlinker", ",".join(wraps), "-Xlinker",
         f"--version-script={ROOT / 'plugins' / 'trt' / 'exports.map'}"])
    return lib


def field(attr_type: str, value) -> np.ndarray:
    """An attribute's value as the ONNX parser makes it a plugin field: INT int32, FLOAT and
    FLOATS float32."""
    return np.array(value, np.int32 if attr_type == "INT" else np.float32).reshape(-1)


def run_plugin(harness: ctypes.CDLL, library: Path, op, fields: dict[str, np.ndarray],
               inputs: list[int], outputs: list[int], mem, stream=None,
               int4: frozenset = frozenset()) -> None:
    """One plugin through tests/support/trt_harness.cpp on buffers of `mem`; fields by name (INT
    attributes int32, FLOAT and FLOATS float32, as the ONNX parser passes them); the inputs
    numbered in `int4` are packed INT4 bytes."""
    kinds = {a.name: a.type for a in op.attrs}
    tensors = inputs + outputs
    shapes = [mem.describe(p) for p in tensors]
    types = [INT4 if i in int4 else TRT_TYPES[d] for i, (_, d) in enumerate(shapes)]
    shapes = [((*s[:-1], 2 * s[-1]), d) if i in int4 else (s, d) for i, (s, d) in enumerate(shapes)]
    dims = np.zeros((len(tensors), 8), np.int64)
    for i, (shape, _) in enumerate(shapes):
        dims[i, :len(shape)] = shape
    arr = lambda t, v: (t * len(v))(*v)  # noqa: E731
    # a second enqueue, on a second context without onShapeChange; not in place, where it
    # would scan the first call's state again
    enqueues = 1 if set(outputs) & set(inputs) else 2
    message = ctypes.create_string_buffer(512)
    rc = harness.edgeq_harness_run(
        str(library).encode(), op.name.encode(), len(fields),
        arr(ctypes.c_char_p, [n.encode() for n in fields]),
        arr(ctypes.c_int32, [kinds[n] == "INT" for n in fields]),
        arr(ctypes.c_void_p, [v.ctypes.data for v in fields.values()]),
        arr(ctypes.c_int32, [v.size for v in fields.values()]), len(inputs), len(outputs),
        arr(ctypes.c_int32, types),
        arr(ctypes.c_int32, [len(s) for s, _ in shapes]), dims.ctypes.data,
        arr(ctypes.c_void_p, tensors), stream, enqueues, message, len(message))
    assert rc == 0, f"{op.name} plugin: {message.value.decode()}"


class PluginLib:
    """The kernel symbols of cuda_kernels, each served by its op's plugin (see the module)."""

    def __init__(self, harness: ctypes.CDLL, library: Path, mem):
        self.harness, self.library, self.mem = harness, library, mem

    def __getattr__(self, name: str):
        op = BY_SYMBOL[name]
        return lambda *args: self._call(op, args)

    def _call(self, op, args) -> int:
        n_in, n_out, n_attr = len(op.inputs), len(op.outputs), len(op.attrs)
        inputs = list(args[:n_in])
        while inputs[-1] is None and op.inputs[len(inputs) - 1].optional:
            inputs.pop()
        fields = {a.name: self._field(a, v)
                  for a, v in zip(op.attrs, args[-1 - n_attr:-1], strict=True)}
        # the INT4 inputs: the embedding's table (plugins/embedding_w4/embedding_w4_trt.cpp)
        int4 = frozenset({1}) if op.name == "EdgeqEmbeddingW4" else frozenset()
        run_plugin(self.harness, self.library, op, fields, inputs,
                   list(args[n_in:n_in + n_out]), self.mem, args[-1], int4)
        return 0

    def _field(self, attr, value) -> np.ndarray:
        # FLOATS: a kernel's Scales, whose values are in mem
        return field(attr.type, self.mem.get(value.values) if attr.type == "FLOATS" else value)
