"""The op table: the one place that names each edgeq op for every backend.

The ONNX export, the ONNX schemas, the ORT custom ops, the ctypes kernel bindings and the
TensorRT plugin creators are all generated from, or tested against, these rows.
docs/ops.md is the written spec of the same ops.
"""
from __future__ import annotations

from dataclasses import dataclass

DOMAIN = "edgeq"  # ONNX domain of the custom nodes; TensorRT ignores it
NAMESPACE = "edgeq"  # TensorRT plugin namespace (the plugin_namespace attribute)


@dataclass(frozen=True)
class Attr:
    name: str
    type: str  # one of INT, INTS, FLOAT, FLOATS, STRING: what TensorRT 10.3 forwards
    default: object
    doc: str


@dataclass(frozen=True)
class Port:
    name: str
    doc: str
    optional: bool = False
    like: str = ""  # outputs: the input whose dtype and shape this output has


@dataclass(frozen=True)
class OpDef:
    name: str  # ONNX op_type == TensorRT plugin name
    torch_name: str  # torch.library name, "edgeq::..."
    c_symbol: str  # same symbol in the CPU and the CUDA library
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    attrs: tuple[Attr, ...]
    version: str = "1"
    namespace: str = NAMESPACE

    def node_attrs(self, **values) -> dict:
        """Attributes of an ONNX node of this op: its own ones plus the plugin ones."""
        out = {a.name: values.pop(a.name, a.default) for a in self.attrs}
        if values:
            raise TypeError(f"{self.name}: unknown attributes {sorted(values)}")
        out["plugin_version"] = self.version
        out["plugin_namespace"] = self.namespace
        return out


SELECTIVE_SCAN = OpDef(
    name="EdgeqSelectiveScan",
    torch_name="edgeq::selective_scan",
    c_symbol="edgeq_selective_scan_f32",
    inputs=(
        Port("u", "[batch, L, D] SSM input"),
        Port("delta", "[batch, L, H] time step before bias and softplus"),
        Port("A", "[H, N] fp32 state matrix"),
        Port("B", "[batch, L, G, N] input matrix"),
        Port("C", "[batch, L, G, N] output matrix"),
        Port("D", "[D] fp32 skip"),
        Port("delta_bias", "[H] fp32"),
        Port("state", "[batch, D, N] fp32 initial state"),
        Port("z", "[batch, L, D] gate", optional=True),
    ),
    outputs=(Port("y", "[batch, L, D]", like="u"),
             Port("state_out", "[batch, D, N] fp32", like="state")),
    attrs=(Attr("delta_softplus", "INT", 1, "apply softplus (threshold 20) to delta + bias"),),
)

CAUSAL_CONV1D = OpDef(
    name="EdgeqCausalConv1d",
    torch_name="edgeq::causal_conv1d",
    c_symbol="edgeq_causal_conv1d_f32",
    inputs=(
        Port("x", "[batch, L, C]"),
        Port("weight", "[C, W]"),
        Port("bias", "[C]"),
        Port("state", "[batch, W-1, C] previous inputs, oldest first"),
    ),
    outputs=(Port("y", "[batch, L, C]", like="x"),
             Port("state_out", "[batch, W-1, C]", like="state")),
    attrs=(Attr("activation", "INT", 1, "0: none, 1: SiLU"),),
)

OPS: tuple[OpDef, ...] = (SELECTIVE_SCAN, CAUSAL_CONV1D)
BY_NAME = {op.name: op for op in OPS}
