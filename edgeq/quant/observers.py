"""Activation observers: deterministic summaries of |x| over the calibration set."""
from __future__ import annotations

import math

import torch

from ..errors import EdgeqError


class AbsMax:
    def __init__(self):
        self.value = 0.0

    def update(self, x: torch.Tensor) -> None:
        self.value = max(self.value, x.abs().max().item())


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


def make(spec: dict):
    if spec["observer"] == "absmax":
        return AbsMax()
    if spec["observer"] == "percentile":
        return Percentile(spec["percentile"])
    raise EdgeqError(f"unknown observer {spec['observer']!r} in the recipe")


def check_finite(x: torch.Tensor, where: str) -> None:
    if not torch.isfinite(x).all():
        raise EdgeqError(f"calibration produced NaN/inf activations at {where}; the model's "
                         "weights or the calibration tokens are broken")
