"""Backends behind one interface, so that generation, evaluation and benchmarks share one loop.

    backend.config            MambaConfig
    backend.new_state(batch)  fresh (zero) states
    backend.forward(ids, state) -> (logits [batch, L, vocab] float32 numpy, new state)
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import EdgeqError
from ..models.config import MambaConfig
from ..models.mamba import MambaLM
from . import ort_ops


class TorchBackend:
    name = "torch"

    def __init__(self, model: MambaLM):
        self.model = model.eval()
        self.config = model.cfg

    def new_state(self, batch: int):
        return self.model.new_state(batch)

    @torch.no_grad()
    def forward(self, ids: np.ndarray, state):
        logits, state = self.model(torch.as_tensor(ids, dtype=torch.long), state)
        return logits.float().numpy(), state


_NP_TYPES = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(float16)": np.float16}


class OrtBackend:
    name = "ort"

    def __init__(self, model: onnx.ModelProto | str | Path, threads: int = 0):
        import onnxruntime as ort
        proto = model if isinstance(model, onnx.ModelProto) else _load(Path(model))
        meta = {p.key: p.value for p in proto.metadata_props}
        if "edgeq.config" not in meta:
            raise EdgeqError("the ONNX graph has no edgeq metadata; give a graph made by `edgeq export`")
        self.config = MambaConfig.from_dict(json.loads(meta["edgeq.config"]))
        self.metadata = meta
        opts = ort.SessionOptions()
        opts.register_custom_ops_library(ort_ops.register())
        if threads:
            opts.intra_op_num_threads = threads
        # ORT fuses DQ(INT4) -> MatMul into MatMulNBits, which by default quantizes the
        # activations to int8: W4A16 must keep them fp32 (level 1)
        opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
        proto = ort_ops.for_ort(proto)
        if proto.ByteSize() < 2**31:
            self.session = ort.InferenceSession(proto.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        else:  # over protobuf's limit: through a file with external data
            with tempfile.TemporaryDirectory() as tmp:
                onnx.save_model(proto, f"{tmp}/m.onnx", save_as_external_data=True,
                                location="m.onnx.data")
                self.session = ort.InferenceSession(f"{tmp}/m.onnx", opts,
                                                    providers=["CPUExecutionProvider"])
        self.states = self.session.get_inputs()[1:]
        self.state_names = [i.name for i in self.states]
        self.out_names = [o.name for o in self.session.get_outputs()]

    def new_state(self, batch: int):
        # shapes and dtypes as the graph declares them (int8 conv states in W8A8 graphs)
        return [np.zeros((batch, *i.shape[1:]), _NP_TYPES[i.type]) for i in self.states]

    def forward(self, ids: np.ndarray, state):
        feed = {"input_ids": np.asarray(ids, dtype=np.int64), **dict(zip(self.state_names, state))}
        logits, *state = self.session.run(self.out_names, feed)
        return logits.astype(np.float32, copy=False), state  # fp16 graphs give fp16 logits


def _load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise EdgeqError(f"{path}: no such file; give a graph made by `edgeq export`") from None
    except Exception as e:
        raise EdgeqError(f"{path}: not a readable ONNX file ({type(e).__name__}); export it again") from None

