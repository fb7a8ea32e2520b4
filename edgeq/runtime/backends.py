"""Backends behind one interface, so that generation, evaluation and benchmarks share one loop.

    backend.config            MambaConfig
    backend.new_state(batch)  fresh (zero) states
    backend.forward(ids, state, last=False) -> (logits [batch, L, vocab] float32 numpy, new state)
        last: the last position's logits only, [batch, 1, vocab] (generation): the graph then
        runs the final norm and lm_head on that position alone
"""
from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..errors import EdgeqError
from ..jsonfile import parse_json
from ..models.config import MambaConfig
from ..models.mamba import MambaLM
from . import ort_held, ort_ops


class TorchBackend:
    name = "torch"

    def __init__(self, model: MambaLM):
        self.model = model.eval()
        self.config = model.cfg

    def new_state(self, batch: int):
        return self.model.new_state(batch)

    @torch.no_grad()
    def forward(self, ids: np.ndarray, state, last: bool = False):
        ids = torch.as_tensor(ids, dtype=torch.long)
        logits, state = self.model(ids, state, torch.as_tensor(logits_at(ids.shape[1], last)))
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
        if [i.name for i in proto.graph.input[:2]] != ["input_ids", "logits_at"]:
            raise EdgeqError("the ONNX graph has no logits_at input (an older edgeq made it); "
                             "export it again with this version")
        self.config = graph_config(proto, meta["edgeq.config"],
                                   "the ONNX graph" if isinstance(model, onnx.ModelProto) else str(model))
        self.metadata = meta
        opts = ort.SessionOptions()
        opts.register_custom_ops_library(ort_ops.register())
        opts.log_severity_level = 3  # errors: a failed PyOp's empty outputs warn (ort_ops.run)
        if threads:
            opts.intra_op_num_threads = threads
        # ORT fuses DQ(INT4) -> MatMul into MatMulNBits, which by default quantizes the
        # activations to int8: W4A16 must keep them fp32 (level 1)
        opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
        proto = ort_ops.for_ort(proto)
        # the custom ops' constant inputs held in Python for as long as the session lives: the
        # PyOps bridge copies each input at every call (ort_held)
        held = ort_held.hold(proto.graph)
        ort_ops.drop_unused(proto.graph)
        try:
            self.session = _session(proto, opts)
        except BaseException:
            ort_held.release(held)
            raise
        weakref.finalize(self.session, ort_held.release, held)
        self.states = self.session.get_inputs()[2:]
        self.state_names = [i.name for i in self.states]
        self.out_names = [o.name for o in self.session.get_outputs()]

    def new_state(self, batch: int):
        # shapes and dtypes as the graph declares them (int8 conv states in W8A8 graphs)
        return [np.zeros((batch, *i.shape[1:]), _NP_TYPES[i.type]) for i in self.states]

    def forward(self, ids: np.ndarray, state, last: bool = False):
        ids = np.asarray(ids, dtype=np.int64)
        feed = {"input_ids": ids, "logits_at": logits_at(ids.shape[1], last),
                **dict(zip(self.state_names, state))}
        logits, *state = ort_ops.run(self.session, self.out_names, feed)
        return logits.astype(np.float32, copy=False), state  # fp16 graphs give fp16 logits


def _session(proto: onnx.ModelProto, opts):
    import onnxruntime as ort
    from ..export.onnx_export import over_2gb
    if not over_2gb(proto):
        return ort.InferenceSession(proto.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:  # over protobuf's limit: external data
        onnx.save_model(proto, f"{tmp}/m.onnx", save_as_external_data=True, location="m.onnx.data")
        return ort.InferenceSession(f"{tmp}/m.onnx", opts, providers=["CPUExecutionProvider"])


def graph_config(proto: onnx.ModelProto, text: str, what: str) -> MambaConfig:
    """The config in a graph's metadata, checked against the graph: the vocabulary its logits
    and embedding rows have, and weights that are finite."""
    raw = parse_json(text, f"{what}: metadata edgeq.config")
    try:
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        cfg = MambaConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise EdgeqError(f"{what}: metadata edgeq.config is not an edgeq config ({e}); export "
                         "the graph again") from None
    inits = {t.name: t for t in proto.graph.initializer}
    rows = {d.dim_value for o in proto.graph.output[:1] for d in o.type.tensor_type.shape.dim[2:]
            if d.HasField("dim_value")}
    rows |= {inits[n.input[0]].dims[0] for n in proto.graph.node
             if n.op_type == "Gather" and n.input[1:] == ["input_ids"] and n.input[0] in inits}
    if rows - {cfg.vocab_size}:
        raise EdgeqError(f"{what}: metadata edgeq.config says vocab_size {cfg.vocab_size} but the "
                         f"graph's embedding/logits have {min(rows - {cfg.vocab_size})}; export "
                         "the graph again")
    for t in proto.graph.initializer:
        if t.data_type in FLOATS and not np.isfinite(numpy_helper.to_array(t)).all():
            raise EdgeqError(f"{what}: weight {t.name} holds NaN or infinite values; export the "
                             "graph again from an intact model")
    return cfg


# float, float16, double, bfloat16 (onnx.TensorProto)
FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
          onnx.TensorProto.BFLOAT16}


def logits_at(length: int, last: bool) -> np.ndarray:
    """The graph's logits_at input: the last position, or all of them."""
    return np.arange(length - 1 if last else 0, length, dtype=np.int64)


def _load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise EdgeqError(f"{path}: no such file; give a graph made by `edgeq export`") from None
    except Exception as e:
        raise EdgeqError(f"{path}: not a readable ONNX file ({type(e).__name__}); export it again") from None

