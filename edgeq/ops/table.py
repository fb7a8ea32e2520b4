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
    # FLOATS scales: (input, axis) they run along; length 1 (per tensor) or that axis' size
    per: tuple[str, int] | tuple[()] = ()


@dataclass(frozen=True)
class Port:
    name: str
    doc: str
    optional: bool = False
    like: str = ""  # outputs: the input whose shape (and dtype, unless given) this output has
    dtype: str = ""  # outputs: "int8" or "float" where it differs from `like`
    last_from: str = ""  # outputs: the input whose first dim is this output's last one
    append_from: str = ""  # outputs: the input whose last dim is appended to `like`'s shape


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

SSD_SCAN = OpDef(
    name="EdgeqSSDScan",
    torch_name="edgeq::ssd_scan",
    c_symbol="edgeq_ssd_scan_f32",
    inputs=(
        Port("x", "[batch, L, D] SSM input, D = H * P"),
        Port("dt", "[batch, L, H] time step before bias and softplus"),
        Port("A", "[H] fp32, one per head"),
        Port("B", "[batch, L, G, N]"),
        Port("C", "[batch, L, G, N]"),
        Port("D", "[H] fp32 skip, one per head"),
        Port("dt_bias", "[H] fp32"),
        Port("state", "[batch, D, N] fp32 initial state"),
    ),
    outputs=(Port("y", "[batch, L, D]", like="x"),
             Port("state_out", "[batch, D, N] fp32", like="state")),
    attrs=(Attr("dt_softplus", "INT", 1, "apply softplus (threshold 20) to dt + dt_bias"),
           Attr("chunk_size", "INT", 256, "SSD chunk length; a kernel choice, not semantics")),
)


def _scales(*names: str) -> tuple[Attr, ...]:
    return tuple(Attr(f"{n}_scale", "FLOAT", 1.0, f"per-tensor scale of int8 {n}") for n in names)


def _channel_scales(**per: tuple[str, int]) -> tuple[Attr, ...]:
    """FLOATS scales, name=(input, axis): one value, or one per index of that axis."""
    return tuple(Attr(f"{n}_scale", "FLOATS", (1.0,), f"scales of int8 {n}: 1 or one per "
                      f"index of axis {axis} of {src}", per=(src, axis))
                 for n, (src, axis) in per.items())


SELECTIVE_SCAN_INT8 = OpDef(
    name="EdgeqSelectiveScanInt8",
    torch_name="edgeq::selective_scan_int8",
    c_symbol="edgeq_selective_scan_int8",
    inputs=(
        Port("u", "[batch, L, D] int8"),
        Port("delta", "[batch, L, H] int8"),
        Port("A", "[H, N] fp32"),
        Port("B", "[batch, L, G, N] int8"),
        Port("C", "[batch, L, G, N] int8"),
        Port("D", "[D] fp32"),
        Port("delta_bias", "[H] fp32"),
        Port("state", "[batch, D, N] fp32"),
        Port("z", "[batch, L, D] int8"),
    ),
    outputs=(Port("y", "[batch, L, D] fp32", like="u", dtype="float"),
             Port("state_out", "[batch, D, N] fp32", like="state")),
    attrs=_scales("u", "delta", "B", "C", "z") + SELECTIVE_SCAN.attrs,
)

CAUSAL_CONV1D_INT8 = OpDef(
    name="EdgeqCausalConv1dInt8",
    torch_name="edgeq::causal_conv1d_int8",
    c_symbol="edgeq_causal_conv1d_int8",
    inputs=(
        Port("x", "[batch, L, C] int8"),
        Port("weight", "[C, W] int8"),
        Port("bias", "[C] fp32"),
        Port("state", "[batch, W-1, C] int8 previous inputs"),
    ),
    outputs=(Port("y", "[batch, L, C] int8", like="x"),
             Port("state_out", "[batch, W-1, C] int8", like="state")),
    attrs=_channel_scales(x=("x", 2), weight=("x", 2), y=("x", 2)) + CAUSAL_CONV1D.attrs,
)

SSD_SCAN_INT8 = OpDef(
    name="EdgeqSSDScanInt8",
    torch_name="edgeq::ssd_scan_int8",
    c_symbol="edgeq_ssd_scan_int8",
    inputs=(
        Port("x", "[batch, L, D] int8, D = H * P"),
        Port("dt", "[batch, L, H] int8"),
        Port("A", "[H] fp32"),
        Port("B", "[batch, L, G, N] int8"),
        Port("C", "[batch, L, G, N] int8"),
        Port("D", "[H] fp32"),
        Port("dt_bias", "[H] fp32"),
        Port("state", "[batch, D, N] fp16: the cached state"),
    ),
    outputs=(Port("y", "[batch, L, D] fp32", like="x", dtype="float"),
             Port("state_out", "[batch, D, N] fp16", like="state")),
    attrs=_channel_scales(x=("x", 2), dt=("dt", 2), B=("B", 2), C=("C", 2)) + SSD_SCAN.attrs,
)

HADAMARD_INT8 = OpDef(
    name="EdgeqHadamardInt8",
    torch_name="edgeq::hadamard_int8",
    c_symbol="edgeq_hadamard_int8",
    inputs=(Port("x", "[..., n] fp32"),),
    outputs=(Port("y", "[..., n] int8, quantize(x @ H_n^T)", like="x", dtype="int8"),),
    attrs=_scales("y"),
)

ADD_RMSNORM_INT8 = OpDef(
    name="EdgeqAddRMSNormInt8",
    torch_name="edgeq::add_rmsnorm_int8",
    c_symbol="edgeq_add_rmsnorm_int8",
    inputs=(Port("x", "[..., d] fp32"), Port("residual", "[..., d] fp32"),
            Port("weight", "[d] fp32")),
    outputs=(Port("y", "[..., d] int8, quantize(rmsnorm(x + residual) * weight)", like="x",
                  dtype="int8"),
             Port("residual_out", "[..., d] fp32, x + residual", like="x")),
    attrs=(Attr("eps", "FLOAT", 1e-5, "RMSNorm epsilon"),) + _scales("y"),
)

LINEAR_W4A8 = OpDef(
    name="EdgeqLinearW4A8",
    torch_name="edgeq::linear_w4a8",
    c_symbol="edgeq_linear_w4a8",
    inputs=(Port("x", "[..., K] int8"),
            Port("weight", "[N, K/2] int8: the bytes of int4 pairs in ONNX's INT4 order"),
            Port("weight_scale", "[N, K/group_size] fp32")),
    outputs=(Port("y", "[..., N] fp32", like="x", dtype="float", last_from="weight"),),
    attrs=_scales("x") + (Attr("group_size", "INT", 128, "input channels per weight scale"),),
)

EMBEDDING_W4 = OpDef(
    name="EdgeqEmbeddingW4",
    torch_name="edgeq::embedding_w4",
    c_symbol="edgeq_embedding_w4",
    inputs=(Port("ids", "[...] int64 token ids"),
            Port("table", "[vocab, d] INT4 (the same initializer as the 4-bit head's)"),
            Port("table_scale", "[vocab, d/group_size] fp16")),
    outputs=(Port("y", "[..., d] fp32: the dequantized rows of the ids", like="ids",
                  dtype="float", append_from="table"),),
    attrs=(Attr("group_size", "INT", 128, "elements of a row per scale"),),
)

OPS: tuple[OpDef, ...] = (SELECTIVE_SCAN, CAUSAL_CONV1D, SSD_SCAN, SELECTIVE_SCAN_INT8,
                          CAUSAL_CONV1D_INT8, HADAMARD_INT8, ADD_RMSNORM_INT8, LINEAR_W4A8,
                          SSD_SCAN_INT8, EMBEDDING_W4)
BY_NAME = {op.name: op for op in OPS}
