"""edgeq's own Mamba-1 config, read from a transformers (-hf) or a state-spaces config.json."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import EdgeqError


@dataclass(frozen=True)
class MambaConfig:
    d_model: int
    n_layer: int
    vocab_size: int  # rows of the embedding (padded)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0  # 0: ceil(d_model / 16)
    conv_bias: bool = True
    bias: bool = False  # in_proj / out_proj bias
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    layout: str = "hf"  # checkpoint key layout: "hf" or "state-spaces"

    def __post_init__(self):
        if self.dt_rank == 0:
            object.__setattr__(self, "dt_rank", math.ceil(self.d_model / 16))

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MambaConfig":
        return cls(**d)


def _pad(n: int, multiple: int) -> int:
    return n if multiple <= 1 else -(-n // multiple) * multiple


def _refuse(what: str):
    raise EdgeqError(f"{what} is not supported yet: edgeq loads Mamba-1 models "
                     "(MambaForCausalLM or state-spaces Mamba); Mamba-2 support is planned")


def parse_config(raw: dict, source: str) -> MambaConfig:
    """Recognise the architecture of a config.json and map it to MambaConfig."""
    model_type = raw.get("model_type")
    archs = raw.get("architectures") or []
    if model_type == "mamba" or "MambaForCausalLM" in archs:
        if raw.get("hidden_act", "silu") != "silu":
            raise EdgeqError(f"{source}: hidden_act {raw['hidden_act']!r} is not supported; "
                             "edgeq implements Mamba's SiLU")
        rank = raw.get("time_step_rank", "auto")
        return MambaConfig(
            d_model=raw["hidden_size"], n_layer=raw["num_hidden_layers"],
            vocab_size=raw["vocab_size"], d_state=raw.get("state_size", 16),
            d_conv=raw.get("conv_kernel", 4), expand=raw.get("expand", 2),
            dt_rank=0 if rank == "auto" else int(rank),
            conv_bias=raw.get("use_conv_bias", True), bias=raw.get("use_bias", False),
            norm_eps=raw.get("layer_norm_epsilon", 1e-5),
            tie_embeddings=raw.get("tie_word_embeddings", True), layout="hf")
    if model_type or archs:
        _refuse(f"{source}: architecture {model_type or archs[0]!r}")
    if "d_model" in raw and "n_layer" in raw:  # state-spaces (mamba_ssm) layout
        ssm = raw.get("ssm_cfg") or {}
        if ssm.get("layer", "Mamba1") != "Mamba1":
            _refuse(f"{source}: state-spaces layer {ssm['layer']!r}")
        if raw.get("attn_layer_idx") or raw.get("d_intermediate", 0):
            _refuse(f"{source}: a hybrid (attention or MLP) state-spaces model")
        if not raw.get("rms_norm", True):
            _refuse(f"{source}: a LayerNorm (rms_norm=false) state-spaces model")
        return MambaConfig(
            d_model=raw["d_model"], n_layer=raw["n_layer"],
            vocab_size=_pad(raw["vocab_size"], raw.get("pad_vocab_size_multiple", 8)),
            d_state=ssm.get("d_state", 16), d_conv=ssm.get("d_conv", 4),
            expand=ssm.get("expand", 2),
            dt_rank=0 if ssm.get("dt_rank", "auto") == "auto" else int(ssm["dt_rank"]),
            conv_bias=ssm.get("conv_bias", True), bias=ssm.get("bias", False),
            norm_eps=raw.get("norm_epsilon", 1e-5),
            tie_embeddings=raw.get("tie_embeddings", True), layout="state-spaces")
    raise EdgeqError(f"{source}: not a Mamba config (no model_type and no d_model/n_layer); "
                     "point edgeq at a Mamba checkpoint folder")


def read_config(folder: Path) -> MambaConfig:
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeqError(f"{folder}: no config.json; a model folder needs config.json and "
                         "weights (model.safetensors or pytorch_model.bin)") from None
    except (OSError, ValueError) as e:
        raise EdgeqError(f"{path}: unreadable ({e}); restore the file from the checkpoint") from None
    try:
        return parse_config(raw, str(path))
    except (KeyError, TypeError, ValueError) as e:
        raise EdgeqError(f"{path}: malformed Mamba config ({type(e).__name__}: {e}); "
                         "restore config.json from the checkpoint") from None
