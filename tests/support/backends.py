"""The backends the kernel cases run on, in the manner of ggml's test-backend-ops: each says which
cases it supports and how close to the reference it must come, and opens (lib, mem, prefix) for
kernel_cases' run functions. Their libraries are native_libraries' fixtures, built on first use."""
from __future__ import annotations

import contextlib

import pytest
import torch

import kernel_cases as kc
from edgeq import gpu
from edgeq.ops import int4
from edgeq.ops.table import EMBEDDING_W4
from edgeq.runtime import kernels
from edgeq.runtime.kernels import Scales
from plugin_harness import BY_SYMBOL

SMALL = set(kc.SMALL)


class Backend:
    """A subclass opens its library: open(request), a context of (lib, mem, prefix)."""
    name = ""
    on_gpu = False  # in test_backend_ops_gpu.py, which tools/gpu_check.sh runs on a GPU machine
    tolerance = kc.TOLERANCE

    def supports(self, kind: str, case) -> bool:
        """The small cases by default: every code path, sized for a CPU."""
        return (kind, case) in SMALL


class TorchOps:
    """The kernel symbols served by the torch custom ops (torch.ops.edgeq: what the models run
    and export) on host arrays: the C ABI's inputs and attributes, in the op table's order, are
    the op's arguments; its results go to the output buffers."""

    def __init__(self, mem):
        self.mem = mem

    def __getattr__(self, name: str):
        op = BY_SYMBOL[name]
        return lambda *args: self._call(op, args)

    def _call(self, op, args) -> int:
        n_in, n_out, n_attr = len(op.inputs), len(op.outputs), len(op.attrs)
        inputs = [None if p is None else torch.from_numpy(self.mem.get(p)) for p in args[:n_in]]
        if op is EMBEDDING_W4:  # the C ABI's table is packed, two values a byte
            inputs[1] = int4.unpack(inputs[1])
        fn = getattr(torch.ops.edgeq, op.torch_name.split("::")[1]).default
        kinds = [a.type.kind() for a in fn._schema.arguments[n_in:]]
        attrs = [self._attr(v, kind) for v, kind in zip(args[-1 - n_attr:-1], kinds, strict=True)]
        out = fn(*inputs, *attrs)
        for p, t in zip(args[n_in:n_in + n_out], out if isinstance(out, tuple) else (out,),
                        strict=True):
            self.mem.arrays[p][...] = t.numpy()
        return 0

    def _attr(self, value, kind: str):
        if isinstance(value, Scales):  # FLOATS: the values are in mem
            return [float(v) for v in self.mem.get(value.values)]
        return {"BoolType": bool, "IntType": int, "FloatType": float}[kind](value)


class Torch(Backend):
    """The torch custom ops, whose CPU implementation is the reference: the C ABI's argument
    order is the ops' (inputs, attributes), and each op's schema runs the case."""
    name = "torch"
    tolerance = kc.Tolerance(fp32=(0, 0), fp16=(0, 0))  # equal: the reference's own code

    @contextlib.contextmanager
    def open(self, request):
        mem = kc.HostMem()
        yield TorchOps(mem), mem, ""


class CpuLibrary(Backend):
    """libedgeq_cpu, the kernels behind ONNX Runtime's custom ops: no fp16 activations."""
    name = "cpu"
    tolerance = kc.Tolerance(fp32=(1e-5, 1e-5))  # closer: the same sums in nearly the same order

    def supports(self, kind, case):
        return super().supports(kind, case) and getattr(case, "dtype", "") != "float16"

    @contextlib.contextmanager
    def open(self, request):
        yield kernels.library(), kc.HostMem(), ""


class CudaEmulation(Backend):
    """The CUDA kernels' per-thread code compiled for the CPU (tests/support/cuda_host_emu.cu)."""
    name = "cuda-emulation"

    @contextlib.contextmanager
    def open(self, request):
        yield request.getfixturevalue("emulated_kernels"), kc.HostMem(), "emu_"


class Cuda(Backend):
    """libedgeq_cuda on the GPU: the small cases and the Mamba models' sizes, batch 1..64."""
    name, on_gpu = "cuda", True

    def supports(self, kind, case):
        return True

    @contextlib.contextmanager
    def open(self, request):
        lib, mem = request.getfixturevalue("cuda_library"), kc.DeviceMem()
        try:
            yield lib, mem, ""
        finally:
            mem.free()


class Captured:
    """`lib` whose kernel calls are recorded from `stream` into a CUDA graph, which then runs
    once: as the TensorRT runtime replays its decode step, plugins and all. A launch on another
    stream, or a call that a capture forbids, breaks the capture; outputs start as NaN, so a
    graph that computes nothing fails the case's checks."""

    def __init__(self, lib, stream):
        self.lib, self.stream = lib, stream

    def __getattr__(self, name: str):
        f = getattr(self.lib, name)
        return lambda *args: self._call(f, args)

    def _call(self, f, args) -> int:
        from cuda.bindings import runtime as rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        gpu.check(rt.cudaStreamBeginCapture(self.stream, mode))
        rc = f(*args[:-1], int(self.stream))
        graph = gpu.check(rt.cudaStreamEndCapture(self.stream))
        try:
            if rc == 0:
                run = gpu.check(rt.cudaGraphInstantiate(graph, 0))
                gpu.check(rt.cudaGraphLaunch(run, self.stream))
                gpu.check(rt.cudaStreamSynchronize(self.stream))
                gpu.check(rt.cudaGraphExecDestroy(run))
        finally:
            gpu.check(rt.cudaGraphDestroy(graph))
        return rc


@contextlib.contextmanager
def _stream(flags: int = 0):
    from cuda.bindings import runtime as rt
    stream = gpu.check(rt.cudaStreamCreateWithFlags(flags))
    try:
        yield stream
    finally:
        gpu.check(rt.cudaStreamDestroy(stream))


class CudaGraph(Backend):
    """libedgeq_cuda captured in a CUDA graph, on a stream of its own that does not wait for the
    null stream: the kernels must go on the stream they are given. compute-sanitizer reruns
    these (test_backend_ops.py)."""
    name, on_gpu = "cuda-graph", True

    @contextlib.contextmanager
    def open(self, request):
        from cuda.bindings import runtime as rt
        lib, mem = request.getfixturevalue("cuda_library"), kc.DeviceMem()
        try:
            with _stream(rt.cudaStreamNonBlocking) as stream:
                yield Captured(lib, stream), mem, ""
        finally:
            mem.free()


class PluginEmulation(Backend):
    """The TensorRT plugins as TensorRT drives them (tests/support/trt_harness.cpp), over the
    CPU emulation of the kernels: the adapters' fields, formats, shapes and arguments."""
    name = "plugin-emulation"

    @contextlib.contextmanager
    def open(self, request):
        from plugin_harness import PluginLib
        harness, lib = (request.getfixturevalue(f) for f in ("harness", "emulated_plugins"))
        mem = kc.HostMem()
        yield PluginLib(harness, lib, mem), mem, ""


class PluginGpu(Backend):
    """The TensorRT plugins on the GPU, enqueued on a stream of their own as TensorRT does."""
    name, on_gpu = "plugin-gpu", True

    @contextlib.contextmanager
    def open(self, request):
        from plugin_harness import PluginLib
        harness, lib = (request.getfixturevalue(f) for f in ("harness", "gpu_plugins"))
        mem = kc.DeviceMem()
        try:
            with _stream() as stream:
                yield kc.OnStream(PluginLib(harness, lib, mem), int(stream)), mem, ""
        finally:
            mem.free()


BACKENDS = [Torch(), CpuLibrary(), CudaEmulation(), Cuda(), CudaGraph(), PluginEmulation(),
            PluginGpu()]


def params(on_gpu: bool) -> list:
    """(backend, kind, case) for every case each backend on a GPU (or not) supports."""
    return [pytest.param(b, kind, case, id=f"{b.name}-{kind}-{case}")
            for b in BACKENDS if b.on_gpu == on_gpu
            for kind, case in kc.ALL if b.supports(kind, case)]
