"""Calibration: run the fp model over calibration windows and record, per layer, the range of
each activation the recipe quantizes (recipe.activations) and, for GPTQ, the Hessian of each
4-bit linear's input. Mamba-2 recipes with sort-and-cluster first reorder the x channels."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..models.mamba import MambaLM
from ..ops import hadamard
from . import cluster, observers, recipe as recipes
from .gptq import Hessian

Progress = Callable[[int], None] | None


# GPTQ Hessians held at once (fp64 d_model^2 + d_inner^2 per layer: 0.7 GB for Mamba2-8B):
# beyond this, calibration passes over the windows again for the next chunk of layers
HESSIAN_BUDGET = 8 << 30


class Hessians:
    """Per layer, the input Hessians of the recipe's GPTQ linears (linear name -> [K, K]),
    computed a chunk of layers per calibration pass so at most HESSIAN_BUDGET bytes are held;
    read them in layer order (quantize_model does)."""

    def __init__(self, model: MambaLM, windows: torch.Tensor, recipe: dict, batch: int):
        cfg = model.cfg
        self.model, self.windows, self.recipe, self.batch = model, windows, recipe, batch
        self.names = recipes.w4_linears(recipe) if recipe["weights"].get("method") == "gptq" else ()
        self.width = {"in_proj": cfg.d_model, "out_proj": cfg.d_inner}
        per_layer = sum(8 * self.width[n] ** 2 for n in self.names)
        self.chunk = max(1, HESSIAN_BUDGET // per_layer) if per_layer else cfg.n_layer
        self.held: dict[int, dict[str, Hessian]] = {}

    def chunk_of(self, i: int) -> range:
        start = i - i % self.chunk
        return range(start, min(start + self.chunk, self.model.cfg.n_layer))

    def new(self, layers: range) -> None:
        self.held = {i: {n: Hessian(self.width[n]) for n in self.names} for i in layers}

    def __getitem__(self, i: int) -> dict[str, Hessian]:
        if i not in self.held:
            self.new(self.chunk_of(i))
            calibrate(self.model, self.windows, self.recipe, self.batch, hessians=self)
        return self.held[i]


@dataclass
class Calibration:
    ranges: list[dict[str, float | list[float]]]  # per layer: absmax (or percentile) per name
    hessians: Hessians  # per layer: linear name -> its input's Hessian
    groups: list[torch.Tensor] | None = None  # Mamba-2 x scale group per channel
    head: Hessian | None = None  # lm_head's input Hessian (GPTQ recipes with h2t)


def _taps_mamba1(model: MambaLM, i: int, record, had: bool):
    cfg, block = model.cfg, model.backbone.layers[i]
    m = block.mixer

    def on_in_proj(_, inp, out):
        record("in", inp[0])
        x, z = out.chunk(2, dim=-1)
        record("x", x)
        record("z", z)

    def on_x_proj(_, inp, out):
        record("u", inp[0])
        dt, B, C = out.split([cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        record("dt", dt)
        record("B", B)
        record("C", C)
        record("delta", F.linear(dt, m.dt_proj.weight))  # the bias goes into the scan

    def on_out_proj(_, inp, __):
        record("y", hadamard.transform(inp[0]) if had else inp[0])

    return [m.in_proj.register_forward_hook(on_in_proj),
            m.x_proj.register_forward_hook(on_x_proj),
            m.out_proj.register_forward_hook(on_out_proj)]


def _taps_mamba2(model: MambaLM, i: int, record, had: bool):
    cfg, m = model.cfg, model.backbone.layers[i].mixer
    di, GN = cfg.d_inner, cfg.ngroups * cfg.d_state

    def on_in_proj(_, inp, out):
        record("in", inp[0])
        z, xBC, dt = out.split([di, cfg.conv_dim, cfg.nheads], dim=-1)
        record("z", z)
        record("xBC", xBC)
        record("dt", dt)
        # the conv output, recomputed: calibration windows start from a zero state
        state = torch.zeros(xBC.shape[0], cfg.d_conv - 1, cfg.conv_dim, dtype=xBC.dtype)
        x, B, C = m.conv(xBC, state)[0].split([di, GN, GN], dim=-1)
        record("x", x)
        record("B", B)
        record("C", C)

    def on_out_proj(_, inp, __):
        record("y", hadamard.transform(inp[0]) if had else inp[0])

    return [m.in_proj.register_forward_hook(on_in_proj),
            m.out_proj.register_forward_hook(on_out_proj)]


def _run(model: MambaLM, windows: torch.Tensor, batch: int, progress: Progress, taps) -> None:
    handles = [h for i in range(model.cfg.n_layer) for h in taps(i)]
    try:
        with torch.no_grad():
            for start in range(0, len(windows), batch):
                model(windows[start:start + batch])
                if progress:
                    progress(min(batch, len(windows) - start))
    finally:
        for h in handles:
            h.remove()


def calibrate(model: MambaLM, windows: torch.Tensor, recipe: dict, batch: int = 8,
              progress: Progress = None, hessians: Hessians | None = None) -> Calibration:
    """Activation ranges of every layer and the first chunk of GPTQ Hessians; given
    `hessians`, only the Hessians of the layers it holds (a later chunk's pass)."""
    cfg = model.cfg
    recipes.check_supported(cfg, recipe)
    only_hessians = hessians is not None
    if hessians is None:
        hessians = Hessians(model, windows, recipe, batch)
        hessians.new(hessians.chunk_of(0))
    quantized = {} if only_hessians else recipes.activations(cfg, recipe)
    had = recipe["hadamard_out_proj"]
    obs = [{} for _ in range(cfg.n_layer)]
    hess = hessians.held

    def taps(i):
        def record(name, x):
            observers.check_finite(x, f"layer {i} {name}")
            if name == "in" and "in_proj" in hess.get(i, {}):
                hess[i]["in_proj"].add(x)
            if name == "y" and "out_proj" in hess.get(i, {}):
                hess[i]["out_proj"].add(x)
            if name in quantized:
                if name not in obs[i]:
                    obs[i][name] = observers.make(recipes.observer_of(recipe, name),
                                                  per_channel=quantized[name])
                obs[i][name].update(x)
        make = _taps_mamba2 if cfg.arch == "mamba2" else _taps_mamba1
        return make(model, i, record, had)

    head = None
    if not only_hessians and recipe.get("h2t") and hessians.names:
        head = Hessian(cfg.d_model)
        handle = model.lm_head.register_forward_hook(lambda _, inp, __: head.add(inp[0]))
    try:
        _run(model, windows, batch, progress, taps)
    finally:
        if head is not None:
            handle.remove()
    ranges = [{a: o.value for a, o in layer.items()} for layer in obs]
    return Calibration(ranges, hessians, head=head)


def passes(model: MambaLM, recipe: dict) -> int:
    """How many times calibration runs over the windows with progress: sort-and-cluster needs
    one more. (Later Hessian chunks, for models over HESSIAN_BUDGET, add silent passes.)"""
    return 2 if model.cfg.arch == "mamba2" and recipe.get("cluster") else 1


def cluster_x(model: MambaLM, windows: torch.Tensor, recipe: dict, batch: int = 8,
              progress: Progress = None) -> tuple[MambaLM, list[torch.Tensor] | None]:
    """Quamba2's sort-and-cluster: a copy of the model with each layer's x channels reordered
    (heads clustered inside their state group, channels sorted inside their head), and per layer
    the scale group of every reordered channel. Without clustering: the model, no groups."""
    cfg = model.cfg
    if passes(model, recipe) == 1:
        return model, None
    amax = [observers.AbsMax(per_channel=True) for _ in range(cfg.n_layer)]

    def taps(i):
        def record(name, x):
            if name == "x":
                amax[i].update(x)
        return _taps_mamba2(model, i, record, False)

    _run(model, windows, batch, progress, taps)
    model = copy.deepcopy(model)
    groups = []
    for layer, a in zip(model.backbone.layers, amax):
        perm, group = cluster.sort_and_cluster(torch.tensor(a.value), cfg.nheads, cfg.ngroups,
                                               recipe["cluster"]["heads"], recipe["cluster"]["dims"])
        cluster.reorder_mamba2(layer.mixer, perm)
        groups.append(group)
    return model, groups
