"""Tokenizers: read and checked from a tokenizer.json, a folder holding one or a hub id
(--tokenizer), or an exported graph's metadata; the end-of-text id; streamed decoding.
Which tokenizer a checkpoint folder uses is models.loader.find_tokenizer's to say."""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import EdgeqError
from .hub import hub_id

META_KEY = "edgeq.tokenizer"

# state-spaces checkpoints ship no tokenizer: their models were trained with GPT-NeoX-20B's
# (50277 tokens, the embedding padded to a multiple of 8 or 16), which mamba_ssm and
# transformers' converters load from the hub as well
NEOX, NEOX_VOCAB = "EleutherAI/gpt-neox-20b", 50277
MISSING = ("pass --tokenizer (a tokenizer.json, the folder that holds it, or a hub id such as "
           f"{NEOX})")


def read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeqError(f"{path}: unreadable tokenizer ({type(e).__name__}); restore it from the "
                         "checkpoint") from None


def checked(text: str, what: str, vocab_size: int | None = None) -> str:
    """`text` if it is a tokenizer of at most `vocab_size` tokens (its ids index the
    embedding); `what` names where it came from."""
    try:
        n = from_json(text).get_vocab_size(with_added_tokens=True)
    except Exception as e:  # the tokenizers library raises plain Exceptions
        raise EdgeqError(f"{what}: unreadable tokenizer ({type(e).__name__}); restore it from the "
                         "checkpoint") from None
    if vocab_size is not None and n > vocab_size:
        raise EdgeqError(f"{what}: {n} tokens, more than the model's {vocab_size}; give this "
                         "model's tokenizer")
    return text


def from_hub(repo: str) -> str:
    try:
        from huggingface_hub import hf_hub_download
        path = Path(hf_hub_download(repo, "tokenizer.json"))
    except Exception as e:  # network, auth, a repo without tokenizer.json
        raise EdgeqError(f"{repo}: could not download its tokenizer.json ({type(e).__name__}); "
                         "check the id and your network, or pass a local tokenizer.json") from None
    return read(path)


def from_name(name: str) -> str:
    """The tokenizer.json text that --tokenizer NAME gives: a file, its folder or a hub id."""
    path = Path(name)
    if path.is_file():
        return read(path)
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise EdgeqError(f"{path}: holds no tokenizer.json; give the file or its folder")
        return read(path / "tokenizer.json")
    if not hub_id(name):
        raise EdgeqError(f"--tokenizer {name}: no such file or folder, and not a hub id (owner/name)")
    return from_hub(name)


def from_json(text: str | None):
    if text is None:
        return None
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
