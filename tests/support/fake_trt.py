"""A simulation of the parts of TensorRT's and cuda-python's APIs that edgeq.trt uses, so its
engine building and its buffer, profile, context and CUDA-graph logic run without a GPU: device
memory is host memory, a stream runs its work at once unless it is capturing, a captured graph
replays the recorded work (with the addresses and shapes bound at capture, reading memory at
launch), an event records the time of `clock` (perf_counter, or a test's) and is read once
synchronized, and the "engine" is the bundle's ONNX graph on ONNX Runtime with the profiles' shape
ranges. It checks what TensorRT checks: a strongly typed network, every plugin in the registry,
each profile covering every input within its fixed dims; at run time shapes inside the context's
profile, every I/O address bound, the activation memory given. The plugin registry loads a
library once (loadLibrary returns nullptr when its plugins are registered already,
NvInferRuntimeCommon.h) and only a loadable one; the serialized engine is a buffer, not bytes
(IHostMemory, whose bytes() this simulation refuses: edgeq must not copy it), and the runtime
deserializes any buffer (pyCore.cpp); the engine inspector gives the layer information in
TensorRT's JSON, names only unless built with ProfilingVerbosity.DETAILED."""
from __future__ import annotations

import ctypes
import enum
import json
import time
import types
import weakref
from pathlib import Path

import numpy as np
import onnx
from fake_nvcc import nvcc

from edgeq.ops.table import BY_NAME
from edgeq.runtime.backends import _NP_TYPES, OrtBackend


class Error(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNotReady = 600


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
        self.clock = time.perf_counter
        self.made_events = 0
        self.events: dict[int, tuple | None] = {}  # open ones: (stream, record number, time)
        self.records: dict[int, int] = {}  # per stream: the events recorded on it,
        self.synchronized: dict[int, int] = {}  # and the first so many the host knows done

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
        self.synchronized[stream] = self.records.get(stream, 0)
        return (Error.cudaSuccess,)

    def cudaEventCreate(self):
        self.made_events += 1
        self.events[self.made_events] = None
        return Error.cudaSuccess, self.made_events

    def cudaEventDestroy(self, event):
        del self.events[event]
        return (Error.cudaSuccess,)

    def cudaEventRecord(self, event, stream):
        assert event in self.events, "record of an event not from cudaEventCreate"
        assert stream in self.open_streams, "event recorded on a stream the backend did not make"
        assert stream not in self.capturing, "event recorded while capturing"
        self.records[stream] = self.records.get(stream, 0) + 1
        self.events[event] = stream, self.records[stream], self.clock()  # its earlier work has run
        return (Error.cudaSuccess,)

    def cudaEventSynchronize(self, event):
        assert self.events[event], "synchronize on an event never recorded"
        stream, n, _ = self.events[event]
        self.synchronized[stream] = max(self.synchronized.get(stream, 0), n)
        return (Error.cudaSuccess,)

    def cudaEventElapsedTime(self, start, end):
        """cudaErrorNotReady unless the host synchronized both events (on a GPU, unless they
        are done: a race without synchronizing, which the simulation always loses)."""
        assert self.events[start] and self.events[end], "elapsed time of an event never recorded"
        if any(n > self.synchronized.get(stream, 0) for stream, n, _ in
               (self.events[start], self.events[end])):
            return Error.cudaErrorNotReady, 0.0
        return Error.cudaSuccess, 1e3 * (self.events[end][2] - self.events[start][2])

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
        assert 0 <= profile < len(self.engine.profiles)
        self.profile, self.shapes = profile, {}
        return True

    def set_input_shape(self, name, shape):
        lo, hi = self.engine.profiles[self.profile][name]
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
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

    def __init__(self, onnx_path: Path, profiles: list[dict], cuda: Cuda, detailed: bool = True,
                 int8_gemm: bool = True):
        self.ort, self.cuda, self.runs = OrtBackend(onnx_path), cuda, 0
        self.profiles = profiles  # per profile, input name -> [min shape, max shape]
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
        self.onnx_path, self.detailed, self.int8_gemm = onnx_path, detailed, int8_gemm

    def create_engine_inspector(self):
        return Inspector(self)

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


_FORMATS = {onnx.TensorProto.FLOAT: "Row major linear FP32", onnx.TensorProto.FLOAT16:
            "Row major linear FP16 format", onnx.TensorProto.INT8: "Row major Int8 format",
            onnx.TensorProto.INT32: "Row major linear Int32", onnx.TensorProto.INT64:
            "Row major linear Int64 format"}


class Inspector:
    """IEngineInspector.get_engine_information(JSON) as TensorRT 10 writes it: {"Layers": [...],
    "Bindings": [...]}; with DETAILED verbosity each layer has Name, LayerType, Inputs and
    Outputs (Name, Location, Dimensions, Format/Datatype), TacticName and Metadata ("[ONNX
    Layer: node]", a fused layer's nodes joined by \\x1e); the layers of profile k > 0 are named
    with " [profile k]". Its layers: an int8 GEMM for each MatMul of DQ(int8) inputs (with
    int8_gemm False, a DQ layer and an fp32 GEMM instead), a GEMM with Int4 weights for each
    MatMul or Gemm of a block DQ, a GEMM of the activation's type for the other ones, a PluginV3
    layer for each Edgeq node, and a reformatting layer without metadata."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def get_engine_information(self, fmt):
        assert fmt == LayerInformationFormat.JSON
        e = self.engine
        g = onnx.load(e.onnx_path, load_external_data=False).graph
        elem = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
        elem.update({t.name: t.data_type for t in g.initializer})
        producer = {o: n for n in g.node for o in n.output}

        def tensor(name):
            return {"Name": name, "Location": "Device", "Dimensions": [-1],
                    "Format/Datatype": _FORMATS.get(elem.get(name), "Unknown format")}

        def layer(name, kind, nodes, inputs, outputs, **extra):
            return {"Name": name, "LayerType": kind, "Inputs": [tensor(i) for i in inputs],
                    "Outputs": [tensor(o) for o in outputs], "TacticName": f"{kind.lower()}_tactic",
                    "Metadata": "\x1e".join(f"[ONNX Layer: {n.name}]" for n in nodes), **extra}

        layers = [{"Name": "Reformatting CopyNode for Input Tensor 0 to input_ids",
                   "LayerType": "Reformat", "Inputs": [tensor("input_ids")],
                   "Outputs": [tensor("input_ids")]}]
        for n in g.node:
            if n.domain == "edgeq":
                layers.append(layer(n.name, "PluginV3", [n], [i for i in n.input if i], n.output))
            if n.op_type not in ("MatMul", "Gemm"):  # the head is Gemm(transB=1)
                continue
            x, w = producer.get(n.input[0]), producer.get(n.input[1])
            dq = [p for p in (x, w) if p is not None and p.op_type == "DequantizeLinear"]
            if w in dq and any(a.name == "block_size" for a in w.attribute):
                layers.append(layer(n.name, "CaskGemm", [w, n], [n.input[0]], n.output,
                                    Weights={"Type": "Int4", "Count": 0}))
            elif len(dq) == 2 and elem.get(w.input[0]) == onnx.TensorProto.INT8:
                if e.int8_gemm:
                    layers.append(layer(f"{x.name} + {w.name} + {n.name}", "CaskGemm", [x, w, n],
                                        [x.input[0]], n.output))
                else:
                    layers.append(layer(x.name, "Dequantize", [x], [x.input[0]], x.output))
                    layers.append(layer(f"{w.name} + {n.name}", "CaskGemm", [w, n], x.output,
                                        n.output))
            else:
                layers.append(layer(n.name, "CaskGemm", [n], [n.input[0]], n.output))
        bindings = e.inputs + e.outputs
        out = {"Layers": [], "Bindings": []}
        for k in range(len(e.profiles)):
            suffix = f" [profile {k}]" if k else ""
            for lay in layers:
                out["Layers"].append({**lay, "Name": lay["Name"] + suffix} if e.detailed
                                     else lay["Name"] + suffix)
            out["Bindings"] += [b + suffix for b in bindings]
        return json.dumps(out)


class LayerInformationFormat(enum.Enum):
    ONELINE, JSON = range(2)


class ProfilingVerbosity(enum.Enum):
    LAYER_NAMES_ONLY, NONE, DETAILED = range(3)


class HostMemory(np.ndarray):
    """IHostMemory: a buffer (the serialized engine); bytes() of it is refused, the copy that
    doubles the engine's size in memory, which edgeq must not make."""

    def __bytes__(self):
        raise AssertionError("bytes() of the serialized engine: write it through its buffer")

    def tobytes(self, *args, **kwargs):
        raise AssertionError("tobytes() of the serialized engine: write it through its buffer")


# ---- building ----

class Severity(enum.Enum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class ILogger:
    Severity = Severity


# what the simulated cmake builds (cmake() below) passes for a loadable plugin library, as does
# an ELF file; anything else fails as dlopen would
LIBRARY = b"built\n"


class Registry:
    """The plugin registry: loading edgeq's library registers a creator for every op it
    provides (the op table's; a test may take one away)."""

    def __init__(self):
        self.provides = {(op.name, op.version, op.namespace) for op in BY_NAME.values()}
        self.creators: set = set()
        self.loads = 0

    def load_library(self, path):
        self.loads += 1
        path = Path(path)
        if self.creators or not path.is_file() or \
                not path.read_bytes().startswith((LIBRARY, b"\x7fELF")):
            return None  # registered already, or not loadable
        self.creators |= self.provides
        return object()  # a PluginLibraryHandle

    def get_creator(self, name, version, namespace):
        assert isinstance(version, str)
        return object() if (name, version, namespace) in self.creators else None


LIVE = weakref.WeakSet()  # the networks and parsers not yet released


class Network:
    def __init__(self, flags):
        self.flags, self.inputs, self.onnx = flags, [], None
        LIVE.add(self)

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


class OnnxParser:
    """Reads the graph's inputs (-1 for a dynamic dim) as TensorRT's parser makes them."""

    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0
        LIVE.add(self)

    def parse_from_file(self, path):
        self.network.onnx = path
        for i in onnx.load(path, load_external_data=False).graph.input:
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1
                          for d in i.type.tensor_type.shape.dim)
            self.network.inputs.append(types.SimpleNamespace(name=i.name, shape=shape))
        return True


class Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = tuple(lo), tuple(opt), tuple(hi)


class TimingCache:
    def __init__(self, data):
        self.data = data or b"fake timing cache"

    def serialize(self):
        return self.data


class Config:
    def __init__(self):
        self.profiles, self.pools, self.cache = [], {}, None
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY  # TensorRT's default

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def create_timing_cache(self, data):
        return TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        if not cache.data.startswith(b"fake timing cache"):  # another device's or damaged
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1


class Builder:
    """Refuses (an error to the logger, then None) what TensorRT's builder would refuse of
    edgeq's network and profiles; its serialized engine names the graph and the profiles."""

    int8_gemm = True  # a test sets False: TensorRT runs the W8A8 MatMuls as DQ + fp32 GEMM

    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags):
        return Network(flags)

    def create_builder_config(self):
        return Config()

    def create_optimization_profile(self):
        return Profile()

    def build_serialized_network(self, network, config):
        problems = [] if network.flags & 1 << STRONGLY_TYPED else ["not strongly typed"]
        problems += [] if config.profiles else ["a dynamic network needs a profile"]
        for k, p in enumerate(config.profiles):
            for t in network.inputs:
                lo, opt, hi = p.shapes.get(t.name, ((), (), ()))
                if not (len(lo) == len(opt) == len(hi) == len(t.shape) and all(
                        0 < a <= b <= c and d in (-1, a) and d in (-1, c)
                        for a, b, c, d in zip(lo, opt, hi, t.shape))):
                    problems.append(f"profile {k}: {t.name} {lo}..{hi} does not fit {t.shape}")
        for m in problems:
            self.logger.log(Severity.ERROR, m)
        if problems:
            return None
        self.logger.log(Severity.INFO, "engine built")
        self.logger.log(Severity.VERBOSE, "tactic chatter")
        data = json.dumps({
            "onnx": network.onnx, "detailed": config.profiling_verbosity == ProfilingVerbosity.DETAILED,
            "int8_gemm": self.int8_gemm, "profiles": [
                {n: [lo, hi] for n, (lo, _, hi) in p.shapes.items()} for p in config.profiles]}).encode()
        return np.frombuffer(data, np.uint8).copy().view(HostMemory)


STRONGLY_TYPED = 1  # NetworkDefinitionCreationFlag's value in TensorRT 10


def cmake(folder: Path, fail: bool = False, cuda: str | None = "12.6") -> Path:
    """A folder with a `cmake` that logs its arguments, makes the build folder it configures
    (-B) and, as a build, the plugin library in it (or fails after making the folder), and an
    nvcc of release `cuda` (JetPack 6's by default; build_plugins.sh checks it first)."""
    folder.mkdir()
    if cuda:
        nvcc(folder, cuda)
    (folder / "cmake").write_text(f"""#!/bin/sh
echo "$@" >> {folder / "log"}
prev=
for a; do [ "$prev" = -B ] && mkdir -p "$a"; prev=$a; done
{"exit 1" if fail else ""}
[ "$1" = --build ] && echo built > "$2/libedgeq_trt_plugins.so"
exit 0
""")
    (folder / "cmake").chmod(0o755)
    return folder


def modules(cuda: Cuda):
    """A `tensorrt` module whose engines are the bundle's model.onnx with profiles."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.30"  # JetPack 6.1/6.2's
    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=STRONGLY_TYPED)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.ProfilingVerbosity, trt.LayerInformationFormat = ProfilingVerbosity, LayerInformationFormat
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(USER_MANAGED=Engine.USER_MANAGED)
    registry = Registry()
    trt.get_plugin_registry = lambda: registry

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            with memoryview(data) as view:  # any buffer; released before returning, as pyCore
                d = json.loads(view.tobytes())
            trt.deserialized_from.append(type(data))
            return Engine(Path(d["onnx"]), d["profiles"], cuda, d["detailed"], d["int8_gemm"])
    trt.Runtime = Runtime
    trt.deserialized_from = []  # the type of each buffer an engine was deserialized from
    return trt
