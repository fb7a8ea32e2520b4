"""Post-training quantization of a Mamba model: quantize the weights (int8, or 4-bit GPTQ;
folding the out_proj Hadamard) with the calibrated activation scales, and save or load the
quantized folder."""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch

from ..errors import EdgeqError
from ..output import writing
from ..jsonfile import read_json
from ..models.config import MambaConfig, read_config
from ..models.loader import write_config
from ..models.mamba import MambaLM
from ..ops import hadamard
from . import cluster, mixed, recipe as recipes, weights
from .calib_stats import Calibration, Hessians, calibrate, cluster_x, passes  # noqa: F401 (API)
from .qmodel import QuantMambaLM, W4A16Layer, load_model, w4_table
from .rotate import rotate_residual

FORMAT = "edgeq-quant/1"


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
    folder holds the model whose loss the search measured. (GPTQ once more in the chosen mix,
    each layer after its predecessors' chosen forms, measured worse on both demos: +0.54 % and
    +0.89 % perplexity against these +0.47 % and +0.82 %.)"""
    cfg, spec = model.cfg, recipe["mixed"]
    windows, batch = cal.hessians.windows, cal.hessians.batch
    t8, scales = _int8(model, cal, recipe, tick)
    count = mixed.a16_count(spec, cfg.n_layer)
    if count == 0:
        return t8, scales
    a16 = recipes.load(spec["a16"])
    t16 = _weight_only(model, calibrate(model, windows, a16, batch), a16, tick)
    choice = frozenset(range(cfg.n_layer)) if count == cfg.n_layer \
        else _choose(cfg, t8, scales, t16, recipe, windows, count, tick)
    for i in sorted(choice):
        p = f"layers.{i}."
        t8 = {k: v for k, v in t8.items() if not k.startswith(p)}
        t8.update({p + k: v.contiguous() for k, v in layer_tensors(t16, f"backbone.{p}").items()})
        scales[i] = {}
    return t8, scales


def _choose(cfg: MambaConfig, t8: dict, scales: list[dict], t16: dict, recipe: dict,
            windows: torch.Tensor, count: int, progress) -> mixed.Choice:
    """The `count` W4A16 layers of least loss on the first calibration windows."""
    spec = recipe["mixed"]
    int8 = QuantMambaLM(cfg, t8, scales, recipe).eval()
    layers = int8.layers
    half = [W4A16Layer(cfg, layer_tensors(t16, f"backbone.layers.{i}.")).eval()
            for i in range(cfg.n_layer)]

    def loss(choice):
        int8.layers = torch.nn.ModuleList(half[i] if i in choice else layer
                                          for i, layer in enumerate(layers))
        try:  # a window at a time: its logits are L x vocab fp32 (0.5 GB for Mamba2-8B)
            return mixed.nll(int8, windows[:spec["windows"]], batch=1)
        finally:
            int8.layers = layers
    return mixed.search(cfg.n_layer, count, loss, **spec["search"], progress=progress)[0]


def layer_tensors(t: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix`, named without it."""
    return {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}


def calibrate_all(model: MambaLM, windows: torch.Tensor, recipe: dict, batch: int = 8,
                  progress=None) -> tuple[MambaLM, Calibration]:
    """The recipe's fp rewrites (residual Hadamard, sort-and-cluster), then calibration. The
    model returned is the rewritten one, the one the quantized folder describes. Progress
    counts calibration windows over all passes (calibrate.passes)."""
    recipes.check_supported(model.cfg, recipe)
    if recipe.get("hadamard_in_proj"):
        model = rotate_residual(model)
    model, groups = cluster_x(model, windows, recipe, batch, progress)
    cal = calibrate(model, windows, recipe, batch, progress)
    cal.groups = groups
    return model, cal


def run(model: MambaLM, windows: torch.Tensor, recipe: dict, batch: int = 8
        ) -> tuple[MambaLM, dict[str, torch.Tensor], list[dict]]:
    """The rewritten fp model (save the folder with its config), tensors and scales."""
    model, cal = calibrate_all(model, windows, recipe, batch)
    return (model, *quantize_model(model, cal, recipe))


def config_digest(cfg: MambaConfig) -> str:
    d = {k: v for k, v in cfg.to_dict().items() if k != "layout"}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def check_output(folder: Path) -> Path:
    """The parent of a quantized folder to create, if the folder is new and the parent writable."""
    folder = Path(folder)
    if folder.exists():
        raise EdgeqError(f"{folder}: already exists; remove it or choose another -o")
    parent = folder.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise EdgeqError(f"{parent}: not a writable folder; choose another -o")
    return parent


def save(folder: Path, model: MambaLM, tensors: dict, scales: list[dict], recipe: dict,
         calibration: dict, tokenizer_json: str | None) -> None:
    """Write the quantized folder through a temp folder renamed into place."""
    from safetensors.torch import save_file
    folder = Path(folder)
    check_output(folder)
    with writing(folder) as tmp:
        write_config(model.cfg, tmp)
        save_file(tensors, str(tmp / "model.safetensors"))
        meta = {"format": FORMAT, "config_digest": config_digest(model.cfg), "recipe": recipe,
                "calibration": calibration, "scales": scales}
        (tmp / "quant.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if tokenizer_json:
            (tmp / "tokenizer.json").write_text(tokenizer_json)


def is_quantized(folder: Path) -> bool:
    return (Path(folder) / "quant.json").exists()


def in_proj_rows(cfg: MambaConfig) -> int:
    return cfg.d_inner + cfg.conv_dim + cfg.nheads if cfg.arch == "mamba2" else 2 * cfg.d_inner


def read_meta(folder: Path) -> tuple[MambaConfig, dict]:
    """The config and quant.json of a quantized folder, checked against each other."""
    folder = Path(folder)
    cfg = read_config(folder)
    meta = read_json(folder / "quant.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EdgeqError(f"{folder}: quant.json is not {FORMAT}; quantize the model again with "
                         "this edgeq")
    try:
        meta["scales"] = list(meta["scales"])
        n_scales = 0 if recipes.weight_only(meta["recipe"]) else cfg.n_layer
        made_for = meta["config_digest"]
    except (KeyError, TypeError) as e:
        raise EdgeqError(f"{folder / 'quant.json'}: damaged ({type(e).__name__}: {e}); quantize "
                         "the model again") from None
    if made_for != config_digest(cfg) or len(meta["scales"]) != n_scales:
        raise EdgeqError(f"{folder}: quant.json was made for another model than config.json "
                         "describes; quantize this model again")
    for i, layer in enumerate(meta["scales"]):
        for name, v in (layer.items() if isinstance(layer, dict) else [("", None)]):
            if not all(_positive(x) for x in (v if isinstance(v, list) else [v])):
                raise EdgeqError(f"{folder / 'quant.json'}: layer {i} scale {name or '?'} is "
                                 f"{_short(v)}, not a finite number above 0; quantize the model again")
    return cfg, meta


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < math.inf


def _short(v) -> str:
    return str(next((x for x in v if not _positive(x)), v) if isinstance(v, list) else v)[:40]


def check_tensors(tensors: dict[str, torch.Tensor], folder: Path) -> None:
    """Integer tensors only where a weight_scale says they are quantized weights (int8, or
    uint8 packed 4-bit); every other tensor floating point and finite; every scale above 0."""
    for k, v in tensors.items():
        scale = k.removesuffix("_packed") + "_scale"
        quantized = k.endswith(".weight_packed") or k.endswith(".weight") and scale in tensors
        want = (torch.uint8 if k.endswith("_packed") else torch.int8) if quantized else None
        if want is not None and v.dtype != want or want is None and not v.is_floating_point():
            raise EdgeqError(f"{folder}: tensor {k} is {str(v.dtype).removeprefix('torch.')}, not "
                             f"{str(want).removeprefix('torch.') if want else 'floating point'}; "
                             "the quantized weights are damaged: quantize the model again")
        if v.is_floating_point() and not (torch.isfinite(v).all() and (
                not k.endswith("weight_scale") or (v > 0).all())):
            what = "NaN, infinite or non-positive scales" if k.endswith("weight_scale") \
                else "NaN or infinite values"
            raise EdgeqError(f"{folder}: tensor {k} holds {what}; the quantized weights are "
                             "damaged: quantize the model again")


def load(folder: Path):
    """The quantized model of a folder: QuantMambaLM, or MambaLM with 4-bit linears (W4A16)."""
    from safetensors.torch import load_file
    folder = Path(folder)
    cfg, meta = read_meta(folder)
    recipe, scales = meta["recipe"], meta["scales"]
    try:
        tensors = load_file(str(folder / "model.safetensors"))
    except Exception as e:
        raise EdgeqError(f"{folder / 'model.safetensors'}: cannot read ({type(e).__name__}); "
                         "quantize the model again") from None
    check_tensors(tensors, folder)
    # the last layer's in_proj: a W4A16 layer's is its block's mixer's
    n_scales = len(scales)
    last = n_scales and scales[-1]
    prefix = "layers" if n_scales else "backbone.layers"
    key = f"{prefix}.{cfg.n_layer - 1}.{'' if last else 'mixer.'}in_proj.weight"
    rows = [tensors[k].shape[0] for k in (key, key + "_packed") if k in tensors]
    emb = "backbone.embeddings.weight" if n_scales == 0 else "embedding.weight"
    emb_rows = [tensors[k].shape[0] for k in (emb, emb + "_packed") if k in tensors]
    if rows != [in_proj_rows(cfg)] or emb_rows != [cfg.vocab_size]:
        raise EdgeqError(f"{folder}: the quantized weights belong to another model than "
                         "config.json describes; quantize this model again")
    try:  # a token through every layer: a tensor missing, misshapen or mistyped fails here
        model = load_model(cfg, tensors, scales, recipe)
        with torch.no_grad():
            model(torch.zeros(1, 1, dtype=torch.long))
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, RuntimeError) as e:
        if "allocate" in str(e):  # torch's CPU allocator: memory, not damage
            raise MemoryError(str(e)) from None
        raise EdgeqError(f"{folder}: the quantized weights are damaged ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]}); quantize the model again") from None
    return model
