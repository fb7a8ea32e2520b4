"""Quantization recipes are data: one JSON file each in edgeq/quant/recipes/."""
from __future__ import annotations

import copy
import json
from importlib import resources

from ..errors import EdgeqError

# the activations a layer quantizes. Mamba-1: in_proj input, its x and z halves, the conv output
# u (SSM input, x_proj input), x_proj's dt/B/C, dt_proj's output delta, out_proj's input y.
# Mamba-2: in_proj input, its z, xBC and dt parts, the conv outputs x, B and C, and y; xBC, x,
# B and C are observed per channel: the conv input gets one scale per part (x, B, C), its output
# x sort-and-cluster group scales and B, C one scale per state group.
ACTIVATIONS = {"mamba1": ("in", "x", "z", "u", "dt", "B", "C", "delta", "y"),
               "mamba2": ("in", "z", "xBC", "dt", "x", "B", "C", "y")}
PER_CHANNEL = {"mamba1": (), "mamba2": ("xBC", "x", "B", "C")}


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("recipes").iterdir()
                  if p.name.endswith(".json"))


def load(name: str, percentile: float | None = None, per_channel: bool = False,
         h2t: bool = False, residual_hadamard: bool = False,
         a16_fraction: float | None = None) -> dict:
    """The recipe `name`, with the command line's overrides applied."""
    if name not in names():
        raise EdgeqError(f"unknown recipe {name!r}; choose one of: {', '.join(names())}")
    recipe = json.loads(resources.files(__package__).joinpath("recipes", f"{name}.json").read_text())
    recipe = copy.deepcopy(recipe)
    if percentile is not None:
        if weight_only(recipe):
            raise EdgeqError(f"--percentile: recipe {name} quantizes no activations")
        if not 0 < percentile <= 100:
            raise EdgeqError(f"--percentile {percentile}: must be in (0, 100]")
        recipe["activations"]["overrides"]["u"] = {"observer": "percentile", "percentile": percentile}
    if per_channel:
        recipe["weights"]["granularity"] = "per-channel"
    if h2t:
        if not recipe["weights"].get("w4"):
            raise EdgeqError(f"--h2t: recipe {name} has no 4-bit weights; use a quamba2-w4 recipe")
        recipe["h2t"] = True
    if residual_hadamard:
        if "hadamard_in_proj" not in recipe:
            raise EdgeqError(f"--residual-hadamard: recipe {name} has no such step; use a "
                             "quamba2 recipe")
        recipe["hadamard_in_proj"] = True
    if a16_fraction is not None:
        if "mixed" not in recipe:
            raise EdgeqError(f"--a16-fraction: recipe {name} runs every layer alike; use "
                             "quamba2-w4ax")
        if not 0 <= a16_fraction <= 1:
            raise EdgeqError(f"--a16-fraction {a16_fraction}: must be in [0, 1]")
        recipe["mixed"]["a16_fraction"] = a16_fraction
    return recipe


def check_fp16(h2t: bool = False, residual_hadamard: bool = False,
               a16_fraction: float | None = None) -> None:
    """fp16 (no recipe: the unquantized baseline) takes none of the quantizing options."""
    given = [o for o, on in (("--h2t", h2t), ("--residual-hadamard", residual_hadamard),
                             ("--a16-fraction", a16_fraction is not None)) if on]
    if given:
        raise EdgeqError(f"{', '.join(given)}: fp16 quantizes nothing; use a quamba2 recipe "
                         "for them")


def observer_of(recipe: dict, activation: str) -> dict:
    act = recipe["activations"]
    return act["overrides"].get(activation, {"observer": act["observer"]})


def activations(cfg, recipe: dict) -> dict[str, bool]:
    """Activation name -> observed per channel; none for weight-only recipes."""
    if weight_only(recipe):
        return {}
    return {a: a in PER_CHANNEL[cfg.arch] for a in ACTIVATIONS[cfg.arch]}


def w4_linears(recipe: dict) -> tuple[str, ...]:
    return tuple(recipe["weights"].get("w4", ()))


def weight_only(recipe: dict) -> bool:
    return recipe["activations"]["bits"] == 16


def for_arch(arch: str) -> list[str]:
    """The recipes that quantize `arch` models."""
    return [n for n in names() if arch in load(n)["archs"]]


def check_supported(cfg, recipe: dict) -> None:
    from ..ops import hadamard
    if cfg.arch not in recipe["archs"]:
        raise EdgeqError(f"recipe {recipe['name']} does not quantize {cfg.arch} models; use "
                         f"one of: {', '.join(for_arch(cfg.arch))}")
    if recipe["hadamard_out_proj"] and not hadamard.supported(cfg.d_inner):
        raise EdgeqError(f"d_inner {cfg.d_inner} has no Hadamard transform (needs K * 2^m, "
                         "K in 1, 12, 20, 28); use a recipe without one, e.g. naive-w8a8")
