"""Imports inside edgeq/ go one way, from the bottom layer up: a module imports only from its own
layer or those below it, lazy imports inside functions included. The layers, bottom first:

errors, files and other plain utilities, GPU probing, the tokenizer and the hub -> ops -> models
-> quant -> targets -> export -> runtime -> trt -> bundle -> bench -> sources -> cli."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

LAYERS = [
    {"__init__", "errors", "jsonfile", "output", "bundle_files", "host_memory", "gpu", "hub",
     "tokenizer"},
    {"ops"}, {"models"}, {"quant"},
    {"targets"},  # device targets and their estimates: reads quant's recipes and mixed precision
    {"export"}, {"runtime"}, {"trt"}, {"bundle"}, {"bench"},
    {"sources"},  # what a command's MODEL argument names, and the backend that runs it
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
PACKAGE = ROOT / "edgeq"


def _module(path: Path) -> list[str]:
    """edgeq/trt/engine.py -> ["edgeq", "trt", "engine"]; a package's __init__.py is the package."""
    parts = ["edgeq", *path.relative_to(PACKAGE).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported(path: Path) -> list[tuple[int, list[str]]]:
    """(line, the edgeq module or name imported, as parts) of every edgeq import in PATH, lazy
    ones too."""
    module, out = _module(path), []
    package = module if path.name == "__init__.py" else module[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            base = base + (node.module.split(".") if node.module else [])
            out += [(node.lineno, base + [a.name]) for a in node.names] if not node.module \
                else [(node.lineno, base)]
    return [(line, parts) for line, parts in out if parts[0] == "edgeq"]


def _layer(parts: list[str]) -> str:
    return parts[1] if len(parts) > 1 else "__init__"


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert {_layer(_module(p)) for p in FILES} <= set(RANK), \
        "a new top-level module of edgeq/: give it a layer in LAYERS"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    here = _layer(_module(path))
    upward = [f"{path.relative_to(ROOT)}:{line} imports {'.'.join(parts)}"
              for line, parts in imported(path) if RANK[_layer(parts)] > RANK[here]]
    assert not upward, "\n".join(upward)


def test_no_module_imports_one_that_imports_it_back():
    """Within a layer too (models/mamba.py and mamba2.py share mixer.py instead)."""
    modules = {".".join(_module(p)): p for p in FILES}

    def target(parts):  # the module an import loads: the longest prefix that is one
        return next(n for k in range(len(parts), 0, -1) if (n := ".".join(parts[:k])) in modules)
    deps = {m: {target(parts) for _, parts in imported(p)} - {m} for m, p in modules.items()}

    def reaches(start, goal):
        seen, todo = {start}, [start]
        while todo:
            for n in deps[todo.pop()] - seen:
                if n == goal:
                    return True
                seen.add(n)
                todo.append(n)
        return False
    cycles = [f"{a} -> {b} -> ... -> {a}" for a in deps for b in deps[a] if b == a or reaches(b, a)]
    assert not cycles, "\n".join(cycles)


def test_imports_are_resolved():
    """The resolution above, on imports of each form."""
    engine = PACKAGE / "trt" / "engine.py"
    got = {".".join(parts) for _, parts in imported(engine)}
    assert {"edgeq.gpu", "edgeq.errors", "edgeq.trt.layers", "edgeq.ops.table"} <= got
    assert {".".join(parts) for _, parts in imported(PACKAGE / "trt" / "__init__.py")} >= \
        {"edgeq.errors", "edgeq.bundle_files"}
