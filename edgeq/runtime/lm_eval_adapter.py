"""An lm-evaluation-harness model over an edgeq backend that gives every position's logits (torch,
ORT; not a TensorRT engine), for users who have lm_eval and its data sets (`pip install lm_eval`).
Not run in CI: the tasks' data sets must be downloaded."""
from __future__ import annotations

import numpy as np

from ..errors import EdgeqError
from ..tokenizer import MISSING, eos_id
from .generate import generate


def _logprobs(backend, ids: list[int]) -> np.ndarray:
    logits, _ = backend.forward(np.array([ids], dtype=np.int64), backend.new_state(1))
    z = logits[0].astype(np.float64)
    z -= z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))  # [L, vocab]: row t predicts t+1


def make_lm(backend, tokenizer):
    from lm_eval.api.model import LM

    prefix = [eos_id(tokenizer) or 0]  # conditions the first token of rolling scores

    class EdgeqLM(LM):
        def loglikelihood(self, requests):
            out = []
            for req in requests:
                context, continuation = req.args
                ctx = prefix + tokenizer.encode(context).ids
                cont = tokenizer.encode(continuation).ids
                lp = _logprobs(backend, ctx + cont)[len(ctx) - 1:-1]
                picked = lp[np.arange(len(cont)), cont]
                out.append((float(picked.sum()), bool((lp.argmax(-1) == cont).all())))
            return out

        def loglikelihood_rolling(self, requests):
            out = []
            for req in requests:
                ids = tokenizer.encode(req.args[0]).ids
                lp = _logprobs(backend, prefix + ids)[:-1]
                out.append(float(lp[np.arange(len(ids)), ids].sum()))
            return out

        def generate_until(self, requests):
            out = []
            for req in requests:
                context, kwargs = req.args
                ids = generate(backend, prefix + tokenizer.encode(context).ids,
                               int(kwargs.get("max_gen_toks", 64)))
                s = tokenizer.decode(ids)
                for stop in kwargs.get("until", []):
                    s = s.split(stop)[0]
                out.append(s)
            return out

    return EdgeqLM()


def run_tasks(backend, tokenizer, tasks: list[str]) -> dict:
    try:
        from lm_eval import simple_evaluate
    except ImportError:
        raise EdgeqError("--tasks needs the lm-evaluation-harness: pip install lm_eval") from None
    if tokenizer is None:
        raise EdgeqError(f"--tasks needs the model's tokenizer; {MISSING}")
    res = simple_evaluate(model=make_lm(backend, tokenizer), tasks=tasks)
    return res["results"]
