"""Activation observers: deterministic summaries of |x| over the calibration set."""
from __future__ import annotations

import math

import torch

from ..errors import EdgeqError


class AbsMax:
    """max |x| over everything, or per channel (the last dimension) as a list."""

    def __init__(self, per_channel: bool = False):
        self.per_channel = per_channel
        self.amax: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        a = x.detach().abs().float().reshape(-1, x.shape[-1]).amax(0)
        a = a if self.per_channel else a.max()
        self.amax = a if self.amax is None else torch.maximum(self.amax, a)

    @property
    def value(self) -> float | list[float]:
        return self.amax.tolist()


class Percentile:
    """Mean over calibration samples of each sample's p-th percentile of |x| (per-sample
    statistics keep memory flat and the result independent of batching)."""

    def __init__(self, percentile: float):
        self.p = percentile
        self.values: list[float] = []

    def update(self, x: torch.Tensor) -> None:
        for sample in x:
            flat = sample.abs().flatten().float()
            k = min(flat.numel(), max(1, math.ceil(self.p / 100 * flat.numel())))
            self.values.append(torch.kthvalue(flat, k).values.item())

    @property
    def value(self) -> float:
        return sum(self.values) / len(self.values)


def make(spec, per_channel: bool = False):
    """The observer a recipe's Observer names."""
    if spec.observer == "absmax":
        return AbsMax(per_channel)
    if per_channel:
        raise EdgeqError(f"observer {spec.observer!r} has no per-channel form; use absmax")
    if spec.observer == "percentile":
        return Percentile(spec.percentile)
    raise EdgeqError(f"unknown observer {spec.observer!r} in the recipe")


def check_finite(x: torch.Tensor, where: str) -> None:
    if not torch.isfinite(x).all():
        raise EdgeqError(f"calibration produced NaN/inf activations at {where}; the model's "
                         "weights or the calibration tokens are broken")
