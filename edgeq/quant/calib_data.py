"""Calibration data: a text file, a folder of text files, a tokenized .npy array, or a
`datasets` id (online only), cut into N windows of L tokens chosen by a fixed seed."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..errors import EdgeqError


def _tokenize(text: str, tokenizer, source: str) -> np.ndarray:
    if tokenizer is None:
        from ..tokenizer import MISSING
        raise EdgeqError(f"{source}: text needs the model's tokenizer; {MISSING}, or a tokenized "
                         ".npy array instead")
    return np.array(tokenizer.encode(text).ids, dtype=np.int64)


# control characters but tab, newline, carriage return, form feed; and private-use ones
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ue000-\uf8ff]")
MAX_NOT_TEXT = 0.1  # share of such characters; text has next to none, binary data many


def _text(path: Path) -> str:
    """The file's text: UTF-8, and text rather than binary data (which would calibrate the
    scales on what the model never sees)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgeqError(f"{path}: not UTF-8 text (byte {e.start}); give UTF-8 text, or a "
                         "tokenized .npy array") from None
    bad = len(_NOT_TEXT.findall(text))
    if bad > MAX_NOT_TEXT * len(text):
        raise EdgeqError(f"{path}: {100 * bad / len(text):.0f} % of its characters are control "
                         "characters: binary data, not text; give a text file")
    return text


def load_tokens(data: str, tokenizer) -> np.ndarray:
    if not data.strip():
        raise EdgeqError("--calib is empty; give a text file, a folder of .txt files or a "
                         "tokenized .npy")
    path = Path(data)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise EdgeqError(f"{data}: no .txt files in the folder; give text files or a .npy array")
        return _tokenize("\n".join(map(_text, files)), tokenizer, data)
    if path.is_file():
        if path.suffix == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise EdgeqError(f"{data}: unreadable .npy ({e})") from None
            if not np.issubdtype(arr.dtype, np.integer):
                raise EdgeqError(f"{data}: holds {arr.dtype}, not token ids; save integer ids")
            return arr.astype(np.int64).ravel()
        return _tokenize(_text(path), tokenizer, data)
    name, _, subset = data.partition(":")  # wikitext:wikitext-2-raw-v1
    if "/" in name or name.isidentifier():
        try:
            import datasets
        except ImportError:
            raise EdgeqError(f"{data}: no such file or folder (and the `datasets` package for "
                             "hub data sets is not installed)") from None
        try:
            ds = datasets.load_dataset(name, subset or None, split="train", streaming=True)
            text = "\n".join(row["text"] for _, row in zip(range(20000), ds))
        except Exception as e:
            raise EdgeqError(f"{data}: cannot load the data set ({type(e).__name__}); give a "
                             "local text file") from None
        return _tokenize(text, tokenizer, data)
    raise EdgeqError(f"{data}: no such file or folder; give a text file, a folder of .txt "
                     "files or a tokenized .npy array")


def check(tokens: np.ndarray, length: int, vocab_size: int) -> None:
    """At least one window of `length` tokens, all in the vocabulary."""
    if len(tokens) < length:
        raise EdgeqError(f"calibration data has {len(tokens)} tokens, fewer than one window of "
                         f"{length}; give more data or a smaller --seq-len")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise EdgeqError(f"calibration tokens fall outside the vocabulary (0..{vocab_size - 1}); "
                         "the data was tokenized for another model")


def windows(tokens: np.ndarray, n: int, length: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    """n windows of `length` tokens at starts drawn with a fixed seed: [n, length] int64."""
    check(tokens, length, vocab_size)
    starts = np.random.default_rng(seed).integers(0, len(tokens) - length + 1, n)
    return torch.from_numpy(np.stack([tokens[s:s + length] for s in starts]))
