"""`edgeq engine --compare`: the engine against the ONNX graph on ONNX Runtime with polygraphy's
Comparator, on a prefill step and a decode step fed the same inputs (states included), then
top-1 agreement over many decode steps (CUDA graphs and the engine's own states). ORT runs in
polygraphy's OnnxrtRunner over edgeq's session, whose custom ops are registered; the engine runs
in TrtRunner over edgeq's TrtBackend (polygraphy's TrtRunner needs CUDA through ctypes and
would not keep the states on the device as edgeq does). Imported only for --compare."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..bundle_files import GRAPH
from ..errors import EdgeqError
from ..runtime.backends import OrtBackend, logits_at
from ..runtime.evaluate import top1_agreement
from .runtime import TrtBackend

try:
    from polygraphy.backend.base import BaseRunner
    from polygraphy.backend.onnxrt import OnnxrtRunner
    from polygraphy.common import TensorMetadata
    from polygraphy.comparator import Comparator, SimpleCompareFunc
except ImportError:  # SimpleCompareFunc came in 0.53
    raise EdgeqError("edgeq engine --compare needs polygraphy 0.53 or later: pip install "
                     "'edgeq[gpu]'") from None

# absolute and relative, an element failing beyond both: the GPU's fp16 math against ORT's on
# the CPU; an int8 state (absolute 1) may round one step apart
TOLERANCE = 0.05
PROMPT = 64


class TrtRunner(BaseRunner):
    """A polygraphy runner over a bundle's engine: each feed is one forward of TrtBackend from
    the states it gives (copied into the device's state set). Its logits_at is not read: the
    engine's profiles hold it at the last position, as feeds() give it. The backend outlives
    the runner: compare() goes on with it, the engine loaded once."""

    def __init__(self, backend: TrtBackend):
        super().__init__(name="tensorrt")
        self.backend = backend

    def activate_impl(self):
        pass

    def get_input_metadata_impl(self):
        be, meta = self.backend, TensorMetadata()
        for n in be.inputs:
            meta.add(n, be.dtypes[n], tuple(be.engine.get_tensor_shape(n)))
        return meta

    def infer_impl(self, feed_dict):
        be, start = self.backend, time.perf_counter()
        state = be.state_from_host([feed_dict[n] for n in be.inputs[2:]])
        logits, state = be.forward(feed_dict["input_ids"], state, last=True)
        outputs = dict(zip(be.outputs, [logits, *be.state_to_host(state)]))
        self.inference_time = time.perf_counter() - start
        return outputs

    def deactivate_impl(self):
        pass


def feeds(ort: OrtBackend, ids: np.ndarray) -> list[dict]:
    """A prompt's prefill from zero states, then a step from the states ORT left."""
    prompt = {"input_ids": ids[None, :-1], "logits_at": logits_at(len(ids) - 1, last=True),
              **dict(zip(ort.state_names, ort.new_state(1)))}
    _, state = ort.forward(ids[None, :-1], ort.new_state(1), last=True)
    step = {"input_ids": ids[None, -1:], "logits_at": logits_at(1, last=True),
            **dict(zip(ort.state_names, state))}
    return [prompt, step]


def compare(bundle: Path) -> dict:
    """Polygraphy's comparison (its report printed), then top-1 agreement over decode steps.
    EdgeqError naming the first output beyond the tolerance."""
    ort = OrtBackend(bundle / GRAPH)
    ids = np.random.default_rng(0).integers(0, ort.config.vocab_size, 2 * PROMPT + 1)
    # ORT second: the relative error is to its outputs
    trt = TrtBackend(bundle)
    runners = [TrtRunner(trt), OnnxrtRunner(ort.session, name="onnxruntime")]
    atol = {"": TOLERANCE, **{o.name: 1 for o in ort.session.get_outputs()
                              if o.type == "tensor(int8)"}}
    run = Comparator.run(runners, data_loader=feeds(ort, ids[:PROMPT + 1]))
    with np.errstate(invalid="ignore"):  # an int8 state's 0/0 relative error (polygraphy: nan)
        results = Comparator.compare_accuracy(run, compare_func=SimpleCompareFunc(atol=atol,
                                                                                  rtol=TOLERANCE))
    steps = results[0][("tensorrt", "onnxruntime")]
    for step, outputs in zip(("prefill", "decode step"), steps):
        for name, r in outputs.items():
            if not r:  # a bool when the shapes differ
                error = f"by {r.max_absdiff:.4g} at most" if hasattr(r, "max_absdiff") else \
                    "in shape"
                raise EdgeqError(f"the engine's output {name} differs from ORT's at the {step} "
                                 f"{error} (tolerance {atol.get(name, TOLERANCE)}, relative "
                                 f"{TOLERANCE}; polygraphy's report above)")
    return {"top1_agreement": top1_agreement(trt, ort, ids, 2 * PROMPT, batch=1, step=True),
            "max_abs_logit_diff": max(s["logits"].max_absdiff for s in steps)}
