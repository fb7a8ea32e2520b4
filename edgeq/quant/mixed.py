"""Quamba2's W4AX: each layer W4A8 or W4A16, the W4A16 ones (a fixed count: the latency
budget) chosen by an evolutionary search on the calibration windows' loss. Quamba2 searched
its Mamba2-8B this way (population 40, 5 generations, 10 mutations and 10 crossovers each) and
kept 14 of 56 layers W4A16."""
from __future__ import annotations

import dataclasses
import math
import random
from itertools import combinations
from typing import Callable

import torch
import torch.nn.functional as F

from ..models.config import MambaConfig
from .qmodel import QuantMambaLM, W4A16Layer, layer_tensors
from .recipe import Recipe

Choice = frozenset[int]  # the W4A16 layers


def a16_count(spec, n_layer: int) -> int:
    """The share of the layers (spec: the recipe's Mixed), rounded half up, and at least one
    layer for a share above 0."""
    f = spec.a16_fraction
    return max(math.floor(f * n_layer + 0.5), 1 if f > 0 else 0)


def draws(n_layer: int, count: int, settings) -> int:
    """How many choices search(..., **settings' fields) draws (its progress count; a choice
    drawn again is not scored again)."""
    every = math.comb(n_layer, count)
    if every <= settings.population:
        return every
    return settings.population + settings.generations * (settings.mutations
                                                         + settings.crossovers)


def search(n_layer: int, count: int, loss: Callable[[Choice], float], population: int = 40,
           generations: int = 5, mutations: int = 10, crossovers: int = 10, seed: int = 0,
           progress: Callable[[int], None] | None = None) -> tuple[Choice, dict[Choice, float]]:
    """The `count`-layer choice of least loss, and every loss computed. Every choice is tried
    when there are no more than `population`; otherwise each generation breeds from the best
    `mutations` (a mutation moves one W4A16 layer elsewhere, a crossover draws `count` layers
    from two parents' union) and the best `population` survive. `progress(1)` per choice drawn."""
    if population < 2 or mutations < 2:
        raise ValueError("search: population and mutations must be 2 or more (the crossovers "
                         "draw two parents)")
    seen: dict[Choice, float] = {}

    def rank(c: Choice):  # by loss, ties by layers: the same choice on every run
        return seen[c], sorted(c)

    def score(choices):
        for c in choices:
            if c not in seen:
                seen[c] = loss(c)
            if progress:
                progress(1)
    every = math.comb(n_layer, count)
    if every <= population:
        score(frozenset(c) for c in combinations(range(n_layer), count))
        return min(seen, key=rank), seen
    rng = random.Random(seed)
    layers = list(range(n_layer))
    pool: set[Choice] = set()
    while len(pool) < population:
        pool.add(frozenset(rng.sample(layers, count)))
    score(sorted(pool, key=sorted))
    for _ in range(generations):
        parents = sorted(pool, key=rank)[:mutations]
        children = []
        for _ in range(mutations):
            parent = rng.choice(parents)
            c = set(parent)
            c.remove(rng.choice(sorted(parent)))
            c.add(rng.choice([i for i in layers if i not in parent]))
            children.append(frozenset(c))
        for _ in range(crossovers):
            a, b = rng.sample(parents, 2)
            children.append(frozenset(rng.sample(sorted(a | b), count)))
        score(children)
        pool = set(sorted(pool | set(children), key=rank)[:population])
    return min(seen, key=rank), seen


def nll(model, windows: torch.Tensor, batch: int = 8) -> float:
    """Mean next-token loss of `model` over calibration windows, each from a zero state."""
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows.split(batch):
            logits = model(w[:, :-1])[0].float()
            total += F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(),
                                     reduction="sum").item()
            count += w[:, 1:].numel()
    return total / count


def choose(cfg: MambaConfig, t8: dict, scales: list[dict], t16: dict, recipe: Recipe,
           windows: torch.Tensor, count: int, progress) -> Choice:
    """The `count` W4A16 layers of least loss on the first calibration windows."""
    spec = recipe.mixed
    int8 = QuantMambaLM(cfg, t8, scales, recipe).eval()
    layers = int8.layers
    half = [W4A16Layer(cfg, layer_tensors(t16, f"backbone.layers.{i}.")).eval()
            for i in range(cfg.n_layer)]

    def loss(choice):
        int8.layers = torch.nn.ModuleList(half[i] if i in choice else layer
                                          for i, layer in enumerate(layers))
        try:  # a window at a time: its logits are L x vocab fp32 (0.5 GB for Mamba2-8B)
            return nll(int8, windows[:spec.windows], batch=1)
        finally:
            int8.layers = layers
    return search(cfg.n_layer, count, loss, **dataclasses.asdict(spec.search),
                  progress=progress)[0]


