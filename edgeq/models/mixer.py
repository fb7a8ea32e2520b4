"""What the Mamba-1 and Mamba-2 mixers share: a layer's state, the op implementations they run
on, the causal conv."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops import custom, reference

OPS = {"custom": custom, "reference": reference}

LayerState = tuple[Tensor, Tensor]  # conv [b, W-1, conv_dim] (activation dtype), ssm [b, d_inner, N] fp32


class OpsMixer(nn.Module):
    """The base of both mixers: the edgeq ops by name, the causal conv."""

    @property
    def ops(self):
        return OPS[self.ops_name]

    def conv(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        bias = self.conv1d.bias if self.conv1d.bias is not None else \
            torch.zeros(x.shape[-1], dtype=x.dtype, device=x.device)
        return self.ops.causal_conv1d(x, self.conv1d.weight[:, 0, :], bias, state, 1)
