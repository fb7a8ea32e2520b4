"""edgeq's Mamba-2 mixer on the edgeq ops (mamba_ssm's Mamba2 / transformers' Mamba2Mixer).

in_proj gives [z, xBC, dt]; the causal conv runs over xBC = [x, B, C]; the scan is EdgeqSSDScan
(per-head A, D, dt and dt bias; B and C per group; chunks of the checkpoint's chunk_size) with no
gate: the gate goes into the grouped RMSNorm, mamba_ssm's RMSNorm(y * silu(z)) over each group of
d_inner / ngroups channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MambaConfig
from .mixer import LayerState, OpsMixer


class GatedRMSNorm(nn.Module):
    def __init__(self, dim: int, groups: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.groups, self.eps = groups, eps

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        g = y.float() * F.silu(z.float())
        g = g.reshape(*g.shape[:-1], self.groups, -1)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * g.reshape(y.shape).to(y.dtype)


class Mamba2Mixer(OpsMixer):
    def __init__(self, cfg: MambaConfig, ops: str = "custom"):
        super().__init__()
        di, H = cfg.d_inner, cfg.nheads
        self.cfg, self.ops_name = cfg, ops
        self.in_proj = nn.Linear(cfg.d_model, di + cfg.conv_dim + H, bias=cfg.bias)
        self.conv1d = nn.Conv1d(cfg.conv_dim, cfg.conv_dim, cfg.d_conv, groups=cfg.conv_dim,
                                padding=cfg.d_conv - 1, bias=cfg.conv_bias)
        self.dt_bias = nn.Parameter(torch.zeros(H))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, H + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(H))
        self.norm = GatedRMSNorm(di, cfg.ngroups, cfg.norm_eps)
        self.out_proj = nn.Linear(di, cfg.d_model, bias=cfg.bias)

    def forward(self, h: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        cfg = self.cfg
        batch, L, _ = h.shape
        di, H, G, N = cfg.d_inner, cfg.nheads, cfg.ngroups, cfg.d_state
        z, xBC, dt = self.in_proj(h).split([di, cfg.conv_dim, H], dim=-1)
        xBC, conv_state = self.conv(xBC, state[0])
        x, B, C = xBC.split([di, G * N, G * N], dim=-1)
        y, ssm_state = self.ops.ssd_scan(x, dt, -torch.exp(self.A_log.float()),
                                         B.reshape(batch, L, G, N), C.reshape(batch, L, G, N),
                                         self.D.float(), self.dt_bias.float(), state[1], True,
                                         cfg.chunk_size)
        return self.out_proj(self.norm(y, z)), (conv_state, ssm_state)
