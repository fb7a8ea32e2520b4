"""Calibration statistics (the windows come from calib_data): run the fp model over the
calibration windows and record, per layer, the range of each activation the recipe quantizes
(recipe.activations); for GPTQ, the Hessian of each 4-bit linear's input, layer after layer
(Hessians). Mamba-2 recipes with sort-and-cluster first reorder the x channels."""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..models.mamba import MambaLM
from ..ops import hadamard
from . import cluster, observers, recipe as recipes
from .gptq import Hessian
from .recipe import Act, Recipe

Progress = Callable[[int], None] | None


class Hessians:
    """Per layer, the input Hessians of the recipe's GPTQ linears (linear name -> Hessian),
    layer-sequential as GPTQ and Quamba2 compute them: layer i's come from its inputs after the
    layers before it ran with their 4-bit weights (activations fp), so GPTQ in layer i also
    answers the rounding of the layers before. The order is explicit: hessians_for(i) for layer
    i, then commit(i, its 4-bit weights) before hessians_for(i + 1) (quantize_model does).
    The next layer's inputs are held for every calibration window (windows x L x d_model fp32:
    4.3 GB for 512 windows of 512 tokens of Mamba2-8B); each layer runs twice, for its Hessians
    and then quantized."""

    def __init__(self, model: MambaLM, windows: torch.Tensor, recipe: Recipe, batch: int):
        cfg = model.cfg
        self.model, self.windows, self.recipe, self.batch = model, windows, recipe, batch
        self.names = recipe.weights.w4 if recipe.weights.method == "gptq" else ()
        self.width = {"in_proj": cfg.d_model, "out_proj": cfg.d_inner}
        self.h: torch.Tensor | None = None  # the inputs of layer self.at, every window
        self.at = 0
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.last: tuple[int, dict[str, Hessian]] | None = None
        self._head: Hessian | None = None

    def hessians_for(self, i: int) -> dict[str, Hessian]:
        """Layer i's input Hessians (linear name -> Hessian); the layers before it committed."""
        if not self.names:
            return {}
        if self.last is None or self.last[0] != i:
            self._advance(i)
            held = {n: Hessian(self.width[n]) for n in self.names}

            def record(name, x):
                observers.check_finite(x, f"layer {i} {name}")
                linear = {Act.IN: "in_proj", Act.Y: "out_proj"}[name]
                if linear in held:
                    held[linear].add(x)
            handles = _taps_linears(self.model, i, record, self.recipe.hadamard_out_proj)
            try:
                self._run_layer(i, keep=False)
            finally:
                for h in handles:
                    h.remove()
            self.last = (i, held)
        return self.last[1]

    def commit(self, i: int, weights: dict[str, torch.Tensor]) -> None:
        """Layer i's 4-bit weights as fp values in the model's basis (linear name -> [out, in])."""
        if self.names:
            self.weights[i] = weights

    def release(self) -> None:
        """Drop the held layer inputs (the largest allocation of calibration) once quantization
        has read every layer's Hessians (head() keeps its own)."""
        self.h, self.last = None, None
        self.weights.clear()

    def head(self) -> Hessian | None:
        """lm_head's input Hessian, after every layer ran quantized (GPTQ recipes with h2t)."""
        if not (self.names and self.recipe.h2t):
            return None
        if self._head is None:
            self._advance(self.model.cfg.n_layer)
            self._head = Hessian(self.model.cfg.d_model)
            with torch.no_grad():
                for chunk in self.h.split(self.batch):
                    self._head.add(self.model.backbone.norm_f(chunk))
        return self._head

    def _advance(self, i: int) -> None:
        """Move the held inputs to layer i's, through the quantized layers before it."""
        if i < self.at:
            raise ValueError(f"Hessians: layer {i} read after layer {self.at}; read them in order")
        if self.h is None:
            with torch.no_grad():
                self.h = self.model.backbone.embeddings(self.windows)
        while self.at < i:
            if self.at not in self.weights:
                raise ValueError(f"Hessians: layer {self.at}'s 4-bit weights were not committed")
            with _swapped(self.model.backbone.layers[self.at].mixer, self.weights.pop(self.at)):
                self._run_layer(self.at, keep=True)
            self.at += 1

    def _run_layer(self, i: int, keep: bool) -> None:
        """Layer i over the held inputs, from zero states; keep: its outputs replace them."""
        block = self.model.backbone.layers[i]
        with torch.no_grad():
            for start in range(0, len(self.h), self.batch):
                x = self.h[start:start + self.batch]
                out = block(x, self.model.layer_state(len(x)))[0]
                if keep:
                    self.h[start:start + self.batch] = out


@contextlib.contextmanager
def _swapped(mixer, weights: dict[str, torch.Tensor]):
    """The mixer's linears with these weights for a while."""
    old = {n: getattr(mixer, n).weight.data for n in weights}
    try:
        for n, w in weights.items():
            getattr(mixer, n).weight.data = w.to(old[n].dtype)
        yield
    finally:
        for n, w in old.items():
            getattr(mixer, n).weight.data = w


@dataclass
class Calibration:
    ranges: list[dict[str, float | list[float]]]  # per layer: absmax (or percentile) per name
    hessians: Hessians  # per layer: linear name -> its input's Hessian; and lm_head's
    groups: list[torch.Tensor] | None = None  # Mamba-2 x scale group per channel


def _taps_linears(model: MambaLM, i: int, record, had: bool):
    """The inputs of in_proj ("in") and out_proj ("y", Hadamard-rotated where the recipe folds
    the Hadamard into out_proj): what the GPTQ Hessians read, and two of the ranges."""
    m = model.backbone.layers[i].mixer
    return [m.in_proj.register_forward_pre_hook(lambda _, inp: record(Act.IN, inp[0])),
            m.out_proj.register_forward_pre_hook(
                lambda _, inp: record(Act.Y, hadamard.transform(inp[0]) if had else inp[0]))]


def _taps_mamba1(model: MambaLM, i: int, record, had: bool):
    cfg, block = model.cfg, model.backbone.layers[i]
    m = block.mixer

    def on_in_proj(_, inp, out):
        x, z = out.chunk(2, dim=-1)
        record(Act.X, x)
        record(Act.Z, z)

    def on_x_proj(_, inp, out):
        record(Act.U, inp[0])
        dt, B, C = out.split([cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        record(Act.DT, dt)
        record(Act.B, B)
        record(Act.C, C)
        record(Act.DELTA, F.linear(dt, m.dt_proj.weight))  # the bias goes into the scan

    return _taps_linears(model, i, record, had) + [m.in_proj.register_forward_hook(on_in_proj),
                                                   m.x_proj.register_forward_hook(on_x_proj)]


def _taps_mamba2(model: MambaLM, i: int, record, had: bool):
    cfg, m = model.cfg, model.backbone.layers[i].mixer
    di, GN = cfg.d_inner, cfg.ngroups * cfg.d_state

    def on_in_proj(_, inp, out):
        z, xBC, dt = out.split([di, cfg.conv_dim, cfg.nheads], dim=-1)
        record(Act.Z, z)
        record(Act.XBC, xBC)
        record(Act.DT, dt)
        # the conv output, recomputed: calibration windows start from a zero state
        state = torch.zeros(xBC.shape[0], cfg.d_conv - 1, cfg.conv_dim, dtype=xBC.dtype)
        x, B, C = m.conv(xBC, state)[0].split([di, GN, GN], dim=-1)
        record(Act.X, x)
        record(Act.B, B)
        record(Act.C, C)

    return _taps_linears(model, i, record, had) + [m.in_proj.register_forward_hook(on_in_proj)]


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


def calibrate(model: MambaLM, windows: torch.Tensor, recipe: Recipe, batch: int = 8,
              progress: Progress = None) -> Calibration:
    """Activation ranges of every layer; the GPTQ Hessians follow, a layer at a time."""
    cfg = model.cfg
    recipes.check_supported(cfg, recipe)
    quantized = recipe.activations_of(cfg)
    had = recipe.hadamard_out_proj
    obs = [{} for _ in range(cfg.n_layer)]

    def taps(i):
        def record(name, x):
            observers.check_finite(x, f"layer {i} {name}")
            if name in quantized:
                if name not in obs[i]:
                    obs[i][name] = observers.make(recipe.observer_of(name),
                                                  per_channel=quantized[name])
                obs[i][name].update(x)
        make = _taps_mamba2 if cfg.arch == "mamba2" else _taps_mamba1
        return make(model, i, record, had)

    if quantized:  # weight-only recipes have no ranges: only the Hessians read the windows
        _run(model, windows, batch, progress, taps)
    ranges = [{a: o.value for a, o in layer.items()} for layer in obs]
    return Calibration(ranges, Hessians(model, windows, recipe, batch))


def _clusters(model: MambaLM, recipe: Recipe) -> bool:
    return model.cfg.arch == "mamba2" and recipe.cluster is not None


def passes(model: MambaLM, recipe: Recipe) -> int:
    """How many times calibration runs over the windows with progress: once for the ranges
    (none for weight-only recipes), once more for sort-and-cluster. (GPTQ's layer-at-a-time
    runs are not counted.)"""
    return bool(recipe.activations_of(model.cfg)) + _clusters(model, recipe)


def cluster_x(model: MambaLM, windows: torch.Tensor, recipe: Recipe, batch: int = 8,
              progress: Progress = None) -> tuple[MambaLM, list[torch.Tensor] | None]:
    """Quamba2's sort-and-cluster: a copy of the model with each layer's x channels reordered
    (heads clustered inside their state group, channels sorted inside their head), and per layer
    the scale group of every reordered channel. Without clustering: the model, no groups."""
    cfg = model.cfg
    if not _clusters(model, recipe):
        return model, None
    amax = [observers.AbsMax(per_channel=True) for _ in range(cfg.n_layer)]

    def taps(i):
        def record(name, x):
            if name == Act.X:
                amax[i].update(x)
        return _taps_mamba2(model, i, record, False)

    _run(model, windows, batch, progress, taps)
    model = copy.deepcopy(model)
    groups = []
    for layer, a in zip(model.backbone.layers, amax):
        perm, group = cluster.sort_and_cluster(torch.tensor(a.value), cfg.nheads, cfg.ngroups,
                                               recipe.cluster.heads, recipe.cluster.dims)
        cluster.reorder_mamba2(layer.mixer, perm)
        groups.append(group)
    return model, groups
