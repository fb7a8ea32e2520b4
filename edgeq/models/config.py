"""edgeq's own Mamba config (Mamba-1 and Mamba-2), read from a transformers (-hf) or a
state-spaces config.json."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..bundle_files import GRAPH
from ..errors import EdgeqError
from ..jsonfile import read_json

# Upper bounds of the dims, far above any Mamba (Mamba2-8B: d_model 4096, 56 layers, vocab 256k)
# and low enough that every size computed from them fits an int64 (torch refuses larger
# storage; 2**16 x expand 16 x 2**16 rows of in_proj: 2**37 elements)
LIMITS = {"d_model": 1 << 16, "n_layer": 1 << 12, "vocab_size": 1 << 22, "d_state": 1 << 12,
          "d_conv": 64, "expand": 16, "headdim": 1 << 12, "ngroups": 1 << 12,
          "chunk_size": 1 << 16, "dt_rank": 1 << 16}


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
    arch: str = "mamba1"  # or "mamba2"
    headdim: int = 64  # Mamba-2: channels per head
    ngroups: int = 1  # Mamba-2: groups of B/C (and of the gated norm)
    chunk_size: int = 256  # Mamba-2: SSD chunk length of the checkpoint (prefill kernels)

    def __post_init__(self):
        for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "headdim",
                     "ngroups", "chunk_size", "dt_rank"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (name != "dt_rank"):
                raise ValueError(f"{name} {v!r} is not a positive integer")
            if v > LIMITS[name]:
                raise ValueError(f"{name} {v} is more than edgeq's limit of {LIMITS[name]}")
        for name in ("conv_bias", "bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} {getattr(self, name)!r} is not true or false")
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) \
                or not 0 < self.norm_eps < 1:
            raise ValueError(f"norm epsilon {self.norm_eps!r} is not a number in (0, 1)")
        if self.arch not in ("mamba1", "mamba2") or self.layout not in ("hf", "state-spaces"):
            raise ValueError(f"arch {self.arch!r} / layout {self.layout!r} unknown")
        if self.dt_rank == 0:
            object.__setattr__(self, "dt_rank", math.ceil(self.d_model / 16))

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim if self.arch == "mamba2" else self.d_inner

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv: x for Mamba-1, x, B and C for Mamba-2."""
        return self.d_inner + (2 * self.ngroups * self.d_state if self.arch == "mamba2" else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MambaConfig":
        return cls(**d)


def _pad(n: int, multiple: int) -> int:
    return n if multiple <= 1 else -(-n // multiple) * multiple


def _refuse(what: str):
    raise EdgeqError(f"{what} is not supported: edgeq loads Mamba-1 and Mamba-2 models "
                     "(MambaForCausalLM, Mamba2ForCausalLM or state-spaces Mamba/Mamba2)")


def _number(v) -> float:
    # transformers writes infinities as {"__float__": "Infinity"}
    return float(v["__float__"]) if isinstance(v, dict) and "__float__" in v else float(v)


def _check_mamba2(cfg: MambaConfig, source: str, dt_limit, act: str) -> MambaConfig:
    if act != "silu":
        raise EdgeqError(f"{source}: hidden_act {act!r} is not supported; edgeq implements SiLU")
    if tuple(map(_number, dt_limit)) != (0.0, float("inf")):
        _refuse(f"{source}: a Mamba-2 time_step_limit {tuple(map(_number, dt_limit))}")
    if cfg.d_inner % cfg.headdim or cfg.nheads % cfg.ngroups:
        raise EdgeqError(f"{source}: d_inner {cfg.d_inner} is not heads x head_dim with heads a "
                         f"multiple of n_groups {cfg.ngroups}; the config is inconsistent")
    return cfg


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
    if model_type == "mamba2" or "Mamba2ForCausalLM" in archs:
        cfg = MambaConfig(
            arch="mamba2", d_model=raw["hidden_size"], n_layer=raw["num_hidden_layers"],
            vocab_size=raw["vocab_size"], d_state=raw.get("state_size", 128),
            d_conv=raw.get("conv_kernel", 4), expand=raw.get("expand", 2),
            headdim=raw.get("head_dim", 64), ngroups=raw.get("n_groups", 8),
            chunk_size=raw.get("chunk_size", 256), conv_bias=raw.get("use_conv_bias", True),
            bias=raw.get("use_bias", False), norm_eps=raw.get("layer_norm_epsilon", 1e-5),
            tie_embeddings=raw.get("tie_word_embeddings", False), layout="hf")
        if raw.get("num_heads", cfg.nheads) != cfg.nheads:
            raise EdgeqError(f"{source}: num_heads {raw['num_heads']} x head_dim {cfg.headdim} "
                             f"!= expand x hidden_size {cfg.d_inner}; the config is inconsistent")
        return _check_mamba2(cfg, source, raw.get("time_step_limit", (0.0, float("inf"))),
                             raw.get("hidden_act", "silu"))
    if model_type or archs:
        _refuse(f"{source}: architecture {model_type or archs[0]!r}")
    if "d_model" in raw and "n_layer" in raw:  # state-spaces (mamba_ssm) layout
        ssm = raw.get("ssm_cfg") or {}
        layer = ssm.get("layer", "Mamba1")
        if layer not in ("Mamba1", "Mamba2"):
            _refuse(f"{source}: state-spaces layer {layer!r}")
        if raw.get("attn_layer_idx") or raw.get("d_intermediate", 0):
            _refuse(f"{source}: a hybrid (attention or MLP) state-spaces model")
        if not raw.get("rms_norm", True):
            _refuse(f"{source}: a LayerNorm (rms_norm=false) state-spaces model")
        if layer == "Mamba2":
            if not ssm.get("rmsnorm", True) or ssm.get("norm_before_gate", False) \
                    or ssm.get("D_has_hdim", False) or ssm.get("d_ssm") not in (None, ssm.get("expand", 2) * raw["d_model"]):
                _refuse(f"{source}: a Mamba2 layer with rmsnorm/norm_before_gate/D_has_hdim/d_ssm "
                        "other than mamba_ssm's defaults")
            cfg = MambaConfig(
                arch="mamba2", d_model=raw["d_model"], n_layer=raw["n_layer"],
                vocab_size=_pad(raw["vocab_size"], raw.get("pad_vocab_size_multiple", 8)),
                d_state=ssm.get("d_state", 128), d_conv=ssm.get("d_conv", 4),
                expand=ssm.get("expand", 2), headdim=ssm.get("headdim", 64),
                ngroups=ssm.get("ngroups", 1), chunk_size=ssm.get("chunk_size", 256),
                conv_bias=ssm.get("conv_bias", True), bias=ssm.get("bias", False),
                norm_eps=raw.get("norm_epsilon", 1e-5),
                tie_embeddings=raw.get("tie_embeddings", True), layout="state-spaces")
            return _check_mamba2(cfg, source, ssm.get("dt_limit", (0.0, float("inf"))), "silu")
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
    if not path.exists():
        if (folder / GRAPH).is_file():  # a bundle (or a folder with an export)
            raise EdgeqError(f"{folder}: no config.json; for a bundle give {folder}/{GRAPH} "
                             "or run `edgeq verify` on it")
        raise EdgeqError(f"{folder}: no config.json; a model folder needs config.json and "
                         "weights (model.safetensors or pytorch_model.bin)")
    raw = read_json(path)
    try:
        if not isinstance(raw, dict) or not isinstance(raw.get("ssm_cfg") or {}, dict):
            raise TypeError("not a JSON object of settings")
        return parse_config(raw, str(path))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise EdgeqError(f"{path}: malformed Mamba config ({type(e).__name__}: {e}); "
                         "restore config.json from the checkpoint") from None
