"""Neighbouring custom nodes run as one PyOp call, in the session ORT runs only (ort_ops.for_ort;
the graph on disk and TensorRT's are unchanged). At decode a PyOp call costs more in edgeq's
Python and onnxruntime-extensions' bridge than most kernels (docs/cpu-runtime.md); a chain runs
its ops' kernels in one call, each op after the first taking the one before's first output as
its first input, a tensor ORT then never sees. The arithmetic is each op's own."""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from ..ops.table import (ADD_RMSNORM_INT8, DOMAIN, HADAMARD_INT8, LINEAR_W4A8,
                         SELECTIVE_SCAN_INT8, OpDef)


@dataclass(frozen=True)
class Chain:
    ops: tuple[OpDef, ...]

    @property
    def name(self) -> str:
        return "+".join(op.name for op in self.ops)

    def split(self, items: list, k: int) -> list:
        """Of op k's ports (inputs or outputs), those the fused node has: all but the first of
        each op after the first (its input comes from the op before)."""
        return items if k == 0 else items[1:]

    def attr_name(self, k: int, name: str) -> str:
        return f"{k}.{name}"  # two ops may have an attribute of the same name

    def outputs(self, per_op: list[list]) -> list:
        """The fused node's outputs from each op's: all but the first output of each op before
        the last (read only by the next op), then all of the last op's."""
        *before, last = per_op
        return [o for outs in before for o in outs[1:]] + list(last)


# The custom ops one after another in a decode step's path: from a Mamba-1 layer's scan through
# out_proj to the next layer's add + norm and in_proj (int8 linears are ORT's own nodes in W8A8
# graphs, W4A8 ones custom; Mamba-2's scan output goes through ORT's gating and norm first).
PATH = (SELECTIVE_SCAN_INT8, HADAMARD_INT8, LINEAR_W4A8, ADD_RMSNORM_INT8, LINEAR_W4A8)
# every run of two or more of them, the longest first: each graph fuses what it has of the path
CHAINS = tuple(Chain(PATH[i:i + n]) for n in range(len(PATH), 1, -1)
               for i in range(len(PATH) - n + 1))


def _is(node: onnx.NodeProto, op: OpDef) -> bool:
    return node.domain == DOMAIN and node.op_type == op.name


def _match(chain: Chain, first: onnx.NodeProto, readers: dict, kept: set) -> list | None:
    """The nodes of `chain` starting at `first`, or None. Each op's first output must be read
    only by the next op, as its first input only, and not be a graph output (`kept`); every
    node must have all its inputs (a PyOp takes no absent input)."""
    nodes = [first]
    for op in chain.ops[1:]:
        y = nodes[-1].output[0]
        nxt = readers.get(y, [])
        if y in kept or len(nxt) != 1 or not _is(nxt[0], op) or list(nxt[0].input).count(y) != 1 \
                or nxt[0].input[0] != y:
            return None
        nodes.append(nxt[0])
    if any(len(n.input) != len(op.inputs) or "" in n.input for n, op in zip(nodes, chain.ops)):
        return None
    return nodes


def _fused(chain: Chain, nodes: list) -> onnx.NodeProto:
    inputs = [i for k, n in enumerate(nodes) for i in chain.split(list(n.input), k)]
    node = onnx.helper.make_node(chain.name, inputs,
                                 chain.outputs([list(n.output) for n in nodes]),
                                 name="+".join(n.name for n in nodes), domain=DOMAIN)
    for k, (n, op) in enumerate(zip(nodes, chain.ops)):
        own = {a.name for a in op.attrs}  # not the plugin's version and namespace
        for a in n.attribute:
            if a.name in own:
                node.attribute.append(a)
                node.attribute[-1].name = chain.attr_name(k, a.name)
    return node


def fuse(graph: onnx.GraphProto) -> None:
    """Each chain of CHAINS in `graph` replaced by one node of the chain's name, placed where its
    last node was (so its inputs are made before it) unless a node in between reads an output
    of the chain's earlier nodes."""
    nodes = list(graph.node)  # held: the ids below stay the nodes'
    readers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    kept = {o.name for o in graph.output}
    at = {id(n): k for k, n in enumerate(nodes)}
    out: list = list(nodes)  # None where a node went into a fused one
    for n in nodes:
        for chain in CHAINS:
            run = _is(n, chain.ops[0]) and _match(chain, n, readers, kept)
            if not run or any(out[at[id(m)]] is not m for m in run):  # taken by another chain
                continue
            first, last = at[id(run[0])], at[id(run[-1])]
            early = {o for m in run[:-1] for o in m.output[1:]}
            if any(early & set(m.input) for m in nodes[first + 1:last]):  # run's own are None
                continue
            for m in run:
                out[at[id(m)]] = None
            out[last] = _fused(chain, run)
            break
    del graph.node[:]
    graph.node.extend(n for n in out if n is not None)
