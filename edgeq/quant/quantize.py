"""Post-training quantization of a calibrated Mamba model: the weights (int8, or 4-bit GPTQ;
folding the out_proj Hadamard) and the activation scales of the quantized folder."""
from __future__ import annotations

import torch

from ..models.config import MambaConfig
from ..models.mamba import MambaLM
from ..ops import hadamard
from . import cluster, mixed, recipe as recipes, weights
from .calib_stats import Calibration, Hessians, calibrate
from .folder import layer_tensors
from .qmodel import w4_table


def _linear(t: dict, key: str, w: torch.Tensor, cal_h: dict, recipe: dict, name: str) -> None:
    """A linear's weight into t: 4-bit packed if the recipe names it, else int8."""
    spec = recipe["weights"]
    if name in recipes.w4_linears(recipe):
        t[key + ".weight_packed"], t[key + ".weight_scale"] = weights.int4_packed(
            w, cal_h.get(name), spec, key)
    else:
        t[key + ".weight"], t[key + ".weight_scale"] = weights.int8(
            w, spec["granularity"] == "per-channel")


def _out_proj(m, cfg: MambaConfig, had: bool) -> torch.Tensor:
    # out = y W^T = (y H^T)(W H^T)^T: the online Hadamard's inverse folds into W
    if not had:
        return m.out_proj.weight.float()
    return (m.out_proj.weight.double() @ hadamard.matrix(cfg.d_inner).T).float()


def _layer_mamba1(t, p, block, cfg, cal_h, recipe) -> None:
    m = block.mixer
    had = recipe["hadamard_out_proj"]
    for name, w in (("in_proj", m.in_proj.weight), ("x_proj", m.x_proj.weight),
                    ("dt_proj", m.dt_proj.weight), ("out_proj", _out_proj(m, cfg, had))):
        _linear(t, p + name, w.detach(), cal_h, recipe, name)
    t[p + "conv1d.weight"], t[p + "conv1d.weight_scale"] = weights.int8(m.conv1d.weight[:, 0, :])
    conv_bias = m.conv1d.bias if m.conv1d.bias is not None else torch.zeros(cfg.d_inner)
    t.update({p + "conv1d.bias": conv_bias, p + "dt_proj.bias": m.dt_proj.bias,
              p + "A_log": m.A_log, p + "D": m.D, p + "norm.weight": block.norm.weight})


def _layer_mamba2(t, p, block, cfg, cal_h, recipe) -> None:
    m = block.mixer
    had = recipe["hadamard_out_proj"]
    _linear(t, p + "in_proj", m.in_proj.weight.detach(), cal_h, recipe, "in_proj")
    _linear(t, p + "out_proj", _out_proj(m, cfg, had).detach(), cal_h, recipe, "out_proj")
    # conv taps: one int8 scale per part (x, B, C), held per channel
    GN, w = cfg.ngroups * cfg.d_state, m.conv1d.weight[:, 0, :].detach().float()
    q, s = [], []
    for part in w.split([cfg.d_inner, GN, GN]):
        qi, si = weights.int8(part)
        q.append(qi)
        s.append(si.expand(len(part)))
    t[p + "conv1d.weight"], t[p + "conv1d.weight_scale"] = torch.cat(q), torch.cat(s)
    conv_bias = m.conv1d.bias if m.conv1d.bias is not None else torch.zeros(cfg.conv_dim)
    t.update({p + "conv1d.bias": conv_bias, p + "dt_bias": m.dt_bias, p + "A_log": m.A_log,
              p + "D": m.D, p + "norm.weight": block.norm.weight,
              p + "gate_norm.weight": m.norm.weight})


def _scales_mamba2(cfg: MambaConfig, r: dict, group: torch.Tensor | None, recipe: dict) -> dict:
    """Mamba-2 activation scales: per tensor, but the conv input xBC one per part [x, B, C]
    (Quamba2's conv input), x per sort-and-cluster group (or per tensor without clustering) and
    B, C per state group (or per tensor), as per-channel lists."""
    s = {a: _scale(v) for a, v in r.items() if a not in ("xBC", "x", "B", "C")}
    di, GN = cfg.d_inner, cfg.ngroups * cfg.d_state
    part = torch.tensor([0] * di + [1] * GN + [2] * GN)
    s["xBC"] = cluster.group_scales(torch.tensor(r["xBC"]), part)[[0, di, di + GN]].tolist()
    one = torch.zeros(cfg.d_inner, dtype=torch.long)
    s["x"] = cluster.group_scales(torch.tensor(r["x"]), one if group is None else group).tolist()
    N = cfg.d_state
    state_group = torch.arange(cfg.ngroups * N) // N
    if not recipe.get("per_state_group"):
        state_group = torch.zeros_like(state_group)
    for a in ("B", "C"):  # one value per state group
        s[a] = cluster.group_scales(torch.tensor(r[a]), state_group)[::N].tolist()
    return s


def _scale(amax: float) -> float:
    return max(amax, 1e-8) / 127


def _head(t: dict, key: str, w: torch.Tensor, recipe: dict, hessian=None) -> None:
    """Embedding or lm_head: fp16, or with head-to-toe (h2t) 4-bit per group of inputs, GPTQ
    on lm_head's input Hessian when given (round to nearest without)."""
    if recipe.get("h2t"):
        t[key + ".weight_packed"], t[key + ".weight_scale"] = weights.int4_packed(
            w.detach(), hessian, recipe["weights"], key)
    else:
        t[key + ".weight"] = w.detach().half()


def _head_hessian(cfg: MambaConfig, cal: Calibration, key: str):
    """lm_head's input Hessian for lm_head and a tied table (GPTQ for the head serves the
    embedding too); an untied embedding has no Hessian."""
    return cal.hessians.head() if key.endswith("lm_head") or cfg.tie_embeddings else None


def _w4_values(t: dict, p: str, names: tuple[str, ...], had: int = 0) -> dict:
    """Layer p's 4-bit weights as fp values in the model's basis (out_proj's folded Hadamard
    of size `had` taken back out), for the GPTQ Hessians of the layers after it."""
    out = {}
    for name in names:
        w = w4_table(t, p + name).rows()
        out[name] = (w.double() @ hadamard.matrix(had)).float() if name == "out_proj" and had \
            else w
    return out


def _fp16(t: dict, model: MambaLM, cal: Calibration, recipe: dict) -> None:
    cfg = model.cfg
    _head(t, "embedding", model.backbone.embeddings.weight, recipe,
          _head_hessian(cfg, cal, "embedding"))
    t["norm_f.weight"] = model.backbone.norm_f.weight.detach().half()
    if not cfg.tie_embeddings:
        _head(t, "lm_head", model.lm_head.weight, recipe, _head_hessian(cfg, cal, "lm_head"))


def _a16_layer(t: dict, p: str, i: int, block, hessians: Hessians, recipe: dict) -> None:
    """Layer i as W4A16, its tensors under p (MambaBlock's names): its 4-bit linears packed
    (their values handed back to the Hessians), the rest fp16."""
    for name in recipes.w4_linears(recipe):
        _linear(t, p + "mixer." + name, getattr(block.mixer, name).weight.detach(),
                hessians.hessians_for(i), recipe, name)
    hessians.commit(i, _w4_values(t, p + "mixer.", hessians.names))
    for k, v in block.state_dict().items():
        if not (k.endswith(".weight") and p + k[:-len("weight")] + "weight_packed" in t):
            t[p + k] = v.detach().half()


def _weight_only(model: MambaLM, cal: Calibration, recipe: dict, tick
                 ) -> dict[str, torch.Tensor]:
    """W4A16: the fp16 model, its 4-bit linears packed (keys of MambaLM.state_dict)."""
    t = {}
    for i, block in enumerate(model.backbone.layers):  # in layer order: GPTQ is sequential
        _a16_layer(t, f"backbone.layers.{i}.", i, block, cal.hessians, recipe)
        tick(1)
    for k, v in model.state_dict().items():
        if k.startswith("backbone.layers.") or k.startswith("lm_head") and model.cfg.tie_embeddings:
            continue
        if k in ("backbone.embeddings.weight", "lm_head.weight"):
            key = k[:-len(".weight")]
            _head(t, key, v, recipe, _head_hessian(model.cfg, cal, key))
        else:
            t[k] = v.detach().half()
    tick(1)
    return t


def quantize_model(model: MambaLM, cal: Calibration, recipe: dict, progress=None
                   ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The quantized folder's tensors and per-layer activation scales (none for a W4A16 layer
    of a mixed recipe). progress(1) per step (steps(): layers with their GPTQ, search draws)."""
    cfg = model.cfg
    recipes.check_supported(cfg, recipe)
    tick = progress or (lambda n: None)
    if recipes.weight_only(recipe):
        t = {k: v.contiguous() for k, v in _weight_only(model, cal, recipe, tick).items()}
        cal.hessians.release()
        return t, []
    if recipe.get("mixed"):
        return _mixed(model, cal, recipe, tick)
    return _int8(model, cal, recipe, tick)


def steps(cfg: MambaConfig, recipe: dict) -> int:
    """How many steps quantize_model counts: per form of the layers it quantizes (a mixed
    recipe's two), one per layer (its GPTQ Hessians run the layer over every calibration
    window: most of the time) and one for the rest (embedding, lm_head); then the mixed
    recipe's search draws."""
    spec, forms, draws = recipe.get("mixed"), 1, 0
    if spec:
        count = mixed.a16_count(spec, cfg.n_layer)
        forms += count > 0
        if 0 < count < cfg.n_layer:
            draws = mixed.draws(cfg.n_layer, count, spec["search"])
    return forms * (cfg.n_layer + 1) + draws


def _int8(model: MambaLM, cal: Calibration, recipe: dict, tick
          ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    cfg = model.cfg
    layer = _layer_mamba2 if cfg.arch == "mamba2" else _layer_mamba1
    t: dict[str, torch.Tensor] = {}
    for i, block in enumerate(model.backbone.layers):
        p = f"layers.{i}."
        layer(t, p, block, cfg, cal.hessians.hessians_for(i), recipe)
        cal.hessians.commit(i, _w4_values(t, p, cal.hessians.names,
                                             cfg.d_inner if recipe["hadamard_out_proj"] else 0))
        for name in ("in_proj", "out_proj"):
            if getattr(block.mixer, name).bias is not None:
                t[p + name + ".bias"] = getattr(block.mixer, name).bias
        tick(1)
    _fp16(t, model, cal, recipe)
    tick(1)
    cal.hessians.release()
    t = {k: v.detach().contiguous() for k, v in t.items()}
    if cfg.arch == "mamba2":
        scales = [_scales_mamba2(cfg, r, cal.groups[i] if cal.groups else None, recipe)
                  for i, r in enumerate(cal.ranges)]
    else:
        scales = [{a: _scale(v) for a, v in r.items()} for r in cal.ranges]
    return t, scales


def _mixed(model: MambaLM, cal: Calibration, recipe: dict, tick
           ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """W4AX: every layer quantized both ways (W4A16 by its own recipe, GPTQ on its own
    Hessians), then the search's W4A16 layers take their W4A16 tensors and no scales: the
    folder holds the model whose loss the search measured (GPTQ again in the chosen mix did
    worse: bench/results/w4ax_gptq_order.md)."""
    cfg, spec = model.cfg, recipe["mixed"]
    windows, batch = cal.hessians.windows, cal.hessians.batch
    t8, scales = _int8(model, cal, recipe, tick)
    count = mixed.a16_count(spec, cfg.n_layer)
    if count == 0:
        return t8, scales
    a16 = recipes.load(spec["a16"])
    t16 = _weight_only(model, calibrate(model, windows, a16, batch), a16, tick)
    choice = frozenset(range(cfg.n_layer)) if count == cfg.n_layer \
        else mixed.choose(cfg, t8, scales, t16, recipe, windows, count, tick)
    for i in sorted(choice):
        p = f"layers.{i}."
        t8 = {k: v for k, v in t8.items() if not k.startswith(p)}
        t8.update({p + k: v.contiguous() for k, v in layer_tensors(t16, f"backbone.{p}").items()})
        scales[i] = {}
    return t8, scales
