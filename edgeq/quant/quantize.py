"""Post-training quantization of a Mamba-1 model: calibrate activation ranges, quantize the
weights (folding the out_proj Hadamard), and save or load the quantized folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import EdgeqError
from ..models.config import MambaConfig, read_config
from ..models.loader import write_config
from ..models.mamba import MambaLM
from ..ops import hadamard
from ..ops.reference import quantize as q8
from . import observers, recipe as recipes
from .qmodel import QuantMambaLM

FORMAT = "edgeq-quant/1"


def check_supported(cfg: MambaConfig, recipe: dict) -> None:
    if cfg.arch != "mamba1":
        raise EdgeqError(f"recipe {recipe['name']} quantizes Mamba-1 models; Quamba2 recipes for "
                         f"{cfg.arch} are not implemented yet")


@torch.no_grad()
def calibrate(model: MambaLM, windows: torch.Tensor, recipe: dict, batch: int = 8,
              progress: Callable[[int], None] | None = None) -> list[dict[str, float]]:
    """Per layer, the observed range of each activation in recipe.ACTIVATIONS (the value an
    int8 scale maps to 127)."""
    cfg = model.cfg
    check_supported(cfg, recipe)
    obs = [{a: observers.make(recipes.observer_of(recipe, a)) for a in recipes.ACTIVATIONS}
           for _ in range(cfg.n_layer)]
    had = recipe["hadamard_out_proj"]

    def record(i, name, x):
        observers.check_finite(x, f"layer {i} {name}")
        obs[i][name].update(x)

    def hooks(i, block):
        m = block.mixer

        def on_norm(_, __, out):
            record(i, "in", out)

        def on_in_proj(_, __, out):
            x, z = out.chunk(2, dim=-1)
            record(i, "x", x)
            record(i, "z", z)

        def on_x_proj(_, inp, out):
            record(i, "u", inp[0])
            dt, B, C = out.split([cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
            record(i, "dt", dt)
            record(i, "B", B)
            record(i, "C", C)
            record(i, "delta", F.linear(dt, m.dt_proj.weight))  # the bias goes into the scan

        def on_out_proj(_, inp, __):
            record(i, "y", hadamard.transform(inp[0]) if had else inp[0])

        return [block.norm.register_forward_hook(on_norm),
                m.in_proj.register_forward_hook(on_in_proj),
                m.x_proj.register_forward_hook(on_x_proj),
                m.out_proj.register_forward_hook(on_out_proj)]

    handles = [h for i, b in enumerate(model.backbone.layers) for h in hooks(i, b)]
    try:
        for start in range(0, len(windows), batch):
            model(windows[start:start + batch])
            if progress:
                progress(min(batch, len(windows) - start))
    finally:
        for h in handles:
            h.remove()
    return [{a: o.value for a, o in layer.items()} for layer in obs]


def _weight(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 weight and its scale (0-d per tensor, [out] per output channel)."""
    amax = w.abs().amax(dim=1) if per_channel else w.abs().max()
    scale = torch.clamp(amax, min=1e-8) / 127
    q = q8(w / (scale[:, None] if per_channel else scale), 1.0)
    return q, scale.float()


def quantize_model(model: MambaLM, ranges: list[dict[str, float]], recipe: dict
                   ) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    """The quantized folder's tensors and per-layer activation scales."""
    cfg = model.cfg
    per_channel = recipe["weights"]["granularity"] == "per-channel"
    had = recipe["hadamard_out_proj"]
    if had and not hadamard.supported(cfg.d_inner):
        raise EdgeqError(f"d_inner {cfg.d_inner} has no Hadamard transform (needs K * 2^m, "
                         "K in 1, 12, 20, 28); use a recipe without one, e.g. naive-w8a8")
    t: dict[str, torch.Tensor] = {}
    for i, block in enumerate(model.backbone.layers):
        m, p = block.mixer, f"layers.{i}."
        weights = {"in_proj": m.in_proj.weight, "x_proj": m.x_proj.weight,
                   "dt_proj": m.dt_proj.weight, "conv1d": m.conv1d.weight[:, 0, :],
                   # out = y W^T = (y H^T)(W H^T)^T: the online H's inverse folds into W
                   "out_proj": m.out_proj.weight.double() @ hadamard.matrix(cfg.d_inner).T
                   if had else m.out_proj.weight}
        for name, w in weights.items():
            t[p + name + ".weight"], t[p + name + ".weight_scale"] = _weight(
                w.float(), per_channel and name != "conv1d")
        conv_bias = m.conv1d.bias if m.conv1d.bias is not None else torch.zeros(cfg.d_inner)
        t.update({p + "conv1d.bias": conv_bias, p + "dt_proj.bias": m.dt_proj.bias,
                  p + "A_log": m.A_log, p + "D": m.D, p + "norm.weight": block.norm.weight})
        for name in ("in_proj", "out_proj"):
            if getattr(m, name).bias is not None:
                t[p + name + ".bias"] = getattr(m, name).bias
    half = lambda w: w.detach().half()  # noqa: E731
    t["embedding.weight"] = half(model.backbone.embeddings.weight)
    t["norm_f.weight"] = half(model.backbone.norm_f.weight)
    if not cfg.tie_embeddings:
        t["lm_head.weight"] = half(model.lm_head.weight)
    t = {k: v.detach().contiguous() for k, v in t.items()}
    scales = [{a: max(v, 1e-8) / 127 for a, v in layer.items()} for layer in ranges]
    return t, scales


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
         calibration: dict, tokenizer_json: Path | None) -> None:
    """Write the quantized folder through a temp folder renamed into place."""
    from safetensors.torch import save_file
    folder = Path(folder)
    parent = check_output(folder)
    tmp = Path(tempfile.mkdtemp(prefix=".edgeq-", dir=parent))
    try:
        write_config(model.cfg, tmp)
        save_file(tensors, str(tmp / "model.safetensors"))
        meta = {"format": FORMAT, "config_digest": config_digest(model.cfg), "recipe": recipe,
                "calibration": calibration, "scales": scales}
        (tmp / "quant.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if tokenizer_json and tokenizer_json.exists():
            shutil.copy(tokenizer_json, tmp / "tokenizer.json")
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_quantized(folder: Path) -> bool:
    return (Path(folder) / "quant.json").exists()


def load(folder: Path) -> QuantMambaLM:
    from safetensors.torch import load_file
    folder = Path(folder)
    cfg = read_config(folder)
    try:
        meta = json.loads((folder / "quant.json").read_text())
    except (OSError, ValueError) as e:
        raise EdgeqError(f"{folder / 'quant.json'}: unreadable ({e}); quantize the model again") from None
    if meta.get("format") != FORMAT:
        raise EdgeqError(f"{folder}: quant.json format {meta.get('format')!r} is not {FORMAT}; "
                         "quantize the model again with this edgeq")
    if meta["config_digest"] != config_digest(cfg) or len(meta["scales"]) != cfg.n_layer:
        raise EdgeqError(f"{folder}: quant.json was made for another model than config.json "
                         "describes; quantize this model again")
    try:
        tensors = load_file(str(folder / "model.safetensors"))
    except Exception as e:
        raise EdgeqError(f"{folder / 'model.safetensors'}: cannot read ({type(e).__name__}); "
                         "quantize the model again") from None
    want = f"layers.{cfg.n_layer - 1}.in_proj.weight"
    if want not in tensors or tensors[want].shape != (2 * cfg.d_inner, cfg.d_model) \
            or tensors["embedding.weight"].shape != (cfg.vocab_size, cfg.d_model):
        raise EdgeqError(f"{folder}: the quantized weights belong to another model than "
                         "config.json describes; quantize this model again")
    return QuantMambaLM(cfg, tensors, meta["scales"], meta["recipe"]).eval()
