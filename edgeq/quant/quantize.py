"""Post-training quantization of a calibrated Mamba model: the weights (int8, or 4-bit GPTQ;
folding the out_proj Hadamard) and the activation scales of the quantized folder."""
from __future__ import annotations

import torch

from ..models.config import MambaConfig
from ..models.mamba import MambaLM
from ..ops import hadamard
from . import cluster, mixed, recipe as recipes, weights
from .calib_stats import Calibration, Hessians, calibrate
from .qmodel import w4_table
from .recipe import Act, Recipe


def _linear(tensors: dict, key: str, weight: torch.Tensor, cal_h: dict, recipe: Recipe,
            name: str) -> None:
    """A linear's weight into `tensors`: 4-bit packed if the recipe names it, else int8."""
    spec = recipe.weights
    if name in spec.w4:
        tensors[key + ".weight_packed"], tensors[key + ".weight_scale"] = weights.int4_packed(
            weight, cal_h.get(name), spec, key)
    else:
        tensors[key + ".weight"], tensors[key + ".weight_scale"] = weights.int8(
            weight, spec.granularity == "per-channel")


def _out_proj(mixer, cfg: MambaConfig, had: bool) -> torch.Tensor:
    # out = y W^T = (y H^T)(W H^T)^T: the online Hadamard's inverse folds into W
    if not had:
        return mixer.out_proj.weight.float()
    return (mixer.out_proj.weight.double() @ hadamard.matrix(cfg.d_inner).T).float()


def _layer_mamba1(tensors, prefix, block, cfg, cal_h, recipe) -> None:
    """Block `prefix`'s int8 layer: its norm, its mixer's tensors under prefix + "mixer."."""
    mixer, m = block.mixer, prefix + "mixer."
    had = recipe.hadamard_out_proj
    for name, weight in (("in_proj", mixer.in_proj.weight), ("x_proj", mixer.x_proj.weight),
                    ("dt_proj", mixer.dt_proj.weight), ("out_proj", _out_proj(mixer, cfg, had))):
        _linear(tensors, m + name, weight.detach(), cal_h, recipe, name)
    tensors[m + "conv1d.weight"], tensors[m + "conv1d.weight_scale"] = weights.int8(
        mixer.conv1d.weight[:, 0, :])
    conv_bias = mixer.conv1d.bias if mixer.conv1d.bias is not None else torch.zeros(cfg.d_inner)
    tensors.update({m + "conv1d.bias": conv_bias, m + "dt_proj.bias": mixer.dt_proj.bias,
                    m + "A_log": mixer.A_log, m + "D": mixer.D,
                    prefix + "norm.weight": block.norm.weight})


def _layer_mamba2(tensors, prefix, block, cfg, cal_h, recipe) -> None:
    """As _layer_mamba1; the gated norm is the mixer's norm."""
    mixer, m = block.mixer, prefix + "mixer."
    had = recipe.hadamard_out_proj
    _linear(tensors, m + "in_proj", mixer.in_proj.weight.detach(), cal_h, recipe, "in_proj")
    _linear(tensors, m + "out_proj", _out_proj(mixer, cfg, had).detach(), cal_h, recipe,
            "out_proj")
    # conv taps: one int8 scale per part (x, B, C), held per channel
    GN, taps = cfg.ngroups * cfg.d_state, mixer.conv1d.weight[:, 0, :].detach().float()
    int8_taps, tap_scales = [], []
    for part in taps.split([cfg.d_inner, GN, GN]):
        values, scale = weights.int8(part)
        int8_taps.append(values)
        tap_scales.append(scale.expand(len(part)))
    tensors[m + "conv1d.weight"] = torch.cat(int8_taps)
    tensors[m + "conv1d.weight_scale"] = torch.cat(tap_scales)
    conv_bias = mixer.conv1d.bias if mixer.conv1d.bias is not None else torch.zeros(cfg.conv_dim)
    tensors.update({m + "conv1d.bias": conv_bias, m + "dt_bias": mixer.dt_bias,
                    m + "A_log": mixer.A_log, m + "D": mixer.D,
                    m + "norm.weight": mixer.norm.weight,  # the gated norm
                    prefix + "norm.weight": block.norm.weight})


def _scales_mamba2(cfg: MambaConfig, ranges: dict, group: torch.Tensor | None,
                   recipe: Recipe) -> dict:
    """Mamba-2 activation scales: per tensor, but the conv input xBC one per part [x, B, C]
    (Quamba2's conv input), x per sort-and-cluster group (or per tensor without clustering) and
    B, C per state group (or per tensor), as per-channel lists."""
    per_channel = (Act.XBC, Act.X, Act.B, Act.C)
    scales = {name: _scale(v) for name, v in ranges.items() if name not in per_channel}
    di, GN = cfg.d_inner, cfg.ngroups * cfg.d_state
    part = torch.tensor([0] * di + [1] * GN + [2] * GN)
    scales[Act.XBC] = cluster.group_scales(torch.tensor(ranges[Act.XBC]),
                                           part)[[0, di, di + GN]].tolist()
    one = torch.zeros(cfg.d_inner, dtype=torch.long)
    scales[Act.X] = cluster.group_scales(torch.tensor(ranges[Act.X]),
                                     one if group is None else group).tolist()
    N = cfg.d_state
    state_group = torch.arange(cfg.ngroups * N) // N
    if not recipe.per_state_group:
        state_group = torch.zeros_like(state_group)
    for name in (Act.B, Act.C):  # one value per state group
        scales[name] = cluster.group_scales(torch.tensor(ranges[name]),
                                            state_group)[::N].tolist()
    return scales


def _scale(amax: float) -> float:
    return max(amax, 1e-8) / 127


def _head(tensors: dict, key: str, weight: torch.Tensor, recipe: Recipe, hessian=None) -> None:
    """Embedding or lm_head: fp16, or with head-to-toe (h2t) 4-bit per group of inputs, GPTQ
    on lm_head's input Hessian when given (round to nearest without)."""
    if recipe.h2t:
        tensors[key + ".weight_packed"], tensors[key + ".weight_scale"] = weights.int4_packed(
            weight.detach(), hessian, recipe.weights, key)
    else:
        tensors[key + ".weight"] = weight.detach().half()


def _head_hessian(cfg: MambaConfig, cal: Calibration, key: str):
    """lm_head's input Hessian for lm_head and a tied table (GPTQ for the head serves the
    embedding too); an untied embedding has no Hessian."""
    return cal.hessians.head() if key.endswith("lm_head") or cfg.tie_embeddings else None


def _w4_values(tensors: dict, prefix: str, names: tuple[str, ...], had: int = 0) -> dict:
    """Layer `prefix`'s 4-bit weights as fp values in the model's basis (out_proj's folded
    Hadamard of size `had` taken back out), for the GPTQ Hessians of the layers after it."""
    out = {}
    for name in names:
        weight = w4_table(tensors, prefix + name).rows()
        out[name] = (weight.double() @ hadamard.matrix(had)).float() if name == "out_proj" and had \
            else weight
    return out


def _fp16(tensors: dict, model: MambaLM, cal: Calibration, recipe: Recipe) -> None:
    """The parts outside the layers: embedding, final norm, lm_head (a tied one: none)."""
    cfg = model.cfg
    _head(tensors, "backbone.embeddings", model.backbone.embeddings.weight, recipe,
          _head_hessian(cfg, cal, "backbone.embeddings"))
    tensors["backbone.norm_f.weight"] = model.backbone.norm_f.weight.detach().half()
    if not cfg.tie_embeddings:
        _head(tensors, "lm_head", model.lm_head.weight, recipe, _head_hessian(cfg, cal, "lm_head"))


def _a16_layer(tensors: dict, prefix: str, i: int, block, hessians: Hessians,
               recipe: Recipe) -> None:
    """Layer i as W4A16, its tensors under `prefix` (MambaBlock's names): its 4-bit linears packed
    (their values handed back to the Hessians), the rest fp16."""
    for name in recipe.weights.w4:
        _linear(tensors, prefix + "mixer." + name, getattr(block.mixer, name).weight.detach(),
                hessians.hessians_for(i), recipe, name)
    hessians.commit(i, _w4_values(tensors, prefix + "mixer.", hessians.names))
    for k, v in block.state_dict().items():
        if not (k.endswith(".weight") and prefix + k[:-len("weight")] + "weight_packed" in tensors):
            tensors[prefix + k] = v.detach().half()


def _weight_only(model: MambaLM, cal: Calibration, recipe: Recipe, tick
                 ) -> dict[str, torch.Tensor]:
    """W4A16: the fp16 model, its 4-bit linears packed."""
    tensors = {}
    for i, block in enumerate(model.backbone.layers):  # in layer order: GPTQ is sequential
        _a16_layer(tensors, f"backbone.layers.{i}.", i, block, cal.hessians, recipe)
        tick(1)
    _fp16(tensors, model, cal, recipe)
    tick(1)
    return tensors


def quantize_model(model: MambaLM, cal: Calibration, recipe: Recipe, progress=None
                   ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The quantized folder's tensors and per-layer activation scales (none for a W4A16 layer
    of a mixed recipe). progress(1) per step (steps(): layers with their GPTQ, search draws)."""
    cfg = model.cfg
    recipes.check_supported(cfg, recipe)
    tick = progress or (lambda n: None)
    if recipe.weight_only:
        tensors = {k: v.contiguous() for k, v in _weight_only(model, cal, recipe, tick).items()}
        cal.hessians.release()
        return tensors, []
    if recipe.mixed:
        return _mixed(model, cal, recipe, tick)
    return _int8(model, cal, recipe, tick)


def steps(cfg: MambaConfig, recipe: Recipe) -> int:
    """How many steps quantize_model counts: per form of the layers it quantizes (a mixed
    recipe's two), one per layer (its GPTQ Hessians run the layer over every calibration
    window: most of the time) and one for the rest (embedding, lm_head); then the mixed
    recipe's search draws."""
    spec, forms, draws = recipe.mixed, 1, 0
    if spec:
        count = mixed.a16_count(spec, cfg.n_layer)
        forms += count > 0
        if 0 < count < cfg.n_layer:
            draws = mixed.draws(cfg.n_layer, count, spec.search)
    return forms * (cfg.n_layer + 1) + draws


def _int8(model: MambaLM, cal: Calibration, recipe: Recipe, tick
          ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    cfg = model.cfg
    layer = _layer_mamba2 if cfg.arch == "mamba2" else _layer_mamba1
    tensors: dict[str, torch.Tensor] = {}
    for i, block in enumerate(model.backbone.layers):
        prefix = f"backbone.layers.{i}."
        layer(tensors, prefix, block, cfg, cal.hessians.hessians_for(i), recipe)
        cal.hessians.commit(i, _w4_values(tensors, prefix + "mixer.", cal.hessians.names,
                                             cfg.d_inner if recipe.hadamard_out_proj else 0))
        for name in ("in_proj", "out_proj"):
            if getattr(block.mixer, name).bias is not None:
                tensors[prefix + "mixer." + name + ".bias"] = getattr(block.mixer, name).bias
        tick(1)
    _fp16(tensors, model, cal, recipe)
    tick(1)
    cal.hessians.release()
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    if cfg.arch == "mamba2":
        scales = [_scales_mamba2(cfg, ranges, cal.groups[i] if cal.groups else None, recipe)
                  for i, ranges in enumerate(cal.ranges)]
    else:
        scales = [{name: _scale(v) for name, v in ranges.items()} for ranges in cal.ranges]
    return tensors, scales


def _mixed(model: MambaLM, cal: Calibration, recipe: Recipe, tick
           ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """W4AX: every layer quantized both ways (W4A16 by its own recipe, GPTQ on its own
    Hessians), then the search's W4A16 layers take their W4A16 tensors and no scales: the
    folder holds the model whose loss the search measured (GPTQ again in the chosen mix did
    worse: bench/results/w4ax_gptq_order.md)."""
    cfg, spec = model.cfg, recipe.mixed
    windows, batch = cal.hessians.windows, cal.hessians.batch
    t8, scales = _int8(model, cal, recipe, tick)
    count = mixed.a16_count(spec, cfg.n_layer)
    if count == 0:
        return t8, scales
    a16 = recipes.load(spec.a16)
    t16 = _weight_only(model, calibrate(model, windows, a16, batch), a16, tick)
    choice = frozenset(range(cfg.n_layer)) if count == cfg.n_layer \
        else mixed.choose(cfg, t8, scales, t16, recipe, windows, count, tick)
    for i in sorted(choice):  # the same keys either way: the layer's tensors swapped
        prefix = f"backbone.layers.{i}."
        t8 = {k: v for k, v in t8.items() if not k.startswith(prefix)}
        t8.update({k: v.contiguous() for k, v in t16.items() if k.startswith(prefix)})
        scales[i] = {}
    return t8, scales
