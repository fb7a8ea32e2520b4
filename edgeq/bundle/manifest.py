"""bundle.json: what a bundle is and the sha256 of every file in it; `edgeq verify` checks it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import EdgeqError
from .plugins import LIB

NAME = "bundle.json"
FORMAT = "edgeq-bundle/4"  # /2: bundle.json hashes itself; /3: the graph takes logits_at; /4: quant.json, no weights besides the graph


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != NAME}


def _digest(manifest: dict) -> str:
    """The sha256 of the manifest's own fields: an edited bundle.json shows."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write(root: Path, manifest: dict) -> None:
    manifest = {"format": FORMAT, **manifest, "files": file_hashes(root)}
    manifest["sha256"] = _digest(manifest)
    (root / NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read(root: Path) -> dict:
    path = Path(root) / NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeqError(f"{root}: no {NAME}; give a folder made by `edgeq build`") from None
    except (OSError, ValueError) as e:
        raise EdgeqError(f"{path}: unreadable ({e}); build the bundle again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EdgeqError(f"{path}: not an {FORMAT} manifest; build the bundle again with this "
                         "edgeq")
    if manifest.get("sha256") != _digest(manifest):
        raise EdgeqError(f"{path}: edited or damaged (its sha256 does not match); copy or build "
                         "the bundle again")
    return manifest


def verify(root: Path) -> dict:
    """The manifest, if every file's hash matches and no file is missing or extra (but the
    plugin library that a sources bundle's build script adds on the device)."""
    manifest = read(root)
    have = file_hashes(Path(root))
    want = manifest["files"]
    later = f"plugins/{LIB}" if manifest.get("plugins", {}).get("mode") == "sources" else None
    for name in sorted(set(want) | set(have)):
        if name not in have:
            raise EdgeqError(f"{root}: {name} is missing; copy the whole bundle again")
        if name == later and name not in want:
            continue
        if name not in want:
            raise EdgeqError(f"{root}: {name} is not part of the bundle; remove it")
        if have[name] != want[name]:
            raise EdgeqError(f"{root}: {name} does not match its sha256; copy the bundle again")
    return manifest
