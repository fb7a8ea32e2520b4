"""edgeq's Mamba modules, built on the edgeq ops (the Mamba-2 mixer is in mamba2.py, what the
two mixers share in mixer.py).

Parameter names follow transformers' MambaForCausalLM, so -hf checkpoints load as they are.
States are explicit: forward(ids, state) -> (logits, new_state); a decode step is forward at
L = 1. `ops` selects the op implementation: the torch custom ops (inference, ONNX export) or the
plain-torch references (training, where autograd is needed).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import custom, qdq
from .config import MambaConfig
from .mamba2 import Mamba2Mixer
from .mixer import LayerState, OpsMixer


def zero_state(cfg: MambaConfig, batch: int, conv_dtype: torch.dtype,
               ssm_dtype: torch.dtype = torch.float32, device=None) -> LayerState:
    """A layer's zero state in the given dtypes: conv [b, W-1, conv_dim], SSM [b, d_inner, N]."""
    return (torch.zeros(batch, cfg.d_conv - 1, cfg.conv_dim, dtype=conv_dtype, device=device),
            torch.zeros(batch, cfg.d_inner, cfg.d_state, dtype=ssm_dtype, device=device))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class MambaMixer(OpsMixer):
    def __init__(self, cfg: MambaConfig, ops: str = "custom"):
        super().__init__()
        di, n = cfg.d_inner, cfg.d_state
        self.cfg = cfg
        self.ops_name = ops  # a name, not the module, so models copy and pickle
        self.in_proj = nn.Linear(cfg.d_model, 2 * di, bias=cfg.bias)
        self.conv1d = nn.Conv1d(di, di, cfg.d_conv, groups=di, padding=cfg.d_conv - 1,
                                bias=cfg.conv_bias)
        self.x_proj = nn.Linear(di, cfg.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(cfg.dt_rank, di, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, cfg.d_model, bias=cfg.bias)

    def forward(self, h: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        cfg = self.cfg
        batch, L, _ = h.shape
        x, z = self.in_proj(h).chunk(2, dim=-1)
        x, conv_state = self.conv(x, state[0])
        dt, B, C = self.x_proj(x).split([cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # bias goes into the scan as delta_bias
        B = B.reshape(batch, L, 1, cfg.d_state)
        C = C.reshape(batch, L, 1, cfg.d_state)
        A = -torch.exp(self.A_log.float())
        y, ssm_state = self.ops.selective_scan(x, delta, A, B, C, self.D.float(),
                                               self.dt_proj.bias.float(), state[1], z, True)
        return self.out_proj(y), (conv_state, ssm_state)


class MambaBlock(nn.Module):
    def __init__(self, cfg: MambaConfig, ops: str):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if cfg.arch == "mamba2":
            self.mixer = Mamba2Mixer(cfg, ops)
        else:
            self.mixer = MambaMixer(cfg, ops)

    def forward(self, h: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        out, state = self.mixer(self.norm(h), state)
        return h + out, state


class MambaBackbone(nn.Module):
    def __init__(self, cfg: MambaConfig, ops: str):
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(MambaBlock(cfg, ops) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)


class Head(nn.Linear):
    """lm_head. With the custom ops it is edgeq.ops.qdq.matmul_t, exported as Gemm(transB=1) on
    the [vocab, d] weight, which keeps a tied table one constant in TensorRT's engine
    (aten.linear of 3-D activations exports as Transpose(weight) -> MatMul, a second copy)."""

    def __init__(self, d: int, vocab: int, gemm: bool):
        super().__init__(d, vocab, bias=False)
        self.gemm = gemm

    def forward(self, x: Tensor) -> Tensor:
        return qdq.linear_rows(x, self.weight) if self.gemm else super().forward(x)


class MambaLM(nn.Module):
    def __init__(self, cfg: MambaConfig, ops: str = "custom"):
        super().__init__()
        self.cfg = cfg
        self.backbone = MambaBackbone(cfg, ops)
        self.lm_head = Head(cfg.d_model, cfg.vocab_size, gemm=ops == "custom")
        self.tie()

    def tie(self) -> None:
        """A tied lm_head shares the embedding's matrix; again after weights are assigned."""
        if self.cfg.tie_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    @property
    def exportable(self) -> bool:
        return self.backbone.layers[0].mixer.ops is custom

    def new_state(self, batch: int) -> list[LayerState]:
        return [self.layer_state(batch) for _ in range(self.cfg.n_layer)]

    def layer_state(self, batch: int) -> LayerState:
        """One layer's zero state: conv state in the model's dtype, SSM state fp32."""
        p = self.backbone.norm_f.weight
        return zero_state(self.cfg, batch, p.dtype, device=p.device)

    def forward(self, input_ids: Tensor, state: list[LayerState] | None = None,
                logits_at: Tensor | None = None) -> tuple[Tensor, list[LayerState]]:
        """Logits [batch, seq, vocab], or at the sequence positions logits_at only (generation
        needs the last: the final norm and lm_head then skip the rest of the prompt)."""
        if state is None:
            state = self.new_state(input_ids.shape[0])
        h = self.backbone.embeddings(input_ids)
        new_state = []
        for layer, s in zip(self.backbone.layers, state):
            h, s = layer(h, s)
            new_state.append(s)
        if logits_at is not None:
            h = h.index_select(1, logits_at)
        return self.lm_head(self.backbone.norm_f(h)), new_state
