"""The W8A8 Mamba-1 model: int8 weights and activations on the edgeq int8 ops. Its torch forward
is the fake-quant model used for accuracy (exactly the ops' spec), and it exports to the int8
ONNX graph. Same interface as MambaLM: forward(ids, state) -> (logits, state)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.config import MambaConfig
from ..ops import custom as ops
from ..ops import qdq

# int8 weights of a layer, stored [out, in] (conv: [C, W]) with their scales
QUANT_WEIGHTS = ("in_proj", "conv1d", "x_proj", "dt_proj", "out_proj")


class QuantLayer(nn.Module):
    def __init__(self, cfg: MambaConfig, t: dict[str, Tensor], scales: dict[str, float],
                 hadamard: bool):
        super().__init__()
        self.cfg, self.s, self.hadamard = cfg, dict(scales), hadamard
        for name in ("in_proj", "x_proj", "dt_proj", "out_proj"):  # int8 linears, stored [in, out]
            self.register_buffer(f"{name}_w", t[f"{name}.weight"].t().contiguous())
            self.register_buffer(f"{name}_s", t[f"{name}.weight_scale"].float())
        self.register_buffer("conv_w", t["conv1d.weight"])
        self.s["conv_w"] = float(t["conv1d.weight_scale"])
        self.register_buffer("conv_b", t["conv1d.bias"].float())
        self.register_buffer("norm_w", t["norm.weight"].float())
        self.register_buffer("dt_b", t["dt_proj.bias"].float())
        self.register_buffer("A", -torch.exp(t["A_log"].float()))
        self.register_buffer("D", t["D"].float())
        for name in ("in_proj", "out_proj"):
            if f"{name}.bias" in t:
                self.register_buffer(f"{name}_b", t[f"{name}.bias"].float())

    def forward(self, out: Tensor, res: Tensor, state):
        cfg, s = self.cfg, self.s
        batch, L, _ = out.shape
        xq, res = ops.add_rmsnorm_int8(out, res, self.norm_w, cfg.norm_eps, s["in"])
        xz = qdq.qlinear(xq, s["in"], self.in_proj_w, self.in_proj_s)
        if hasattr(self, "in_proj_b"):
            xz = xz + self.in_proj_b
        x, z = xz.chunk(2, dim=-1)
        uq, conv_state = ops.causal_conv1d_int8(qdq.quantize(x, s["x"]), self.conv_w, self.conv_b,
                                                state[0], [s["x"]], [s["conv_w"]], [s["u"]], 1)
        xdbl = qdq.qlinear(uq, s["u"], self.x_proj_w, self.x_proj_s)
        dt, B, C = xdbl.split([cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        delta = qdq.qlinear(qdq.quantize(dt, s["dt"]), s["dt"], self.dt_proj_w, self.dt_proj_s)
        y, ssm_state = ops.selective_scan_int8(
            uq, qdq.quantize(delta, s["delta"]), self.A,
            qdq.quantize(B, s["B"]).reshape(batch, L, 1, cfg.d_state),
            qdq.quantize(C, s["C"]).reshape(batch, L, 1, cfg.d_state), self.D, self.dt_b,
            state[1], qdq.quantize(z, s["z"]), s["u"], s["delta"], s["B"], s["C"], s["z"], True)
        yq = ops.hadamard_int8(y, s["y"]) if self.hadamard else qdq.quantize(y, s["y"])
        out = qdq.qlinear(yq, s["y"], self.out_proj_w, self.out_proj_s)
        if hasattr(self, "out_proj_b"):
            out = out + self.out_proj_b
        return out, res, (conv_state, ssm_state)


class QuantMambaLM(nn.Module):
    exportable = True

    def __init__(self, cfg: MambaConfig, tensors: dict[str, Tensor], scales: list[dict],
                 recipe: dict):
        super().__init__()
        self.cfg, self.recipe = cfg, recipe
        hadamard = recipe["hadamard_out_proj"]
        self.layers = nn.ModuleList(
            QuantLayer(cfg, {k.split(".", 2)[2]: v for k, v in tensors.items()
                             if k.startswith(f"layers.{i}.")}, scales[i], hadamard)
            for i in range(cfg.n_layer))
        # fp16 parts (embedding, final norm, lm_head) are held as fp16-rounded fp32 on the CPU
        self.register_buffer("embedding", tensors["embedding.weight"].float())
        self.register_buffer("norm_f", tensors["norm_f.weight"].float())
        self.register_buffer("lm_head", tensors.get("lm_head.weight", tensors["embedding.weight"]).float())

    def new_state(self, batch: int):
        c = self.cfg
        return [(torch.zeros(batch, c.d_conv - 1, c.d_inner, dtype=torch.int8),
                 torch.zeros(batch, c.d_inner, c.d_state)) for _ in range(c.n_layer)]

    def forward(self, input_ids: Tensor, state=None):
        if state is None:
            state = self.new_state(input_ids.shape[0])
        out = F.embedding(input_ids, self.embedding)
        res = torch.zeros_like(out)  # the first layer adds a zero residual
        new_state = []
        for layer, st in zip(self.layers, state):
            out, res, st = layer(out, res, st)
            new_state.append(st)
        h = (out + res).float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps) * self.norm_f
        return h @ self.lm_head.t(), new_state
