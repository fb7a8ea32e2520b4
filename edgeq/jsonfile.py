"""Reading JSON that a user or another program wrote: every failure is one EdgeqError line."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import EdgeqError

MAX_BYTES = 64 << 20  # far above any config, quant.json or bundle.json edgeq writes


def parse_json(text: str | bytes, what: str):
    """`text` parsed; `what` names it in the error (a path, or 'the ONNX metadata edgeq.config')."""
    if len(text) > MAX_BYTES:
        raise EdgeqError(f"{what}: {len(text)} bytes of JSON, more than the {MAX_BYTES} allowed")
    try:
        return json.loads(text)
    except RecursionError:
        raise EdgeqError(f"{what}: JSON nested too deep; give the file edgeq or the model wrote") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise EdgeqError(f"{what}: not valid JSON ({e})") from None


def read_json(path: Path, what: str | None = None):
    """The JSON file at `path`; a missing, unreadable, oversized or malformed file is one line."""
    what = what or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise EdgeqError(f"{what}: {size} bytes, more than the {MAX_BYTES} a JSON file may have")
        return parse_json(path.read_bytes(), what)
    except OSError as e:
        raise EdgeqError(f"{what}: cannot read ({e.strerror or e})") from None
