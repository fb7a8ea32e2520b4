"""The one generation loop for every backend: prefill the prompt, then decode token by token
carrying the states."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Sampling:
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    seed: int = 0


def pick(logits: np.ndarray, s: Sampling, rng: np.random.Generator) -> int:
    """Choose the next token from one row of logits."""
    if s.greedy:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / max(s.temperature, 1e-6)
    order = np.argsort(-z, kind="stable")
    if s.top_k > 0:
        order = order[: s.top_k]
    p = np.exp(z[order] - z[order[0]])
    p /= p.sum()
    if s.top_p < 1.0:  # smallest prefix whose mass reaches top_p
        keep = int(np.searchsorted(np.cumsum(p), s.top_p) + 1)
        order, p = order[:keep], p[:keep] / p[:keep].sum()
    return int(order[rng.choice(len(order), p=p)])


def generate(backend, prompt_ids: list[int], max_new_tokens: int, sampling: Sampling = Sampling(),
             eos_id: int | None = None, on_token: Callable[[int], None] | None = None) -> list[int]:
    if not prompt_ids:
        raise ValueError("the prompt has no tokens")
    rng = np.random.default_rng(sampling.seed)
    logits, state = backend.forward(np.array([prompt_ids], dtype=np.int64), backend.new_state(1),
                                    last=True)
    out: list[int] = []
    while len(out) < max_new_tokens:
        tok = pick(logits[0, -1], sampling, rng)
        out.append(tok)
        if on_token:
            on_token(tok)
        if tok == eos_id or len(out) == max_new_tokens:
            break
        logits, state = backend.forward(np.array([[tok]], dtype=np.int64), state)
    return out
