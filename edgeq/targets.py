"""Device targets (targets/*.toml, data with sources) and the roofline lower bounds of a model
on them: decode is bound by the bytes moved per token, prefill by the int8/fp16 compute."""
from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import EdgeqError
from .models.config import MambaConfig

ROOT = Path(__file__).resolve().parents[1] / "targets"


def _folder() -> Path:
    # the source tree's targets/, or the copy installed inside the package
    for path in (ROOT, Path(__file__).resolve().parent / "native" / "targets"):
        if path.is_dir():
            return path
    raise EdgeqError("the targets folder is missing from this installation; reinstall edgeq")


def all_targets() -> dict[str, dict]:
    out = {}
    for f in sorted(_folder().glob("*.toml")):
        t = tomllib.loads(f.read_text())
        out[t["name"]] = t
    return out


def get(name: str) -> dict:
    targets = all_targets()
    if name not in targets:
        raise EdgeqError(f"unknown target {name!r}; choose one of: {', '.join(targets)}")
    return targets[name]


def precision(recipe: str, cfg: MambaConfig, h2t: bool = False, a16_fraction: float | None = None
              ) -> dict:
    """Bytes per weight of each layer matrix (by linear name; "*" the rest) and of the
    embedding/lm_head, the state's conv bytes, and the share of layers with fp16 activations
    (the rest int8), from the recipe's data; averaged over the layers of a mixed recipe."""
    from .quant import mixed, recipe as recipes
    if recipe not in recipes.names():
        raise EdgeqError(f"no size model for recipe {recipe!r}; choose one of: "
                         f"{', '.join(recipes.names())}")
    rec = recipes.load(recipe, h2t=h2t, a16_fraction=a16_fraction)
    recipes.check_supported(cfg, rec)
    a16 = mixed.a16_count(rec.mixed, cfg.n_layer) / cfg.n_layer if rec.mixed \
        else float(rec.weight_only)
    rest = 1.0 + a16  # the other matrices and the conv state: int8, or fp16 in a W4A16 layer
    w4 = 0.5 + 4 / rec.weights.group_size  # int4 + one fp32 scale per group
    layers = {"*": rest, **{n: w4 for n in rec.weights.w4}}
    return {"layers": layers, "head": w4 if h2t else 2.0, "conv": rest, "a16": a16}


def estimate(cfg: MambaConfig, target: dict, recipe: str = "fp16", prompt_len: int = 1024,
             batch: int = 1, h2t: bool = False, a16_fraction: float | None = None) -> dict:
    """Roofline lower bounds on `target` (no overheads: real kernels are slower)."""
    import torch

    from .models.mamba import MambaLM
    p = precision(recipe, cfg, h2t, a16_fraction)
    with torch.device("meta"):  # shapes only
        model = MambaLM(cfg)
    layer_matrix = weights = 0
    for name, t in model.backbone.layers.named_parameters():
        if t.dim() == 2 and "A_log" not in name and "conv1d" not in name:
            layer_matrix += t.numel()  # the projections, quantized by the recipes
            linear = name.split(".")[-2]
            weights += t.numel() * p["layers"].get(linear, p["layers"]["*"])
        else:
            weights += t.numel() * 4  # conv, A, D, biases, norms: fp32
    # the SSM state: fp32, but an fp16 cache in Mamba-2's int8 layers (docs/ops.md,
    # EdgeqSSDScanInt8)
    ssm = 4 - 2 * (1 - p["a16"]) if cfg.arch == "mamba2" else 4
    state = cfg.n_layer * batch * (cfg.d_inner * cfg.d_state * ssm + (cfg.d_conv - 1) * cfg.conv_dim * p["conv"])
    d = cfg.d_model
    head = cfg.vocab_size * d * p["head"]  # lm_head is read whole every token
    decode_bytes = weights + head + batch * d * p["head"] + 2 * state  # states read and written
    # the prompt's tokens through the layers, lm_head once (the last position's logits)
    prefill_flops = 2 * (layer_matrix * prompt_len + cfg.vocab_size * d) * batch
    # seconds per FLOP: int8 and fp16 layers in their shares
    per_flop = (1 - p["a16"]) / target["int8_tops_dense"] + p["a16"] / target["fp16_tflops_dense"]
    label = recipe + (" h2t" if h2t else "") \
        + (f" a16-fraction {a16_fraction:g}" if a16_fraction is not None else "")
    return {
        "target": target["name"], "recipe": label, "batch": batch, "prompt_len": prompt_len,
        "decode_bytes_per_token": int(decode_bytes),
        "state_bytes": int(state),
        "decode_ms_per_token": decode_bytes / (target["bandwidth_gbs"] * 1e9) * 1e3,
        "prefill_flops": int(prefill_flops),
        "prefill_ms": prefill_flops * per_flop / 1e12 * 1e3,
        "weights_bytes": int(weights + head),
    }
