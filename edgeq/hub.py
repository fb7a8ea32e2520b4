"""Model folders from the Hugging Face hub: which names are hub ids, and their download."""
from __future__ import annotations

import re
from pathlib import Path

from .errors import EdgeqError

HUB_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
             "pytorch_model.bin.index.json", "tokenizer.json", "tokenizer_config.json"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_id(name: str) -> bool:
    """NAME, which names no local file or folder, is meant as a hub id: owner/name, not written
    as a path (./, /, ~, more than one slash) and with no local folder `owner`."""
    return bool(HUB_ID.match(name)) and not Path(name).parent.is_dir()


def resolve(model: str, files: list[str] = HUB_FILES) -> Path:
    """A local folder as it is; an `owner/name` hub id downloaded through huggingface_hub
    (only `files`, glob patterns)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise EdgeqError(f"{model}: is a file; give the checkpoint folder that holds config.json")
    if not hub_id(model):
        raise EdgeqError(f"{model}: no such folder (a local path, so not tried as a hub id); "
                         "check the path")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(model, allow_patterns=_one_format(model, files)))
    except Exception as e:  # network, auth, missing repo: all end the same way for the user
        raise EdgeqError(f"{model}: no local folder {model} and the hub download failed "
                         f"({type(e).__name__}); check the id and your network, or pass a "
                         "folder") from None


def _one_format(repo: str, files: list[str]) -> list[str]:
    """-hf repos often hold the weights twice, safetensors and .bin: fetch the safetensors only."""
    try:
        from huggingface_hub import HfApi
        names = HfApi().list_repo_files(repo)
    except Exception:  # offline with a cached snapshot, or no such repo: the download decides
        return files
    if any(n.endswith(".safetensors") for n in names):
        return [f for f in files if not f.startswith("pytorch_model")]
    return files
