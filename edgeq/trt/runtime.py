"""Run a bundle's TensorRT engine with cuda-python device buffers.

States stay on the device in two sets per batch size, allocated once: a call reads one set and
writes the other (ping-pong), so steps make no host copies and no allocations; only the token
ids go up and the logits come back. A decode step (one token) runs in a CUDA graph, one per
batch size and parity, each on its own execution context whose bindings never change (a graph
replays the addresses it was captured with), captured after one eager run (TensorRT's recipe:
the first enqueue may do one-time work; the edgeq plugins do none there, docs/engine.md). All contexts
share one block of activation memory: they run one after another on one stream, which is also
why the decode contexts may share one optimization profile (TensorRT 10.3's IExecutionContext:
"each execution context in concurrent use must use a separate optimization profile").
The plugins do not alias state_out to state (IPluginV3OneBuildV2): TensorRT 10.3 has that only
behind a preview flag and cannot name the aliased engine I/O (getAliasedInputTensor came later),
so the two sets cost one more set of states (Mamba2-8B, fp16 SSM states, batch 1: 120 MB).

Not run in edgeq's CI (no TensorRT or GPU there); tests/support/fake_trt.py simulates both APIs."""
from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np

from ..bundle_files import ENGINE, MANIFEST
from ..errors import EdgeqError
from ..models.config import MambaConfig
from ..gpu import check
from . import load, load_plugins
from . import logger as trt_logger

_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT64": np.int64, "INT32": np.int32}
PREFILL, DECODE = 0, 1  # the optimization profiles of edgeq.trt.engine


def _rt():
    from cuda.bindings import runtime as rt
    return rt


class DeviceTensor:
    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.rt = _rt()  # held: __del__ may run when imports no longer can
        self.ptr = check(self.rt.cudaMalloc(max(self.nbytes, 1)))

    def __del__(self):
        if hasattr(self, "ptr"):  # not when cudaMalloc failed
            self.rt.cudaFree(self.ptr)


class EventTimer:
    """bench's timer on the device clock, as Quamba times with CUDA events: mark() records the
    next event on the backend's stream, read() waits for the last and gives the ms between
    consecutive marks since the last read. The events are made once, outside the timed runs."""

    def __init__(self, stream, marks: int):
        self.rt, self.stream, self.n = _rt(), stream, 0
        self.events = []
        for _ in range(marks):  # one by one: __del__ gives back those made before a failure
            self.events.append(check(self.rt.cudaEventCreate()))

    def mark(self) -> None:
        check(self.rt.cudaEventRecord(self.events[self.n], self.stream))
        self.n += 1

    def read(self) -> list[float]:
        marked, self.n = self.events[:self.n], 0
        check(self.rt.cudaEventSynchronize(marked[-1]))  # and so every earlier one
        return [check(self.rt.cudaEventElapsedTime(a, b)) for a, b in zip(marked, marked[1:])]

    def __del__(self):
        for event in getattr(self, "events", []):
            self.rt.cudaEventDestroy(event)


class _Decode:
    """One batch size's decode: its two state sets, ids and logits buffers, and per parity a
    context bound to them and its CUDA graph (None until captured)."""

    def __init__(self, backend: TrtBackend, batch: int):
        be = backend
        self.states = tuple([DeviceTensor((batch, *tuple(be.engine.get_tensor_shape(n))[1:]),
                                           be.dtypes[n])
                             for n in be.inputs[2:]] for _ in range(2))
        self.ids = DeviceTensor((batch, 1), be.dtypes["input_ids"])
        self.at = DeviceTensor((1,), be.dtypes["logits_at"])  # a step's one position: 0
        check(_rt().cudaMemsetAsync(self.at.ptr, 0, self.at.nbytes, be.stream))
        self.logits = DeviceTensor((batch, 1, be.config.vocab_size), be.dtypes[be.outputs[0]])
        self.contexts = [be._context(DECODE, [self.ids, self.at, *self.states[p]],
                                     [self.logits, *self.states[1 - p]]) for p in (0, 1)]
        self.graphs = [None, None]


def deserialize(trt, logger, engine_path: Path):
    """The engine from a memory map of its file, not a bytes copy: pyCore.cpp (10.3) binds
    IRuntime.deserialize_cuda_engine to any py::buffer (runtime_deserialize_cuda_engine:
    serializedEngine.request(), then info.ptr and size), and the map's pages are the file's,
    which the kernel can drop, while a copy would hold the engine's size in the process until
    deserialization ends (on a Jetson, in the DRAM the engine itself then needs). None if
    TensorRT refuses it."""
    with open(engine_path, "rb") as f:
        try:
            view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return None
    with view:
        return trt.Runtime(logger).deserialize_cuda_engine(view)


class TrtBackend:
    name = "trt"

    def __init__(self, bundle: Path, cuda_graph: bool = True):
        try:
            trt = load()
            rt = _rt()
        except ImportError:
            raise EdgeqError("the trt backend needs cuda-python: pip install 'edgeq[gpu]' on the "
                             "device") from None
        except EdgeqError as e:
            raise EdgeqError(f"{e}; elsewhere use --backend ort") from None
        self.trt, self.rt, self.cuda_graph = trt, rt, cuda_graph
        self.decode: dict[int, _Decode] = {}
        manifest = json.loads((bundle / MANIFEST).read_text())
        self.config = MambaConfig.from_dict(manifest["model"]["config"])
        engine_path = bundle / ENGINE
        if not engine_path.is_file():
            raise EdgeqError(f"{bundle}: no model.engine; run `edgeq engine {bundle}` on the device")
        self.logger = trt_logger(trt)
        load_plugins(trt, bundle)
        self.engine = deserialize(trt, self.logger, engine_path)
        if self.engine is None:
            raise EdgeqError(f"{engine_path}: TensorRT could not load it; rebuild it with "
                             f"`edgeq engine {bundle}` on this device")
        self.stream = check(rt.cudaStreamCreate())
        self.inputs, self.outputs = self._io(engine_path)
        self.dtypes = {}
        for n in self.inputs + self.outputs:
            dtype = self.engine.get_tensor_dtype(n).name
            if dtype not in _NP:
                raise EdgeqError(f"{engine_path}: {n} is {dtype}, which edgeq graphs never have; "
                                 "build the bundle again")
            self.dtypes[n] = _NP[dtype]
        self.scratch = DeviceTensor((self.engine.device_memory_size_v2,), np.uint8)
        self.prefill_at = DeviceTensor((1,), self.dtypes["logits_at"])  # a prompt's last position
        self.prefill = self._context(PREFILL)

    def _io(self, engine_path: Path) -> tuple[list[str], list[str]]:
        """Input and output names in binding order, matched by name (TensorRT does not promise
        the graph's order): ids, positions, states; logits, each state's output in that order."""
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.trt.TensorIOMode.INPUT
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        if "logits_at" not in inputs:
            raise EdgeqError(f"{engine_path}: its graph has no logits_at input (an older edgeq "
                             "built it); build the bundle again")
        states = [n for n in inputs if n not in ("input_ids", "logits_at")]
        outputs = ["logits", *(n.replace("_state.", "_state_out.") for n in states)]
        if "input_ids" not in inputs or sorted(outputs) != sorted(set(names) - set(inputs)):
            raise EdgeqError(f"{engine_path}: its inputs and outputs are not an edgeq graph's; "
                             "build the bundle again")
        return ["input_ids", "logits_at", *states], outputs

    def __del__(self):
        """Give back the CUDA graphs and the stream (device tensors free themselves)."""
        for d in getattr(self, "decode", {}).values():
            for g in d.graphs:
                if g is not None:
                    self.rt.cudaGraphExecDestroy(g)
        if hasattr(self, "stream"):
            self.rt.cudaStreamDestroy(self.stream)

    def _context(self, profile: int, inputs=None, outputs=None):
        """An execution context on the shared activation memory, set to `profile`, and bound
        to the given device tensors if any."""
        ctx = self.engine.create_execution_context(
            self.trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        ctx.set_device_memory(self.scratch.ptr, self.scratch.nbytes)
        ctx.set_optimization_profile_async(profile, self.stream)
        if inputs is not None:
            self._bind(ctx, inputs, outputs)
        return ctx

    def _bind(self, ctx, inputs, outputs) -> None:
        for name, t in zip(self.inputs, inputs):
            if not (ctx.set_input_shape(name, t.shape) and ctx.set_tensor_address(name, t.ptr)):
                raise EdgeqError(f"TensorRT refused input {name} of shape {t.shape}; rebuild the "
                                 "engine with `edgeq engine --max-batch/--max-seq` to cover it")
        for name, t in zip(self.outputs, outputs):
            ctx.set_tensor_address(name, t.ptr)

    def _run(self, ctx) -> None:
        if not ctx.execute_async_v3(self.stream):
            raise EdgeqError(f"TensorRT could not run the engine: {self.logger.errors()[-1]}")

    def _decode(self, batch: int) -> _Decode:
        if batch not in self.decode:
            self.decode[batch] = _Decode(self, batch)
        return self.decode[batch]

    def timer(self, marks: int) -> EventTimer:
        return EventTimer(self.stream, marks)

    def device_used_mib(self) -> float:
        """Device memory in use, all processes (on a Jetson: the shared DRAM in use)."""
        free, total = check(_rt().cudaMemGetInfo())
        return (total - free) / 2**20

    def new_state(self, batch: int):
        """Zeroed states on the device. Valid until the second forward() after it: the two
        state sets of a batch size take turns."""
        states = self._decode(batch).states[0]
        for t in states:
            check(_rt().cudaMemsetAsync(t.ptr, 0, t.nbytes, self.stream))
        return states

    def state_from_host(self, arrays):
        """new_state() holding host arrays (another backend's state) instead of zeros."""
        rt, states = _rt(), self._decode(len(arrays[0])).states[0]
        for t, a in zip(states, arrays):
            a = np.ascontiguousarray(a, t.dtype)
            if a.shape != t.shape:
                raise EdgeqError(f"a state of shape {a.shape} given for one of {t.shape}")
            check(rt.cudaMemcpyAsync(t.ptr, a.ctypes.data, a.nbytes,
                                      rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        check(rt.cudaStreamSynchronize(self.stream))  # before the arrays may go
        return states

    def state_to_host(self, state) -> list[np.ndarray]:
        rt, out = _rt(), [np.empty(t.shape, t.dtype) for t in state]
        for t, a in zip(state, out):
            check(rt.cudaMemcpyAsync(a.ctypes.data, t.ptr, a.nbytes,
                                      rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        check(rt.cudaStreamSynchronize(self.stream))
        return out

    def forward(self, ids: np.ndarray, state, last: bool = False):
        rt = _rt()
        ids = np.ascontiguousarray(ids, dtype=self.dtypes["input_ids"])
        batch, L = ids.shape
        if L > 1 and not last:
            raise EdgeqError("the engine gives the last position's logits only (its profiles "
                             "hold logits_at at one position): forward(..., last=True), or step "
                             "through the prompt token by token")
        d = self._decode(batch)
        parity = next((p for p in (0, 1) if state is d.states[p]), None)
        if parity is None:
            raise EdgeqError("TrtBackend.forward: give the state of this backend's new_state() or "
                             "its last forward() for the same batch size")
        logits = d.logits  # [batch, 1, vocab] for prompts too
        d_ids = d.ids if L == 1 else DeviceTensor(ids.shape, ids.dtype)  # prompts: once each
        check(rt.cudaMemcpyAsync(d_ids.ptr, ids.ctypes.data, ids.nbytes,
                                  rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        if L == 1:
            self._step(d, parity)
        else:
            at = np.array([L - 1], self.dtypes["logits_at"])
            check(rt.cudaMemcpyAsync(self.prefill_at.ptr, at.ctypes.data, at.nbytes,
                                      rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
            self._bind(self.prefill, [d_ids, self.prefill_at, *state],
                       [logits, *d.states[1 - parity]])
            self._run(self.prefill)
        out = np.empty(logits.shape, logits.dtype)
        check(rt.cudaMemcpyAsync(out.ctypes.data, logits.ptr, out.nbytes,
                                  rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        check(rt.cudaStreamSynchronize(self.stream))
        return out.astype(np.float32, copy=False), d.states[1 - parity]

    def _step(self, d: _Decode, parity: int) -> None:
        rt, ctx = _rt(), d.contexts[parity]
        if d.graphs[parity] is not None:
            check(rt.cudaGraphLaunch(d.graphs[parity], self.stream))
            return
        self._run(ctx)  # this step's result; the capture below only records
        if not self.cuda_graph:
            return
        check(rt.cudaStreamBeginCapture(self.stream,
                                        rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
        ok = ctx.execute_async_v3(self.stream)
        graph = check(rt.cudaStreamEndCapture(self.stream))
        if not ok:
            check(rt.cudaGraphDestroy(graph))
            raise EdgeqError("TensorRT could not capture the decode step in a CUDA graph; run "
                             "without CUDA graphs (--no-cuda-graph)")
        d.graphs[parity] = check(rt.cudaGraphInstantiate(graph, 0))
        check(rt.cudaGraphDestroy(graph))
