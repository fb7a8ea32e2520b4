"""Quantization recipes are data: one JSON file each in edgeq/quant/recipes/, loaded into the
typed Recipe (unknown or missing fields refused by name)."""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources

from ..errors import EdgeqError

# the activations a layer quantizes, by the names of their scales. Mamba-1: in_proj input, its
# x and z halves, the conv output u (SSM input, x_proj input), x_proj's dt/B/C, dt_proj's
# output delta, out_proj's input y. Mamba-2: in_proj input, its z, xBC and dt parts, the conv
# outputs x, B and C, and y; xBC, x, B and C are observed per channel: the conv input gets one
# scale per part (x, B, C), its output x sort-and-cluster group scales and B, C one scale per
# state group.
class Act:
    """The activations' names: their scales' keys in quant.json."""
    IN, X, Z, U, DT, B, C, DELTA, Y, XBC = "in", "x", "z", "u", "dt", "B", "C", "delta", "y", "xBC"


ACTIVATIONS = {"mamba1": (Act.IN, Act.X, Act.Z, Act.U, Act.DT, Act.B, Act.C, Act.DELTA, Act.Y),
               "mamba2": (Act.IN, Act.Z, Act.XBC, Act.DT, Act.X, Act.B, Act.C, Act.Y)}
PER_CHANNEL = {"mamba1": (), "mamba2": (Act.XBC, Act.X, Act.B, Act.C)}


@dataclass(frozen=True)
class Observer:
    observer: str  # "absmax" or "percentile"
    percentile: float | None = None


@dataclass(frozen=True)
class Weights:
    granularity: str = "per-tensor"  # of the int8 weights: or "per-channel"
    w4: tuple[str, ...] = ()  # the linears held 4-bit
    method: str | None = None  # of the 4-bit weights: "gptq", else round to nearest
    group_size: int = 128
    damp: float = 0.01


@dataclass(frozen=True)
class Activations:
    bits: int  # 8, or 16: a weight-only recipe
    observer: str | None = None  # every activation's but the overrides'
    overrides: dict[str, Observer] = field(default_factory=dict)


@dataclass(frozen=True)
class Cluster:  # Quamba2's sort-and-cluster of Mamba-2's x: groups per state group
    heads: int
    dims: int


@dataclass(frozen=True)
class Search:  # mixed.search's settings
    population: int
    generations: int
    mutations: int
    crossovers: int
    seed: int


@dataclass(frozen=True)
class Mixed:  # W4AX: a share of the layers W4A16 (the recipe `a16`), the rest this recipe
    a16: str
    a16_fraction: float
    windows: int  # calibration windows the search's loss runs over
    search: Search


@dataclass(frozen=True)
class Recipe:
    name: str
    archs: tuple[str, ...]
    description: str
    weights: Weights
    activations: Activations
    hadamard_out_proj: bool = False
    hadamard_in_proj: bool | None = None  # None: the recipe has no residual Hadamard step
    per_state_group: bool = False
    cluster: Cluster | None = None
    mixed: Mixed | None = None
    h2t: bool = False  # embedding and lm_head 4-bit too

    @property
    def weight_only(self) -> bool:
        return self.activations.bits == 16

    @property
    def quantizes(self) -> bool:
        """False for fp16, the unquantized baseline."""
        return not self.weight_only or bool(self.weights.w4)

    def observer_of(self, activation: str) -> Observer:
        act = self.activations
        return act.overrides.get(activation, Observer(act.observer))

    def activations_of(self, cfg) -> dict[str, bool]:
        """Activation name -> observed per channel; none for weight-only recipes."""
        if self.weight_only:
            return {}
        return {a: a in PER_CHANNEL[cfg.arch] for a in ACTIVATIONS[cfg.arch]}


def from_dict(data, where: str, cls=Recipe):
    """A recipe (or one of its parts) from its JSON form; an unknown, missing or mistyped
    field is refused by its name."""
    if not isinstance(data, dict):
        raise EdgeqError(f"{where}: must be a JSON object, not {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - set(fields)):
        raise EdgeqError(f"{where}.{unknown[0]}: unknown recipe field; known: "
                         f"{', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _value(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise EdgeqError(f"{where}.{name}: missing; the recipe needs it")
    return cls(**values)


def _value(kind, value, where: str):
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType):  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return from_dict(value, where, kind)
    origin = typing.get_origin(kind) or kind
    number = origin is float and isinstance(value, int)
    if not isinstance(value, {tuple: list}.get(origin, origin)) and not number \
            or isinstance(value, bool) and origin is not bool:
        raise EdgeqError(f"{where}: {value!r} is not a {origin.__name__}")
    if origin is tuple:
        return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        return {k: _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return value


def to_dict(recipe) -> dict:
    """The recipe's JSON form (what from_dict reads; quant.json and bundle.json hold it)."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items() if x is not None}
        return list(v) if isinstance(v, tuple) else v
    return plain(dataclasses.asdict(recipe))


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("recipes").iterdir()
                  if p.name.endswith(".json"))


def load(name: str, percentile: float | None = None, per_channel: bool = False,
         h2t: bool = False, residual_hadamard: bool = False,
         a16_fraction: float | None = None) -> Recipe:
    """The recipe `name`, with the command line's overrides applied."""
    if name not in names():
        raise EdgeqError(f"unknown recipe {name!r}; choose one of: {', '.join(names())}")
    path = resources.files(__package__).joinpath("recipes", f"{name}.json")
    recipe = from_dict(json.loads(path.read_text()), f"recipes/{name}.json")
    if not recipe.quantizes:
        given = [o for o, on in (("--percentile", percentile is not None),
                                 ("--per-channel", per_channel), ("--h2t", h2t),
                                 ("--residual-hadamard", residual_hadamard),
                                 ("--a16-fraction", a16_fraction is not None)) if on]
        if given:
            raise EdgeqError(f"{', '.join(given)}: {name} quantizes nothing; use a quamba2 "
                             "recipe for them")
    if percentile is not None:
        if recipe.weight_only:
            raise EdgeqError(f"--percentile: recipe {name} quantizes no activations")
        if not 0 < percentile <= 100:
            raise EdgeqError(f"--percentile {percentile}: must be in (0, 100]")
        overrides = {**recipe.activations.overrides, Act.U: Observer("percentile", percentile)}
        recipe = dataclasses.replace(
            recipe, activations=dataclasses.replace(recipe.activations, overrides=overrides))
    if per_channel:
        recipe = dataclasses.replace(
            recipe, weights=dataclasses.replace(recipe.weights, granularity="per-channel"))
    if h2t:
        if not recipe.weights.w4:
            raise EdgeqError(f"--h2t: recipe {name} has no 4-bit weights; use a quamba2-w4 recipe")
        recipe = dataclasses.replace(recipe, h2t=True)
    if residual_hadamard:
        if recipe.hadamard_in_proj is None:
            raise EdgeqError(f"--residual-hadamard: recipe {name} has no such step; use a "
                             "quamba2 recipe")
        recipe = dataclasses.replace(recipe, hadamard_in_proj=True)
    if a16_fraction is not None:
        if recipe.mixed is None:
            raise EdgeqError(f"--a16-fraction: recipe {name} runs every layer alike; use "
                             "quamba2-w4ax")
        if not 0 <= a16_fraction <= 1:
            raise EdgeqError(f"--a16-fraction {a16_fraction}: must be in [0, 1]")
        recipe = dataclasses.replace(
            recipe, mixed=dataclasses.replace(recipe.mixed, a16_fraction=a16_fraction))
    return recipe


def for_arch(arch: str) -> list[str]:
    """The recipes that quantize `arch` models."""
    return [n for n in names() if (r := load(n)).quantizes and arch in r.archs]


def check_supported(cfg, recipe: Recipe) -> None:
    from ..ops import hadamard
    if cfg.arch not in recipe.archs:
        raise EdgeqError(f"recipe {recipe.name} does not quantize {cfg.arch} models; use "
                         f"one of: {', '.join(for_arch(cfg.arch))}")
    if recipe.hadamard_out_proj and not hadamard.supported(cfg.d_inner):
        raise EdgeqError(f"d_inner {cfg.d_inner} has no Hadamard transform (needs K * 2^m, "
                         "K in 1, 12, 20, 28); use a recipe without one, e.g. naive-w8a8")
