"""Accuracy measures over a backend: perplexity and top-1 agreement on a token stream. A prefill
asks for every position's logits (torch, ORT); a TensorRT engine gives one, so use step=True."""
from __future__ import annotations

import math

import numpy as np


def _windows(ids: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping windows of seq_len + 1 tokens (inputs and next-token targets)."""
    n = (len(ids) - 1) // seq_len
    if n == 0:
        return ids[None, :]
    return np.stack([ids[i * seq_len: (i + 1) * seq_len + 1] for i in range(n)])


def logits_over(backend, ids: np.ndarray, seq_len: int, batch: int = 8, step: bool = False):
    """(logits, targets) of every window, each window from a fresh state: one prefill call, or
    with step token by token (decode steps, L = 1: an int8 state cache rounds at every one)."""
    wins = _windows(np.asarray(ids, dtype=np.int64), seq_len)
    for start in range(0, len(wins), batch):
        w = wins[start:start + batch]
        state = backend.new_state(len(w))
        if not step:
            yield backend.forward(w[:, :-1], state)[0], w[:, 1:]
            continue
        logits = []
        for t in range(w.shape[1] - 1):
            lt, state = backend.forward(w[:, t:t + 1], state)
            logits.append(lt)
        yield np.concatenate(logits, 1), w[:, 1:]


def perplexity(backend, ids: np.ndarray, seq_len: int = 512, batch: int = 8,
               step: bool = False) -> float:
    nll, count = 0.0, 0
    for logits, targets in logits_over(backend, ids, seq_len, batch, step):
        z = logits.astype(np.float64)
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        nll -= np.take_along_axis(logp, targets[..., None], -1).sum()
        count += targets.size
    mean = nll / count
    return math.exp(mean) if mean < 709 else math.inf  # past 709 nats a double overflows


def top1_agreement(a, b, ids: np.ndarray, seq_len: int = 512, batch: int = 8,
                   step: bool = False) -> float:
    """Fraction of positions where two backends predict the same next token."""
    same = total = 0
    for (la, _), (lb, _) in zip(logits_over(a, ids, seq_len, batch, step),
                                logits_over(b, ids, seq_len, batch, step)):
        same += int((la.argmax(-1) == lb.argmax(-1)).sum())
        total += la.shape[0] * la.shape[1]
    return same / total
