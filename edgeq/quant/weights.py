"""Weight quantization: symmetric int8 (per tensor or per output channel) and 4-bit with one
scale per group of input channels (GPTQ, or round-to-nearest without a Hessian), packed."""
from __future__ import annotations

import torch

from ..errors import EdgeqError
from ..ops import int4
from ..ops.reference import quantize as q8
from . import gptq


def int8(w: torch.Tensor, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 [out, in] and its scale (0-d per tensor, [out] per output channel)."""
    w = w.float()
    amax = w.abs().amax(dim=1) if per_channel else w.abs().max()
    scale = torch.clamp(amax, min=1e-8) / 127
    return q8(w / (scale[:, None] if per_channel else scale), 1.0), scale.float()


def int4_packed(w: torch.Tensor, hessian: gptq.Hessian | None, spec, name: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [out, in/2] (edgeq.ops.int4) and fp32 scales [out, in/group]: GPTQ on the
    input Hessian, or round to nearest without one (spec: the recipe's Weights)."""
    try:
        group = gptq.group_size_for(w.shape[1], spec.group_size)
    except ValueError as e:
        raise EdgeqError(f"{name}: {e}; use an 8-bit recipe for this model") from None
    if hessian is None:
        q, scale = gptq.quantize_rtn(w.float(), 4, group)
    else:
        q, scale = gptq.gptq(w.float(), hessian.matrix(), 4, group, spec.damp)
    return int4.pack(q), scale.float()
