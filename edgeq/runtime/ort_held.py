"""Constant inputs of the custom nodes held in Python for the session ORT runs, not in its graph.
onnxruntime-extensions' bridge copies every input of a PyOp into a new numpy array on every
call, about 120 us per MB here: a W4A8 in_proj's 4-bit weight at Mamba-1.4b's widths is 8.4 MB,
copied at every decode step. Held, a node gets an empty tensor in the constant's place, and its
ATTR attribute says which of its inputs is which held array ("index=key ...")."""
from __future__ import annotations

import functools
import itertools

import numpy as np
import onnx
from onnx import numpy_helper

ATTR = "edgeq_held"  # on every custom node of the ORT session (ort_ops.for_ort), "" if none
_HELD: dict[str, np.ndarray] = {}
_sessions = itertools.count()


def hold(graph: onnx.GraphProto) -> list[str]:
    """Every initializer input of a node that has ATTR held, its input made an empty tensor of
    its type. Returns the keys, for release() when the session goes; the initializers left
    unread are the caller's to drop (ort_ops.drop_unused)."""
    inits = {i.name: i for i in graph.initializer}
    session, keys, empty = next(_sessions), [], {}
    for n in graph.node:
        attr = next((a for a in n.attribute if a.name == ATTR), None)
        if attr is None:
            continue
        pairs = []
        for k, name in enumerate(n.input):
            t = inits.get(name)
            if t is None:
                continue
            key = f"{session}:{name}"
            if key not in _HELD:
                # an array of its own: writable, so the kernels' wrappers take its address fast
                _HELD[key] = np.array(numpy_helper.to_array(t))
                keys.append(key)
            if t.data_type not in empty:
                empty[t.data_type] = f"edgeq_held_empty_{t.data_type}"
                graph.initializer.append(onnx.helper.make_tensor(empty[t.data_type], t.data_type,
                                                                 [0], []))
            n.input[k] = empty[t.data_type]
            pairs.append(f"{k}={key}")
        attr.s = " ".join(pairs).encode()
    return keys


def release(keys: list[str]) -> None:
    for key in keys:
        _HELD.pop(key, None)


@functools.lru_cache(maxsize=4096)
def _pairs(text: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(k), key) for k, key in (p.split("=", 1) for p in text.split()))


def inputs(given, text: str) -> list:
    """A call's inputs with the held arrays in their places (`text`: the node's ATTR)."""
    given = list(given)
    for k, key in _pairs(text):
        given[k] = _HELD[key]
    return given
