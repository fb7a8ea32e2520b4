"""The op table: the one place that names each edgeq op for every backend.

The torch custom ops and their fakes, the ONNX schemas, the ORT custom ops, the ctypes kernel
bindings, the TensorRT plugin fields and creators and the CMake op list all come from these
rows (docs/adding-an-op.md). docs/ops.md is the written spec of the same ops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

DOMAIN = "edgeq"  # ONNX domain of the custom nodes; TensorRT ignores it
NAMESPACE = "edgeq"  # TensorRT plugin namespace (the plugin_namespace attribute)
# a port's element type; "act" is the op's activation type: fp32, or fp16 in its fp16 variant
DTYPES = ("act", "fp32", "fp16", "int8", "int4", "int64")


@dataclass(frozen=True)
class Attr:
    name: str
    type: str  # one of INT, INTS, FLOAT, FLOATS, STRING: what TensorRT 10.3 forwards
    default: object
    doc: str
    # FLOATS scales: (input, axis) they run along; length 1 (per tensor) or that axis' size
    per: tuple[str, int] | tuple[()] = ()
    c_type: str = ""  # the C ABI's type where INT's int32_t is not it: "int64"
    torch_type: str = ""  # the torch op's type where INT's SymInt is not it: "bool"


@dataclass(frozen=True)
class Port:
    name: str
    dtype: str  # one of DTYPES
    doc: str
    optional: bool = False
    like: str = ""  # outputs: the input whose shape this output has
    last_from: str = ""  # outputs: the input whose first dim is this output's last one
    append_from: str = ""  # outputs: the input whose last dim is appended to `like`'s shape


@dataclass(frozen=True)
class OpDef:
    name: str  # ONNX op_type == TensorRT plugin name
    torch_name: str  # torch.library name, "edgeq::..."
    c_symbol: str  # same symbol in the CPU and the CUDA library
    folder: str  # its plugins/ folder: FOLDER_cpu.cpp, FOLDER_cuda.cu, FOLDER_trt.cpp
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    dims: tuple[str, ...]  # the C ABI's shape ints, between the outputs and the attributes
    attrs: tuple[Attr, ...]
    f16_symbol: str = ""  # the CUDA library's variant with fp16 "act" ports, if any
    version: str = "1"
    namespace: str = NAMESPACE

    @property
    def py_name(self) -> str:
        """Its name in torch.ops.edgeq, edgeq.ops.reference, edgeq.runtime.kernels and the
        TensorRT creator function (`PY_NAME_creator`)."""
        return self.torch_name.split("::")[1]

    def node_attrs(self, **values) -> dict:
        """Attributes of an ONNX node of this op: its own ones plus the plugin ones."""
        out = {a.name: values.pop(a.name, a.default) for a in self.attrs}
        if values:
            raise TypeError(f"{self.name}: unknown attributes {sorted(values)}")
        out["plugin_version"] = self.version
        out["plugin_namespace"] = self.namespace
        return out

    def output_types(self, shapes: Sequence, dtypes: Sequence, dtype_of: Callable) -> list:
        """Each output's (shape, dtype) from the inputs' shapes (sequences of dims; None for an
        absent input) and dtypes, in any representation: dtype_of turns a table dtype into
        that representation, and an "act" output takes the first input's dtype. A dim that
        cannot be known (its source shape is unknown) is None. The one rule of the ONNX
        schemas, the ORT custom ops and the torch fakes."""
        index = {p.name: i for i, p in enumerate(self.inputs)}
        out = []
        for p in self.outputs:
            shape = list(shapes[index[p.like]] or ())
            if p.last_from and shape:
                rows = shapes[index[p.last_from]]
                shape[-1] = rows[0] if rows else None
            if p.append_from:
                src = shapes[index[p.append_from]]
                shape.append(src[-1] if src else None)
            out.append((shape, dtypes[0] if p.dtype == "act" else dtype_of(p.dtype)))
        return out


SELECTIVE_SCAN = OpDef(
    name="EdgeqSelectiveScan",
    torch_name="edgeq::selective_scan",
    c_symbol="edgeq_selective_scan_f32",
    f16_symbol="edgeq_selective_scan_f16",
    folder="selective_scan",
    inputs=(
        Port("u", "act", "[batch, L, D] SSM input"),
        Port("delta", "act", "[batch, L, H] time step before bias and softplus"),
        Port("A", "fp32", "[H, N] fp32 state matrix"),
        Port("B", "act", "[batch, L, G, N] input matrix"),
        Port("C", "act", "[batch, L, G, N] output matrix"),
        Port("D", "fp32", "[D] fp32 skip"),
        Port("delta_bias", "fp32", "[H] fp32"),
        Port("state", "fp32", "[batch, D, N] fp32 initial state"),
        Port("z", "act", "[batch, L, D] gate", optional=True),
    ),
    outputs=(Port("y", "act", "[batch, L, D]", like="u"),
             Port("state_out", "fp32", "[batch, D, N] fp32", like="state")),
    dims=("batch", "L", "dim", "heads", "groups", "dstate"),
    attrs=(Attr("delta_softplus", "INT", 1, "apply softplus (threshold 20) to delta + bias",
                torch_type="bool"),),
)

CAUSAL_CONV1D = OpDef(
    name="EdgeqCausalConv1d",
    torch_name="edgeq::causal_conv1d",
    c_symbol="edgeq_causal_conv1d_f32",
    f16_symbol="edgeq_causal_conv1d_f16",
    folder="causal_conv1d",
    inputs=(
        Port("x", "act", "[batch, L, C]"),
        Port("weight", "act", "[C, W]"),
        Port("bias", "act", "[C]"),
        Port("state", "act", "[batch, W-1, C] previous inputs, oldest first"),
    ),
    outputs=(Port("y", "act", "[batch, L, C]", like="x"),
             Port("state_out", "act", "[batch, W-1, C]", like="state")),
    dims=("batch", "L", "channels", "width"),
    attrs=(Attr("activation", "INT", 1, "0: none, 1: SiLU"),),
)

SSD_SCAN = OpDef(
    name="EdgeqSSDScan",
    torch_name="edgeq::ssd_scan",
    c_symbol="edgeq_ssd_scan_f32",
    f16_symbol="edgeq_ssd_scan_f16",
    folder="ssd_scan",
    inputs=(
        Port("x", "act", "[batch, L, D] SSM input, D = H * P"),
        Port("dt", "act", "[batch, L, H] time step before bias and softplus"),
        Port("A", "fp32", "[H] fp32, one per head"),
        Port("B", "act", "[batch, L, G, N]"),
        Port("C", "act", "[batch, L, G, N]"),
        Port("D", "fp32", "[H] fp32 skip, one per head"),
        Port("dt_bias", "fp32", "[H] fp32"),
        Port("state", "fp32", "[batch, D, N] fp32 initial state"),
    ),
    outputs=(Port("y", "act", "[batch, L, D]", like="x"),
             Port("state_out", "fp32", "[batch, D, N] fp32", like="state")),
    dims=("batch", "L", "dim", "heads", "groups", "dstate"),
    attrs=(Attr("dt_softplus", "INT", 1, "apply softplus (threshold 20) to dt + dt_bias",
                torch_type="bool"),
           Attr("chunk_size", "INT", 256, "SSD chunk length; a kernel choice, not semantics")),
)


def _scales(*names: str) -> tuple[Attr, ...]:
    return tuple(Attr(f"{n}_scale", "FLOAT", 1.0, f"per-tensor scale of int8 {n}") for n in names)


def _channel_scales(**per: tuple[str, int]) -> tuple[Attr, ...]:
    """FLOATS scales, name=(input, axis): one value, or one per index of that axis."""
    return tuple(Attr(f"{n}_scale", "FLOATS", (1.0,), f"scales of int8 {n}: 1 or one per "
                      f"index of axis {axis} of {src}", per=(src, axis))
                 for n, (src, axis) in per.items())


def _group_size(doc: str) -> Attr:
    return Attr("group_size", "INT", 128, doc, c_type="int64")


SELECTIVE_SCAN_INT8 = OpDef(
    name="EdgeqSelectiveScanInt8",
    torch_name="edgeq::selective_scan_int8",
    c_symbol="edgeq_selective_scan_int8",
    folder="selective_scan",
    inputs=(
        Port("u", "int8", "[batch, L, D] int8"),
        Port("delta", "int8", "[batch, L, H] int8"),
        Port("A", "fp32", "[H, N] fp32"),
        Port("B", "int8", "[batch, L, G, N] int8"),
        Port("C", "int8", "[batch, L, G, N] int8"),
        Port("D", "fp32", "[D] fp32"),
        Port("delta_bias", "fp32", "[H] fp32"),
        Port("state", "fp32", "[batch, D, N] fp32"),
        Port("z", "int8", "[batch, L, D] int8"),
    ),
    outputs=(Port("y", "fp32", "[batch, L, D] fp32", like="u"),
             Port("state_out", "fp32", "[batch, D, N] fp32", like="state")),
    dims=SELECTIVE_SCAN.dims,
    attrs=_scales("u", "delta", "B", "C", "z") + SELECTIVE_SCAN.attrs,
)

CAUSAL_CONV1D_INT8 = OpDef(
    name="EdgeqCausalConv1dInt8",
    torch_name="edgeq::causal_conv1d_int8",
    c_symbol="edgeq_causal_conv1d_int8",
    folder="causal_conv1d",
    inputs=(
        Port("x", "int8", "[batch, L, C] int8"),
        Port("weight", "int8", "[C, W] int8"),
        Port("bias", "fp32", "[C] fp32"),
        Port("state", "int8", "[batch, W-1, C] int8 previous inputs"),
    ),
    outputs=(Port("y", "int8", "[batch, L, C] int8", like="x"),
             Port("state_out", "int8", "[batch, W-1, C] int8", like="state")),
    dims=CAUSAL_CONV1D.dims,
    attrs=_channel_scales(x=("x", 2), weight=("x", 2), y=("x", 2)) + CAUSAL_CONV1D.attrs,
)

SSD_SCAN_INT8 = OpDef(
    name="EdgeqSSDScanInt8",
    torch_name="edgeq::ssd_scan_int8",
    c_symbol="edgeq_ssd_scan_int8",
    folder="ssd_scan",
    inputs=(
        Port("x", "int8", "[batch, L, D] int8, D = H * P"),
        Port("dt", "int8", "[batch, L, H] int8"),
        Port("A", "fp32", "[H] fp32"),
        Port("B", "int8", "[batch, L, G, N] int8"),
        Port("C", "int8", "[batch, L, G, N] int8"),
        Port("D", "fp32", "[H] fp32"),
        Port("dt_bias", "fp32", "[H] fp32"),
        Port("state", "fp16", "[batch, D, N] fp16: the cached state"),
    ),
    outputs=(Port("y", "fp32", "[batch, L, D] fp32", like="x"),
             Port("state_out", "fp16", "[batch, D, N] fp16", like="state")),
    dims=SSD_SCAN.dims,
    attrs=_channel_scales(x=("x", 2), dt=("dt", 2), B=("B", 2), C=("C", 2)) + SSD_SCAN.attrs,
)

HADAMARD_INT8 = OpDef(
    name="EdgeqHadamardInt8",
    torch_name="edgeq::hadamard_int8",
    c_symbol="edgeq_hadamard_int8",
    folder="hadamard",
    inputs=(Port("x", "fp32", "[..., n] fp32"),),
    outputs=(Port("y", "int8", "[..., n] int8, quantize(x @ H_n^T)", like="x"),),
    dims=("rows", "n"),
    attrs=_scales("y"),
)

ADD_RMSNORM_INT8 = OpDef(
    name="EdgeqAddRMSNormInt8",
    torch_name="edgeq::add_rmsnorm_int8",
    c_symbol="edgeq_add_rmsnorm_int8",
    folder="add_rmsnorm",
    inputs=(Port("x", "fp32", "[..., d] fp32"), Port("residual", "fp32", "[..., d] fp32"),
            Port("weight", "fp32", "[d] fp32")),
    outputs=(Port("y", "int8", "[..., d] int8, quantize(rmsnorm(x + residual) * weight)",
                  like="x"),
             Port("residual_out", "fp32", "[..., d] fp32, x + residual", like="x")),
    dims=("rows", "d"),
    attrs=(Attr("eps", "FLOAT", 1e-5, "RMSNorm epsilon"),) + _scales("y"),
)

LINEAR_W4A8 = OpDef(
    name="EdgeqLinearW4A8",
    torch_name="edgeq::linear_w4a8",
    c_symbol="edgeq_linear_w4a8",
    folder="linear_w4a8",
    inputs=(Port("x", "int8", "[..., K] int8"),
            Port("weight", "int8", "[N, K/2] int8: the bytes of int4 pairs in ONNX's INT4 order"),
            Port("weight_scale", "fp32", "[N, K/group_size] fp32")),
    outputs=(Port("y", "fp32", "[..., N] fp32", like="x", last_from="weight"),),
    dims=("rows", "K", "N"),
    attrs=_scales("x") + (_group_size("input channels per weight scale"),),
)

EMBEDDING_W4 = OpDef(
    name="EdgeqEmbeddingW4",
    torch_name="edgeq::embedding_w4",
    c_symbol="edgeq_embedding_w4",
    folder="embedding_w4",
    inputs=(Port("ids", "int64", "[...] int64 token ids"),
            Port("table", "int4", "[vocab, d] INT4 (the same initializer as the 4-bit head's)"),
            Port("table_scale", "fp16", "[vocab, d/group_size] fp16")),
    outputs=(Port("y", "fp32", "[..., d] fp32: the dequantized rows of the ids", like="ids",
                  append_from="table"),),
    dims=("rows", "vocab", "d"),
    attrs=(_group_size("elements of a row per scale"),),
)

OPS: tuple[OpDef, ...] = (SELECTIVE_SCAN, CAUSAL_CONV1D, SSD_SCAN, SELECTIVE_SCAN_INT8,
                          CAUSAL_CONV1D_INT8, HADAMARD_INT8, ADD_RMSNORM_INT8, LINEAR_W4A8,
                          SSD_SCAN_INT8, EMBEDDING_W4)
BY_NAME = {op.name: op for op in OPS}
