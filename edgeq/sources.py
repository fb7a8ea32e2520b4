"""What a command's MODEL argument names: a checkpoint folder or hub id, a quantized folder
(quant.json), or an exported .onnx graph; and the backend that runs it."""
from __future__ import annotations

import os
from pathlib import Path

from .bundle_files import GRAPH, MANIFEST
from .errors import EdgeqError
from .hub import resolve
from .models.loader import find_tokenizer, load_model
from .quant import folder as quant_folder
from .runtime.backends import OrtBackend, TorchBackend
from .tokenizer import META_KEY, checked, from_json


def load_torch(source: str):
    """(model, folder): a MambaLM, or a QuantMambaLM for a quantized folder."""
    folder = resolve(source)
    if quant_folder.is_quantized(folder):
        return quant_folder.load(folder), folder
    return load_model(str(folder))


def bundle_root(source: str) -> Path | None:
    """The bundle that `source` is (its folder) or is in (its graph), by its bundle.json."""
    path = Path(source)
    root = path if path.is_dir() else path.parent if source.endswith(".onnx") else None
    return root if root is not None and os.path.lexists(root / MANIFEST) else None


def open_backend(source: str, backend: str | None = None, tokenizer: str | None = None):
    """A backend and its tokenizer (or None) for any MODEL argument; `tokenizer` (a file, folder
    or hub id) overrides the model's. A bundle, or a graph in one, runs once the bundle verifies."""
    root = bundle_root(source)
    if root is not None:
        from .bundle import manifest
        manifest.verify(root)
        if Path(source).is_dir():
            if backend not in (None, "ort"):
                raise EdgeqError(f"{source}: a bundle holds a graph, not a torch model; give the "
                                 "checkpoint or the folder of `edgeq quantize` for --backend torch")
            source = str(root / GRAPH)
    if source.endswith(".onnx"):
        if backend not in (None, "ort"):
            raise EdgeqError(f"{source}: an ONNX graph runs on --backend ort; give the model "
                             f"folder for --backend {backend}")
        ob = OrtBackend(source)
        tok = ob.metadata.get(META_KEY) if not tokenizer else None
        if tok is not None:
            tok = checked(tok, f"{source}: metadata {META_KEY}", ob.config.vocab_size)
        return ob, from_json(tok or find_tokenizer(Path(source).parent, tokenizer,
                                              ob.config.vocab_size))
    model, folder = load_torch(source)
    tok = from_json(find_tokenizer(folder, tokenizer, model.cfg.vocab_size))
    if backend in (None, "torch"):
        return TorchBackend(model), tok
    if backend == "ort":
        from .export.onnx_export import to_onnx
        return OrtBackend(to_onnx(model)), tok
    raise EdgeqError(f"unknown backend {backend!r}; use torch or ort")
