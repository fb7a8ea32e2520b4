"""Run a bundle's TensorRT engine: device buffers from cuda-python, states kept on the device
and bound in place of the next call's inputs (no host copies between steps), only the logits
copied back. Same interface as the other backends. Not run in edgeq's CI: no TensorRT there.

Decode is not yet captured in a CUDA graph (planned: one graph per state ping-pong parity)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import EdgeqError
from ..models.config import MambaConfig
from ..runtime.cuda_kernels import check

_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT64": np.int64, "INT32": np.int32}


class DeviceTensor:
    def __init__(self, shape, dtype):
        from cuda.bindings import runtime as rt
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.ptr = check(rt.cudaMalloc(max(self.nbytes, 1)))
        check(rt.cudaMemset(self.ptr, 0, self.nbytes))

    def __del__(self):
        from cuda.bindings import runtime as rt
        rt.cudaFree(self.ptr)


class TrtBackend:
    name = "trt"

    def __init__(self, bundle: Path):
        import tensorrt as trt
        from cuda.bindings import runtime as rt
        manifest = json.loads((bundle / "bundle.json").read_text())
        self.config = MambaConfig.from_dict(manifest["model"]["config"])
        engine_path = bundle / "model.engine"
        if not engine_path.is_file():
            raise EdgeqError(f"{bundle}: no model.engine; run `edgeq engine {bundle}` on the device")
        logger = trt.Logger(trt.Logger.WARNING)
        trt.get_plugin_registry().load_library(str(bundle / "plugins" / "libedgeq_trt_plugins.so"))
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
        self.ctx = self.engine.create_execution_context()
        self.stream = check(rt.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: _NP[self.engine.get_tensor_dtype(n).name] for n in names}
        self.profile = None

    def new_state(self, batch: int):
        return [DeviceTensor((batch, *self.engine.get_tensor_shape(n)[1:]), self.dtypes[n])
                for n in self.inputs[1:]]

    def forward(self, ids: np.ndarray, state):
        from cuda.bindings import runtime as rt
        ids = np.ascontiguousarray(ids, dtype=self.dtypes["input_ids"])
        batch, L = ids.shape
        profile = 1 if L == 1 else 0  # decode profile for single tokens
        if profile != self.profile:
            self.ctx.set_optimization_profile_async(profile, self.stream)
            self.profile = profile
        d_ids = DeviceTensor(ids.shape, ids.dtype)
        check(rt.cudaMemcpyAsync(d_ids.ptr, ids.ctypes.data, ids.nbytes,
                                  rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        for name, t in zip(self.inputs, [d_ids, *state]):
            self.ctx.set_input_shape(name, t.shape)
            self.ctx.set_tensor_address(name, t.ptr)
        # new states go to fresh buffers that become the next call's inputs (ping-pong)
        outs = [DeviceTensor(self.ctx.get_tensor_shape(n), self.dtypes[n]) for n in self.outputs]
        for name, t in zip(self.outputs, outs):
            self.ctx.set_tensor_address(name, t.ptr)
        if not self.ctx.execute_async_v3(self.stream):
            raise EdgeqError("TensorRT could not run the engine")
        logits = np.empty(outs[0].shape, outs[0].dtype)
        check(rt.cudaMemcpyAsync(logits.ctypes.data, outs[0].ptr, logits.nbytes,
                                  rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        check(rt.cudaStreamSynchronize(self.stream))
        return logits.astype(np.float32), outs[1:]
