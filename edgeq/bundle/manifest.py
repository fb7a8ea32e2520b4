"""bundle.json: what a bundle is and the sha256 of every file in it; `edgeq verify` checks it.

A bundle is closed: regular files and the folders that hold them, each file listed in
bundle.json, no symbolic links, nothing else. The hashes catch damage, not an attacker:
`edgeq engine` runs the bundle's build_plugins.sh, so a bundle is code its user trusts."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath

from ..bundle_files import MANIFEST, PLUGIN_LIBRARY
from ..errors import EdgeqError
from ..jsonfile import read_json
from ..output import write_inside

FORMAT = "edgeq-bundle/4"  # /2: bundle.json hashes itself; /3: the graph takes logits_at; /4: quant.json, no weights besides the graph
AGAIN = "build or copy the bundle again"
# the fields edgeq reads, and the type each must have
SHAPE = {"format": str, "sha256": str, "files": dict, "target": dict, "plugins": dict,
         "engine": dict, "model": dict}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """(files, folders) under root, as relative names; a link or a special file is an error.
    A loop, not recursion: folders may nest deeper than Python's stack."""
    files, folders, todo = [], [], [PurePosixPath()]
    while todo:
        rel = todo.pop()
        with os.scandir(root / rel) as it:
            for e in it:
                name = rel / e.name
                if e.is_symlink():
                    raise EdgeqError(f"{root}: {name} is a symbolic link; a bundle holds only "
                                     f"regular files and folders, {AGAIN}")
                if e.is_dir(follow_symlinks=False):
                    folders.append(str(name))
                    todo.append(name)
                elif e.is_file(follow_symlinks=False):
                    files.append(str(name))
                else:
                    raise EdgeqError(f"{root}: {name} is not a regular file; {AGAIN}")
    return sorted(files), sorted(folders)


def file_hashes(root: Path) -> dict[str, str]:
    return {name: sha256(root / name) for name in _walk(root)[0] if name != MANIFEST}


def _digest(manifest: dict) -> str:
    """The sha256 of the manifest's own fields: an edited bundle.json shows."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write(root: Path, manifest: dict) -> None:
    manifest = {"format": FORMAT, **manifest, "files": file_hashes(root)}
    manifest["sha256"] = _digest(manifest)
    write_inside(root, MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def check_shape(manifest, what: str) -> dict:
    """The manifest, if it has the fields edgeq reads, each of its type."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EdgeqError(f"{what}: not an {FORMAT} manifest; build the bundle again with this "
                         "edgeq")
    for key, kind in SHAPE.items():
        if not isinstance(manifest.get(key), kind):
            got = "missing" if key not in manifest else f"a {type(manifest[key]).__name__}"
            want = "an object" if kind is dict else "a string"
            raise EdgeqError(f"{what}: `{key}` is {got}, not {want}; {AGAIN}")
    for name, digest in manifest["files"].items():
        parts = PurePosixPath(name).parts
        if (not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest)
                or name.startswith("/") or ".." in parts or str(PurePosixPath(name)) != name):
            raise EdgeqError(f"{what}: `files` has {name[:80]!r}: {str(digest)[:80]!r}, not a "
                             f"relative path and a sha256; {AGAIN}")
    target = manifest["target"]
    if not isinstance(target.get("name"), str) or type(target.get("sm")) is not int:
        raise EdgeqError(f"{what}: `target` lacks its name or sm; {AGAIN}")
    if not isinstance(manifest["plugins"].get("mode"), str):
        raise EdgeqError(f"{what}: `plugins` lacks its mode; {AGAIN}")
    if not isinstance(manifest["model"].get("config"), dict):
        raise EdgeqError(f"{what}: `model` lacks its config; {AGAIN}")
    return manifest


def read(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if path.is_symlink():
        raise EdgeqError(f"{path} is a symbolic link; {AGAIN}")
    if not path.exists():
        raise EdgeqError(f"{root}: no {MANIFEST}; give a folder made by `edgeq build`")
    manifest = check_shape(read_json(path), str(path))
    if manifest["sha256"] != _digest(manifest):
        raise EdgeqError(f"{path}: edited or damaged (its sha256 does not match); copy or build "
                         "the bundle again")
    return manifest


def verify(root: Path) -> dict:
    """The manifest, if every file's hash matches and nothing is missing or extra (but the
    plugin library that a sources bundle's build script adds on the device)."""
    root = Path(root)
    manifest = read(root)
    files, folders = _walk(root)
    want = manifest["files"]
    later = PLUGIN_LIBRARY if manifest["plugins"]["mode"] == "sources" else None
    have = set(files) - {MANIFEST}
    listed = set(want) | ({later} & have)
    for name in folders:  # a folder holds a listed file (or the built library), else it is extra
        if not any(f.startswith(name + "/") for f in listed):
            raise EdgeqError(f"{root}: {name}/ is not part of the bundle; remove it")
    for name in sorted(set(want) | have):
        if name not in have:
            raise EdgeqError(f"{root}: {name} is missing; copy the whole bundle again")
        if name == later and name not in want:
            continue
        if name not in want:
            raise EdgeqError(f"{root}: {name} is not part of the bundle; remove it")
        if sha256(root / name) != want[name]:
            raise EdgeqError(f"{root}: {name} does not match its sha256; copy the bundle again")
    return manifest
