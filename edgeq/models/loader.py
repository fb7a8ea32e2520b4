"""Load a Mamba-1 or Mamba-2 checkpoint (local folder or hub id, -hf or state-spaces layout)
into MambaLM, and find its tokenizer."""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import torch

from ..errors import EdgeqError
from ..hub import resolve
from ..jsonfile import read_json
from ..tokenizer import NEOX, NEOX_VOCAB, checked, from_hub, from_name, read
from .config import MambaConfig, read_config
from .mamba import MambaLM

def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise EdgeqError(f"{path}: cannot read weights ({type(e).__name__}); the file is corrupt "
                         "or truncated, download it again") from None
    if not isinstance(sd, dict):
        raise EdgeqError(f"{path}: holds no state dict; give a checkpoint saved with save_pretrained")
    return sd


def _shards(folder: Path, index: str) -> list[str]:
    """The shard files an index names: plain relative paths inside the folder (a hub snapshot's
    files are links into its cache, so the names are checked, not where they lead)."""
    raw = read_json(folder / index)
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) and f
                                                   for f in weight_map.values()):
        raise EdgeqError(f"{folder / index}: weight_map is not an object of tensor name -> shard "
                         "file; download the index again")
    files = sorted(set(weight_map.values()))
    for f in files:
        name = PurePosixPath(f)
        if name.is_absolute() or ".." in name.parts or "\\" in f:
            raise EdgeqError(f"{folder / index}: names shard {f!r} outside the model folder; "
                             "refused: download the index again")
    return files


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).exists():
            sd = {}
            for f in _shards(folder, index):
                if not (folder / f).is_file():
                    raise EdgeqError(f"{folder / f}: missing shard named in {index}; download it")
                sd.update(_load_file(folder / f))
            return sd
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            return _load_file(folder / name)
    raise EdgeqError(f"{folder}: no weights (model.safetensors or pytorch_model.bin); "
                     "copy the checkpoint's weight files into the folder")


def _rename(key: str) -> str:
    # state-spaces keys use backbone.embedding.; transformers renames it the same way on load
    return key.replace("backbone.embedding.", "backbone.embeddings.")


def check_values(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Every weight floating point and finite: int or bool weights, NaN or inf would give
    garbage (or nothing) that looks like a result."""
    for k, v in tensors.items():
        if not v.is_floating_point():
            raise EdgeqError(f"{source}: {k} is {str(v.dtype).removeprefix('torch.')}, not floating "
                             "point; the weights are damaged or not this model's")
        if not torch.isfinite(v).all():
            raise EdgeqError(f"{source}: {k} holds NaN or infinite values; the weights are "
                             "damaged (or the training diverged): use an intact checkpoint")


def load_state_dict(model: MambaLM, sd: dict[str, torch.Tensor], source: str) -> None:
    sd = {_rename(k): v for k, v in sd.items()}
    expected = model.state_dict()
    if model.cfg.tie_embeddings:
        expected.pop("lm_head.weight")
        sd.pop("lm_head.weight", None)  # some tied checkpoints store a copy; the tie wins
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise EdgeqError(f"{source}: weights lack {missing[0]}" +
                         (f" and {len(missing) - 1} more" if len(missing) > 1 else "") +
                         "; the weights do not belong to this config.json")
    unexpected = sorted(set(sd) - set(expected))
    if unexpected:
        raise EdgeqError(f"{source}: unexpected tensor {unexpected[0]}; the weights do not "
                         "belong to this config.json (or the architecture differs)")
    for k, want in expected.items():
        if sd[k].shape != want.shape:
            raise EdgeqError(f"{source}: {k} has shape {tuple(sd[k].shape)} but config.json "
                             f"implies {tuple(want.shape)}; the config and weights do not match")
    check_values(sd, source)
    # converted one tensor at a time and assigned, not copied: the model (built on the meta
    # device) then holds the only fp32 copy (Mamba2-8B: 32 GB)
    fp32 = {}
    for k in list(sd):
        fp32[k] = sd.pop(k).float().contiguous()
    model.load_state_dict(fp32, strict=False, assign=True)
    model.tie()


def load_model(model: str, ops: str = "custom") -> tuple[MambaLM, Path]:
    """Returns the fp32 model in eval mode and the folder it came from."""
    folder = resolve(model)
    if (folder / "quant.json").exists():  # quant.folder.is_quantized (quant imports models)
        raise EdgeqError(f"{model}: is a quantized folder; give the fp checkpoint it came from")
    cfg = read_config(folder)
    with torch.device("meta"):  # no memory and no random init: the checkpoint sets every weight
        lm = MambaLM(cfg, ops)
    load_state_dict(lm, read_weights(folder), str(folder))
    return lm.eval(), folder


def find_tokenizer(folder: Path, given: str | None = None,
                   vocab_size: int | None = None) -> str | None:
    """The tokenizer.json text for a model folder: `given` (a file, a folder or a hub id), else
    the folder's own, else GPT-NeoX-20B's for a state-spaces checkpoint of its vocabulary (None
    where it cannot be downloaded: the callers that need one say so), else None; each checked
    to parse and to fit the model's `vocab_size`."""
    if given:
        return checked(from_name(given), f"--tokenizer {given}", vocab_size)
    if (folder / "tokenizer.json").exists():
        return checked(read(folder / "tokenizer.json"), str(folder / "tokenizer.json"), vocab_size)
    try:  # best effort: a folder without a readable state-spaces config has no fallback
        cfg = read_config(folder)
        # another vocabulary (Mamba2-8B's 256k, say) has another tokenizer: never guess one
        neox = cfg.layout == "state-spaces" and NEOX_VOCAB <= cfg.vocab_size < NEOX_VOCAB + 64
        return checked(from_hub(NEOX), NEOX, cfg.vocab_size) if neox else None
    except EdgeqError:
        return None


def write_config(cfg: MambaConfig, folder: Path) -> None:
    """config.json in the transformers -hf layout (MambaForCausalLM or Mamba2ForCausalLM)."""
    common = {"hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layer,
              "vocab_size": cfg.vocab_size, "state_size": cfg.d_state, "conv_kernel": cfg.d_conv,
              "expand": cfg.expand, "use_conv_bias": cfg.conv_bias, "use_bias": cfg.bias,
              "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
              "hidden_act": "silu", "residual_in_fp32": True}
    if cfg.arch == "mamba2":
        hf = {"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", **common,
              "head_dim": cfg.headdim, "num_heads": cfg.nheads, "n_groups": cfg.ngroups,
              "chunk_size": cfg.chunk_size}
    else:
        hf = {"architectures": ["MambaForCausalLM"], "model_type": "mamba", **common,
              "intermediate_size": cfg.d_inner, "time_step_rank": cfg.dt_rank}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n")


def save_model(model: MambaLM, folder: Path) -> None:
    """Write config.json and model.safetensors in the transformers -hf layout."""
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        sd.pop("lm_head.weight")
    write_config(model.cfg, folder)
    save_file(sd, str(folder / "model.safetensors"))
