"""A simulation of the parts of TensorRT's and cuda-python's APIs that edgeq.trt.runtime uses, so
its buffer, profile, context and CUDA-graph logic runs without a GPU: device memory is host
memory, a stream runs its work at once unless it is capturing, a captured graph replays the
recorded work (with the addresses and shapes bound at capture, reading memory at launch), and
the "engine" is the bundle's ONNX graph on ONNX Runtime. It checks what TensorRT checks: shapes
inside the context's profile, every I/O address bound, the activation memory given."""
from __future__ import annotations

import ctypes
import enum
import types
from pathlib import Path

import numpy as np

from edgeq.runtime.backends import _NP_TYPES, OrtBackend

PROFILES = {0: (1, 2048), 1: (1, 1)}  # seq ranges of edgeq.trt.engine's profiles


class Error(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


class Cuda:
    """The cuda.bindings.runtime functions edgeq uses, counting calls."""

    cudaError_t = Error
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeGlobal=0)

    def __init__(self):
        self.memory: dict[int, np.ndarray] = {}
        self.capturing: dict[int, list] = {}
        self.calls: dict[str, int] = {}
        self.streams = 0
        self.open_streams: set[int] = set()
        self.graph_execs: dict[int, list] = {}

    def count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def enqueue(self, stream, work):
        """Run work now, or record it while the stream captures."""
        if stream in self.capturing:
            self.capturing[stream].append(work)
        else:
            work()

    def cudaMalloc(self, n):
        self.count("cudaMalloc")
        buf = np.full(n, 0xAB, np.uint8)  # not zeroed, as on a GPU
        self.memory[buf.ctypes.data] = buf
        return Error.cudaSuccess, buf.ctypes.data

    def cudaFree(self, ptr):
        self.memory.pop(ptr, None)
        return (Error.cudaSuccess,)

    def cudaMemGetInfo(self):
        total = 8 << 30
        return Error.cudaSuccess, total - sum(b.nbytes for b in self.memory.values()), total

    def cudaStreamCreate(self):
        self.streams += 1
        self.open_streams.add(self.streams)
        return Error.cudaSuccess, self.streams

    def cudaStreamDestroy(self, stream):
        self.open_streams.remove(stream)
        return (Error.cudaSuccess,)

    def cudaMemsetAsync(self, ptr, value, n, stream):
        assert ptr in self.memory, "memset of memory not from cudaMalloc"
        self.enqueue(stream, lambda: ctypes.memset(ptr, value, n))
        return (Error.cudaSuccess,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert (dst if kind == 1 else src) in self.memory, "copy to/from memory not from cudaMalloc"
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, n))
        return (Error.cudaSuccess,)

    def cudaStreamSynchronize(self, stream):
        assert stream not in self.capturing, "synchronize while capturing"
        return (Error.cudaSuccess,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing[stream] = []
        return (Error.cudaSuccess,)

    def cudaStreamEndCapture(self, stream):
        return Error.cudaSuccess, self.capturing.pop(stream)

    def cudaGraphInstantiate(self, graph, flags):
        graph_exec = list(graph)
        self.graph_execs[id(graph_exec)] = graph_exec
        return Error.cudaSuccess, graph_exec

    def cudaGraphExecDestroy(self, graph_exec):
        del self.graph_execs[id(graph_exec)]
        return (Error.cudaSuccess,)

    def cudaGraphDestroy(self, graph):
        return (Error.cudaSuccess,)

    def cudaGraphLaunch(self, graph_exec, stream):
        self.count("cudaGraphLaunch")
        for work in graph_exec:
            self.enqueue(stream, work)
        return (Error.cudaSuccess,)


def _array(ptr, shape, dtype):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * n).from_address(ptr), dtype).reshape(shape)


class Context:
    def __init__(self, engine, strategy):
        self.engine, self.strategy = engine, strategy
        self.profile, self.memory = 0, None
        self.shapes, self.addresses = {}, {}

    def set_device_memory(self, ptr, size):
        assert size >= self.engine.device_memory_size_v2
        self.memory = ptr

    def set_optimization_profile_async(self, profile, stream):
        self.profile, self.shapes = profile, {}
        return True

    def set_input_shape(self, name, shape):
        lo, hi = PROFILES[self.profile]
        if name == "input_ids" and not lo <= shape[1] <= hi:
            return False
        if name == "logits_at" and tuple(shape) != (1,):  # both profiles: one position
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def get_tensor_shape(self, name):
        batch, n = self.shapes["input_ids"][0], self.shapes["logits_at"][0]
        return (batch, n, self.engine.vocab) if name == "logits" else \
            self.shapes[name.replace("_state_out.", "_state.")]  # a state out: as its state in

    def execute_async_v3(self, stream):
        e = self.engine
        if self.strategy == e.USER_MANAGED and self.memory is None:
            return False
        if set(self.addresses) != set(e.inputs + e.outputs) or set(self.shapes) != set(e.inputs):
            return False
        bound = {n: (self.addresses[n], self.shapes.get(n) or self.get_tensor_shape(n))
                 for n in e.inputs + e.outputs}  # what a graph captures

        def work():
            e.runs += 1
            feed = {n: _array(*bound[n], e.dtypes[n]).copy() for n in e.inputs}
            for n, value in zip(e.outputs, e.ort.session.run(e.outputs, feed)):
                _array(*bound[n], e.dtypes[n])[...] = value
        e.cuda.enqueue(stream, work)
        return True


class Engine:
    USER_MANAGED = "USER_MANAGED"

    def __init__(self, onnx_path: Path, cuda: Cuda):
        self.ort, self.cuda, self.runs = OrtBackend(onnx_path), cuda, 0
        s = self.ort.session
        self.inputs = [i.name for i in s.get_inputs()]
        self.outputs = [o.name for o in s.get_outputs()]
        self.vocab = self.ort.config.vocab_size
        np_type = {**_NP_TYPES, "tensor(int64)": np.int64}
        self.dtypes = {a.name: np_type[a.type] for a in s.get_inputs() + s.get_outputs()}
        self.shapes = {a.name: tuple(d if isinstance(d, int) else -1 for d in a.shape)
                       for a in s.get_inputs()}
        self.num_io_tensors = len(self.inputs) + len(self.outputs)
        self.device_memory_size_v2 = 4096
        self.contexts = 0

    def get_tensor_name(self, i):
        return (self.inputs + self.outputs)[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name in self.inputs else "OUTPUT"

    def get_tensor_dtype(self, name):
        return types.SimpleNamespace(name={np.float32: "FLOAT", np.float16: "HALF",
                                           np.int8: "INT8", np.int64: "INT64"}[self.dtypes[name]])

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def create_execution_context(self, strategy="STATIC"):
        self.contexts += 1
        return Context(self, strategy)


def modules(cuda: Cuda):
    """A `tensorrt` module whose engines are model.onnx beside the engine file (which holds
    its path)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.30"  # JetPack 6.1/6.2's
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(USER_MANAGED=Engine.USER_MANAGED)
    registry = types.SimpleNamespace(load_library=lambda path: Path(path).is_file() or None)
    trt.get_plugin_registry = lambda: registry

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data: bytes):
            return Engine(Path(data.decode()), cuda)
    trt.Runtime = Runtime
    return trt
