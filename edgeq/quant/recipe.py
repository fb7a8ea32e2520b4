"""Quantization recipes are data: one JSON file each in edgeq/quant/recipes/."""
from __future__ import annotations

import copy
import json
from importlib import resources

from ..errors import EdgeqError

# the activations a Mamba-1 layer quantizes: in_proj input, its x and z halves, the conv output
# u (SSM input, x_proj input), x_proj's dt/B/C, dt_proj's output delta, and out_proj's input y
ACTIVATIONS = ("in", "x", "z", "u", "dt", "B", "C", "delta", "y")


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("recipes").iterdir()
                  if p.name.endswith(".json"))


def load(name: str, percentile: float | None = None, per_channel: bool = False) -> dict:
    """The recipe `name`, with the command line's overrides applied."""
    if name not in names():
        raise EdgeqError(f"unknown recipe {name!r}; choose one of: {', '.join(names())}")
    recipe = json.loads(resources.files(__package__).joinpath("recipes", f"{name}.json").read_text())
    recipe = copy.deepcopy(recipe)
    if percentile is not None:
        if not 0 < percentile <= 100:
            raise EdgeqError(f"--percentile {percentile}: must be in (0, 100]")
        recipe["activations"]["overrides"]["u"] = {"observer": "percentile", "percentile": percentile}
    if per_channel:
        recipe["weights"]["granularity"] = "per-channel"
    return recipe


def observer_of(recipe: dict, activation: str) -> dict:
    act = recipe["activations"]
    return act["overrides"].get(activation, {"observer": act["observer"]})
