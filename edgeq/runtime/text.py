"""Tokenizers: from a model folder (tokenizer.json) or from an exported graph's metadata."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import EdgeqError

META_KEY = "edgeq.tokenizer"


def from_folder(folder: Path):
    from tokenizers import Tokenizer
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise EdgeqError(f"{path}: unreadable tokenizer ({e}); restore it from the checkpoint") from None


def from_json(text: str):
    from tokenizers import Tokenizer
    return Tokenizer.from_str(text)


def eos_id(tok) -> int | None:
    for name in ("<|endoftext|>", "</s>", "<eos>"):
        i = tok.token_to_id(name)
        if i is not None:
            return i
    return None


class Streamer:
    """Prints the text of generated ids as they come; holds back incomplete UTF-8 sequences."""

    def __init__(self, tok, out=sys.stdout):
        self.tok, self.out, self.ids, self.shown = tok, out, [], 0

    def __call__(self, token: int) -> None:
        self.ids.append(token)
        text = self.tok.decode(self.ids)
        if not text.endswith("\ufffd"):
            self.out.write(text[self.shown:])
            self.out.flush()
            self.shown = len(text)
