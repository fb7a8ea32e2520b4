"""The quantized folder (`edgeq quantize`'s output): config.json, model.safetensors (the
quantized tensors), quant.json (format, recipe, calibration, activation scales) and the
tokenizer. Written through a temp folder renamed into place; read back checked.

model.safetensors names every recipe's tensors as MambaLM.state_dict() does (the -hf
checkpoint's names): backbone.embeddings.weight, backbone.layers.{i}.norm.weight,
backbone.layers.{i}.mixer.* (Mamba-2's gated norm: mixer.norm.weight), backbone.norm_f.weight,
lm_head.weight (none when tied). A quantized matrix `x.weight` is held as `x.weight` int8 (an
int8 layer's conv1d.weight [channels, kernel]) or `x.weight_packed` uint8 (4-bit, 2 a byte),
with its scales in `x.weight_scale`; the rest fp16 or fp32. A layer with activation scales in
quant.json runs int8 activations; one without (every layer of a W4A16 recipe) is W4A16."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from ..errors import EdgeqError
from ..jsonfile import read_json
from ..models.config import MambaConfig, read_config
from ..models.loader import write_config
from ..models.mamba import MambaLM
from ..output import check_output, writing
from . import recipe as recipes
from .qmodel import load_model

# 3: every recipe's tensors named as MambaLM's (2's int8 layers and parts had names of their
# own); 2: the recipe in quant.json is the typed recipe's fields (1's were the recipe file's)
FORMAT = "edgeq-quant/3"
OLD_FORMATS = ("edgeq-quant/1", "edgeq-quant/2")


def config_digest(cfg: MambaConfig) -> str:
    d = {k: v for k, v in cfg.to_dict().items() if k != "layout"}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def save(folder: Path, model: MambaLM, tensors: dict, scales: list[dict], recipe: recipes.Recipe,
         calibration: dict, tokenizer_json: str | None) -> None:
    """Write the quantized folder through a temp folder renamed into place."""
    from safetensors.torch import save_file
    folder = Path(folder)
    check_output(folder)
    with writing(folder) as tmp:
        write_config(model.cfg, tmp)
        save_file(tensors, str(tmp / "model.safetensors"))
        meta = {"format": FORMAT, "config_digest": config_digest(model.cfg),
                "recipe": recipes.to_dict(recipe),
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
    if isinstance(meta, dict) and meta.get("format") in OLD_FORMATS:
        raise EdgeqError(f"{folder}: quant.json is {meta['format']}, an older format than this "
                         f"edgeq's {FORMAT}; quantize the model again with this edgeq")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EdgeqError(f"{folder}: quant.json is not {FORMAT}; quantize the model again with "
                         "this edgeq")
    try:
        meta["recipe"] = recipes.from_dict(meta["recipe"], f"{folder / 'quant.json'}: recipe")
        meta["scales"] = list(meta["scales"])
        n_scales = 0 if meta["recipe"].weight_only else cfg.n_layer
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

    def rows(key: str) -> list[int]:  # held as key, or as key + "_packed" when 4-bit
        return [tensors[k].shape[0] for k in (key, key + "_packed") if k in tensors]
    last = f"backbone.layers.{cfg.n_layer - 1}.mixer.in_proj.weight"  # the layer count and dims
    if rows(last) != [in_proj_rows(cfg)] or rows("backbone.embeddings.weight") != [cfg.vocab_size]:
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
