"""Quantized Mamba models. QuantMambaLM runs int8 activations on the edgeq int8 ops (W8A8, W4A8;
Mamba-1 and Mamba-2): its torch forward is the fake-quant model used for accuracy (exactly the
ops' spec) and it exports to the int8 ONNX graph. W4A16 is the fp model with weight-only 4-bit
linears; in a mixed (W4AX) QuantMambaLM, the layers without activation scales are such fp16
layers (W4A16Layer). Same interface as MambaLM: forward(ids, state, logits_at=None) ->
(logits, state), logits at the positions logits_at gives (all when None)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.config import MambaConfig
from ..models.mamba import MambaBlock, MambaLM, zero_state
from ..models.mamba2 import GatedRMSNorm
from ..ops import custom as ops
from ..ops import int4, qdq
from .recipe import Act, Recipe


def layer_tensors(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under `prefix`, named without it."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class QLinear(nn.Module):
    """int8 activations times int8 (per tensor or channel) or packed 4-bit (per group) weights,
    fp32 out."""

    def __init__(self, tensors: dict[str, Tensor], name: str, bias: bool = True):
        super().__init__()
        # the buffers' names (w, s, b) are the ONNX initializers' names: kept short
        self.w4 = name + ".weight_packed" in tensors
        if self.w4:  # [out, in/2] packed bytes, as int8 for the W4A8 op
            self.register_buffer("w", tensors[name + ".weight_packed"].view(torch.int8))
            self.group = 2 * self.w.shape[1] // tensors[name + ".weight_scale"].shape[1]
        else:  # int8 [in, out] for MatMul
            self.register_buffer("w", tensors[name + ".weight"].t().contiguous())
        self.register_buffer("s", tensors[name + ".weight_scale"].float())
        has_bias = bias and name + ".bias" in tensors
        self.register_buffer("b", tensors[name + ".bias"].float() if has_bias else None)

    def forward(self, xq: Tensor, x_scale: float) -> Tensor:
        y = ops.linear_w4a8(xq, self.w, self.s, x_scale, self.group) if self.w4 \
            else qdq.qlinear(xq, x_scale, self.w, self.s)
        return y if self.b is None else y + self.b


class Int8Layer(nn.Module):
    """A layer with int8 activations, from its block's tensors (norm.weight, mixer.*)."""

    def new_state(self, batch: int) -> tuple[Tensor, Tensor]:
        """int8 conv state; SSM state fp32 (Mamba-1) or an fp16 cache (Mamba-2)."""
        ssm = torch.float16 if self.cfg.arch == "mamba2" else torch.float32
        return zero_state(self.cfg, batch, torch.int8, ssm)


class Mamba1A8Layer(Int8Layer):
    """A Mamba-1 layer with int8 activations (A8: W8A8 or W4A8; Quamba): per-tensor scales."""

    def __init__(self, cfg: MambaConfig, tensors: dict[str, Tensor], scales: dict, hadamard: bool):
        super().__init__()
        self.cfg, self.scales, self.hadamard = cfg, dict(scales), hadamard
        norm_w, tensors = tensors["norm.weight"], layer_tensors(tensors, "mixer.")
        for name in ("in_proj", "x_proj", "dt_proj", "out_proj"):  # dt_proj's bias: in the scan
            setattr(self, name, QLinear(tensors, name, bias=name != "dt_proj"))
        self.register_buffer("conv_w", tensors["conv1d.weight"])
        self.scales["conv_w"] = float(tensors["conv1d.weight_scale"])
        self.register_buffer("conv_b", tensors["conv1d.bias"].float())
        self.register_buffer("norm_w", norm_w.float())
        self.register_buffer("dt_b", tensors["dt_proj.bias"].float())
        self.register_buffer("A", -torch.exp(tensors["A_log"].float()))
        self.register_buffer("D", tensors["D"].float())

    def forward(self, out: Tensor, res: Tensor, state):
        cfg, scale = self.cfg, self.scales
        batch, L, _ = out.shape
        xq, res = ops.add_rmsnorm_int8(out, res, self.norm_w, cfg.norm_eps, scale[Act.IN])
        x, z = self.in_proj(xq, scale[Act.IN]).chunk(2, dim=-1)
        uq, conv_state = ops.causal_conv1d_int8(
            qdq.quantize(x, scale[Act.X]), self.conv_w, self.conv_b, state[0], [scale[Act.X]],
            [scale["conv_w"]], [scale[Act.U]], 1)
        dt, B, C = self.x_proj(uq, scale[Act.U]).split([cfg.dt_rank, cfg.d_state, cfg.d_state],
                                                     dim=-1)
        delta = self.dt_proj(qdq.quantize(dt, scale[Act.DT]), scale[Act.DT])
        y, ssm_state = ops.selective_scan_int8(
            uq, qdq.quantize(delta, scale[Act.DELTA]), self.A,
            qdq.quantize(B, scale[Act.B]).reshape(batch, L, 1, cfg.d_state),
            qdq.quantize(C, scale[Act.C]).reshape(batch, L, 1, cfg.d_state), self.D, self.dt_b,
            state[1], qdq.quantize(z, scale[Act.Z]), scale[Act.U], scale[Act.DELTA], scale[Act.B],
            scale[Act.C], scale[Act.Z], True)
        yq = ops.hadamard_int8(y, scale[Act.Y]) if self.hadamard else qdq.quantize(y, scale[Act.Y])
        return self.out_proj(yq, scale[Act.Y]), res, (conv_state, ssm_state)


class Mamba2A8Layer(Int8Layer):
    """A Mamba-2 layer with int8 activations (A8: W8A8 or W4A8; Quamba2): x scales per
    sort-and-cluster group, B and C per state group; the SSM state an fp16 cache (docs/ops.md,
    EdgeqSSDScanInt8)."""

    def __init__(self, cfg: MambaConfig, tensors: dict[str, Tensor], scales: dict, hadamard: bool):
        super().__init__()
        self.cfg, self.scales, self.hadamard = cfg, dict(scales), hadamard
        norm_w, tensors = tensors["norm.weight"], layer_tensors(tensors, "mixer.")
        GN = cfg.ngroups * cfg.d_state
        self.in_proj, self.out_proj = QLinear(tensors, "in_proj"), QLinear(tensors, "out_proj")
        self.register_buffer("conv_w", tensors["conv1d.weight"])
        self.conv_ws = tensors["conv1d.weight_scale"].tolist()
        self.parts = [cfg.d_inner, GN, GN]  # x, B, C: one conv input scale each
        self.conv_xs = [v for v, n in zip(self.scales[Act.XBC], self.parts) for _ in range(n)]
        self.conv_ys = self.scales[Act.X] + \
            [b for b in self.scales[Act.B] for _ in range(cfg.d_state)] + \
            [c for c in self.scales[Act.C] for _ in range(cfg.d_state)]
        assert len(self.conv_ys) == cfg.d_inner + 2 * GN
        self.register_buffer("conv_b", tensors["conv1d.bias"].float())
        self.register_buffer("norm_w", norm_w.float())
        self.register_buffer("dt_b", tensors["dt_bias"].float())
        self.register_buffer("A", -torch.exp(tensors["A_log"].float()))
        self.register_buffer("D", tensors["D"].float())
        self.gate_norm = GatedRMSNorm(cfg.d_inner, cfg.ngroups, cfg.norm_eps)
        self.gate_norm.weight.data = tensors["norm.weight"].float()

    def forward(self, out: Tensor, res: Tensor, state):
        cfg, scale = self.cfg, self.scales
        batch, L, _ = out.shape
        di, G, N = cfg.d_inner, cfg.ngroups, cfg.d_state
        xq, res = ops.add_rmsnorm_int8(out, res, self.norm_w, cfg.norm_eps, scale[Act.IN])
        z, xBC, dt = self.in_proj(xq, scale[Act.IN]).split([di, cfg.conv_dim, cfg.nheads], dim=-1)
        xBC = torch.cat([qdq.quantize(part, v)
                         for part, v in zip(xBC.split(self.parts, dim=-1), scale[Act.XBC])], dim=-1)
        xBC, conv_state = ops.causal_conv1d_int8(xBC, self.conv_w, self.conv_b, state[0],
                                                 self.conv_xs, self.conv_ws, self.conv_ys, 1)
        x, B, C = xBC.split([di, G * N, G * N], dim=-1)
        y, ssm_state = ops.ssd_scan_int8(
            x, qdq.quantize(dt, scale[Act.DT]), self.A, B.reshape(batch, L, G, N),
            C.reshape(batch, L, G, N), self.D, self.dt_b, state[1], scale[Act.X], [scale[Act.DT]],
            scale[Act.B], scale[Act.C], True, cfg.chunk_size)
        gated = self.gate_norm(y, qdq.dequantize(qdq.quantize(z, scale[Act.Z]), scale[Act.Z]))
        yq = ops.hadamard_int8(gated, scale[Act.Y]) if self.hadamard \
            else qdq.quantize(gated, scale[Act.Y])
        return self.out_proj(yq, scale[Act.Y]), res, (conv_state, ssm_state)


class QuantMambaLM(nn.Module):
    exportable = True

    def __init__(self, cfg: MambaConfig, tensors: dict[str, Tensor], scales: list[dict],
                 recipe: Recipe):
        super().__init__()
        self.cfg, self.recipe = cfg, recipe
        int8 = Mamba2A8Layer if cfg.arch == "mamba2" else Mamba1A8Layer
        self.layers = nn.ModuleList()
        for i in range(cfg.n_layer):
            own = layer_tensors(tensors, f"backbone.layers.{i}.")
            self.layers.append(int8(cfg, own, scales[i], recipe.hadamard_out_proj) if scales[i]
                               else W4A16Layer(cfg, own))
        # fp16 parts: embedding and lm_head fp16 tables (the final norm fp16-rounded fp32);
        # head-to-toe recipes hold embedding and lm_head as weight-only 4-bit tables (tied: one)
        self.register_buffer("norm_f", tensors["backbone.norm_f.weight"].float())
        emb = w4_table(tensors, "backbone.embeddings", transposed=False) or \
            FpTable(tensors["backbone.embeddings.weight"])
        head = w4_table(tensors, "lm_head", transposed=False) or \
            (FpTable(tensors["lm_head.weight"]) if "lm_head.weight" in tensors else emb)
        self.embedding, self.lm_head = TableEmbedding(emb), TableLinear(head)  # tied: one table

    def new_state(self, batch: int):
        return [layer.new_state(batch) for layer in self.layers]

    def forward(self, input_ids: Tensor, state=None, logits_at: Tensor | None = None):
        """As MambaLM.forward."""
        if state is None:
            state = self.new_state(input_ids.shape[0])
        out = self.embedding(input_ids).float()  # the residual stream is fp32
        res = torch.zeros_like(out)  # the first layer adds a zero residual
        new_state = []
        for layer, st in zip(self.layers, state):
            out, res, st = layer(out, res, st)
            new_state.append(st)
        hidden = (out + res).float()
        if logits_at is not None:
            hidden = hidden.index_select(1, logits_at)
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps) \
            * self.norm_f
        return self.lm_head(hidden), new_state


class W4Table(nn.Module):
    """A weight-only 4-bit matrix W [rows, cols] with one scale per group of cols.
    A linear's (transposed) is held [cols, rows], blocked on axis 0, for DQ -> MatMul, in its
    scales' dtype. An embedding or head table (not transposed) is held [rows, cols], blocked on
    axis 1, with fp16 scales: the embedding op reads its rows and the head is DQ -> Gemm(transB=1)
    with fp16 activations, TensorRT's weight-only INT4 form, from the same initializers."""
    onnx_opset = qdq.INT4_OPSET  # what its dequantize_int4 exports to needs

    def __init__(self, packed: Tensor, scale: Tensor, transposed: bool = True):
        super().__init__()
        self.transposed = transposed
        values = int4.unpack(packed)  # [rows, cols]
        held, scales = (values.t(), scale.t()) if transposed else (values, scale.half())
        self.register_buffer("w", held.contiguous())
        self.register_buffer("s", scales.contiguous())

    def weight(self) -> Tensor:
        """W^T when transposed, else W; in the scales' dtype."""
        return qdq.dequantize_int4(self.w, self.s, 0 if self.transposed else 1)

    def rows(self) -> Tensor:
        return self.weight().t() if self.transposed else self.weight()


class FpTable(nn.Module):
    """An fp16 matrix W [rows, cols], held [rows, cols]: the graph holds it once in fp16 (the
    lm_head is the largest read of a decode step after the layers)."""
    transposed = False

    def __init__(self, weight: Tensor):
        super().__init__()
        self.register_buffer("w", weight.half())

    def weight(self) -> Tensor:
        return self.w

    def rows(self) -> Tensor:
        return self.w


class TableLinear(nn.Module):
    """x W^T (+ bias) for a table: the lm_head, or a weight-only 4-bit linear, in the table's
    dtype (fp16: an fp16 GEMM). A table held [out, in] is Gemm(transB=1), never
    Transpose(table) -> MatMul, which TensorRT folds into a second copy of the table."""

    def __init__(self, table: nn.Module, bias: Tensor | None = None):
        super().__init__()
        self.table = table
        self.register_buffer("bias", None if bias is None else bias.float())

    def forward(self, x: Tensor) -> Tensor:
        weight = self.table.weight()
        xw = x.to(weight.dtype)
        if self.table.transposed:
            y = xw @ weight
        else:
            y = qdq.linear_rows(xw, weight)
        y = y.to(x.dtype)
        return y if self.bias is None else y + self.bias.to(y.dtype)


class TableEmbedding(nn.Module):
    """The rows of a table at the ids, in its dtype; a 4-bit table through EdgeqEmbeddingW4,
    which reads only those rows (fp16 rounding of its fp32 rows is exact: q * s is one
    product)."""

    def __init__(self, table: nn.Module):
        super().__init__()
        self.table = table

    def forward(self, ids: Tensor) -> Tensor:
        table = self.table
        if isinstance(table, W4Table) and not table.transposed:
            group = table.w.shape[1] // table.s.shape[1]
            return ops.embedding_w4(ids, table.w, table.s, group).to(table.s.dtype)
        return F.embedding(ids, table.rows())


def w4_table(tensors: dict[str, Tensor], name: str, transposed: bool = True) -> W4Table | None:
    return W4Table(tensors[name + ".weight_packed"], tensors[name + ".weight_scale"], transposed) \
        if name + ".weight_packed" in tensors else None


class W4A16Layer(nn.Module):
    """A W4A16 layer of a mixed (W4AX) model: the fp16 Mamba block with its weight-only 4-bit
    linears, between int8 layers. It takes and gives their fp32 residual stream (a W4A16
    model's is fp16)."""

    def __init__(self, cfg: MambaConfig, tensors: dict[str, Tensor]):
        super().__init__()
        with torch.device("meta"):  # load_weight_only assigns every weight
            self.cfg, self.block = cfg, MambaBlock(cfg, "custom")
        load_weight_only(self.block, tensors)
        self.block.half()

    def forward(self, out: Tensor, res: Tensor, state):
        hidden = out + res
        y, state = self.block.mixer(self.block.norm(hidden.half()), state)
        return y.float(), hidden, state

    def new_state(self, batch: int) -> tuple[Tensor, Tensor]:
        """fp16 conv state, fp32 SSM state (as MambaLM's)."""
        return zero_state(self.cfg, batch, torch.float16)


def load_weight_only(module: nn.Module, tensors: dict[str, Tensor],
                     may_lack: set[str] = frozenset()):
    """The tensors' weights into `module` (a MambaLM or a MambaBlock, names as their state_dict,
    built on the meta device): the fp ones assigned, each linear held 4-bit (name.weight_packed)
    made a TableLinear; the embedding and lm_head tables are the caller's."""
    from ..errors import EdgeqError
    fp = {k: v.float() for k, v in tensors.items()
          if not k.endswith((".weight_packed", ".weight_scale"))}
    try:
        missing, unexpected = module.load_state_dict(fp, strict=False, assign=True)
    except RuntimeError:
        missing, unexpected = ["(shapes)"], []
    packed = [k[:-len(".weight_packed")] for k in tensors if k.endswith(".weight_packed")]
    if unexpected or set(missing) - {k + ".weight" for k in packed} - may_lack:
        raise EdgeqError("the quantized weights belong to another model than config.json "
                         "describes; quantize this model again")
    for linear in packed:
        if linear in ("backbone.embeddings", "lm_head"):
            continue
        parent, name = linear.rsplit(".", 1)
        setattr(module.get_submodule(parent), name,
                TableLinear(w4_table(tensors, linear), module.get_submodule(linear).bias))


def weight_only_model(cfg: MambaConfig, tensors: dict[str, Tensor], recipe: Recipe) -> MambaLM:
    with torch.device("meta"):  # no fp32 copy of the 4-bit linears (Mamba2-8B: 32 GB)
        model = MambaLM(cfg)
    load_weight_only(model, tensors, {"lm_head.weight"} if cfg.tie_embeddings else set())
    model.tie()
    emb = w4_table(tensors, "backbone.embeddings", transposed=False)
    if emb is not None:  # head-to-toe: tied models share the one 4-bit table
        model.backbone.embeddings = TableEmbedding(emb)
        model.lm_head = TableLinear(emb if cfg.tie_embeddings
                                    else w4_table(tensors, "lm_head", transposed=False))
    model.recipe = recipe
    return model.half().eval()  # A16: fp16 activations, weights and scales; SSM state fp32


def load_model(cfg: MambaConfig, tensors: dict[str, Tensor], scales: list[dict], recipe: Recipe):
    if recipe.weight_only:
        return weight_only_model(cfg, tensors, recipe)
    return QuantMambaLM(cfg, tensors, scales, recipe).eval()
