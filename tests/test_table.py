"""The op table, docs/ops.md, the C header and the built library name the same ops."""
import ctypes
import io
import re
import subprocess
import tokenize

import onnx
import pytest

from edgeq.ops.table import DTYPES, OPS
from edgeq.runtime import kernels

from conftest import ROOT

DOC = (ROOT / "docs" / "ops.md").read_text()
ALLOWED_ATTR_TYPES = {"INT", "INTS", "FLOAT", "FLOATS", "STRING"}


def doc_section(name: str) -> str:
    m = re.search(rf"^## {name} \(v(\d+)\)\n(.*?)(?=^## )", DOC, re.S | re.M)
    assert m, f"docs/ops.md has no section for {name}"
    return m.group(1), m.group(2)


def rows(section: str, header: str) -> list[list[str]]:
    table = re.search(rf"^\| {header} \|.*?\n\|[-|]+\|\n((?:\|.*\n)+)", section, re.M)
    assert table, f"no '{header}' table"
    return [[c.strip() for c in row.strip("|").split("|")] for row in table.group(1).splitlines()]


def first_column(section: str, header: str) -> list[str]:
    return [re.match(r"`(\w+)`", row[0]).group(1) for row in rows(section, header)]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_doc_matches_table(op):
    version, section = doc_section(op.name)
    assert version == op.version
    assert f"`torch.ops.{op.torch_name.replace('::', '.')}`" in section
    assert f"`{op.c_symbol}`" in section
    assert first_column(section, "input") == [p.name for p in op.inputs]
    assert first_column(section, "output") == [p.name for p in op.outputs]
    assert first_column(section, "attribute") == [a.name for a in op.attrs]
    assert [row[1] for row in rows(section, "attribute")] == [a.type for a in op.attrs]
    for p in op.inputs:
        assert (f"`{p.name}` (optional)" in section) == p.optional


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_floats_scales_name_the_axis_they_run_along(op):
    for a in op.attrs:
        assert bool(a.per) == (a.type == "FLOATS"), a.name
        if a.per:
            assert a.per[0] in [p.name for p in op.inputs] and a.default == (1.0,)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_names_are_plugin_safe(op):
    assert op.name.startswith("Edgeq") and not onnx.defs.has(op.name)  # no standard-op clash
    assert {a.type for a in op.attrs} <= ALLOWED_ATTR_TYPES
    assert op.torch_name.startswith("edgeq::")


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_outputs_take_their_shapes_from_inputs(op):
    inputs = {p.name for p in op.inputs}
    for p in op.outputs:
        assert p.like in inputs and p.last_from in inputs | {""}, p.name
    for p in op.inputs + op.outputs:
        assert p.dtype in DTYPES, p.name


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_c_abi_declares_and_exports_every_op(op):
    header = (ROOT / "plugins" / op.folder / f"{op.folder}_abi.h").read_text()  # its own folder's
    assert re.search(rf"EDGEQ_API int {op.c_symbol}\(", header)
    assert isinstance(getattr(kernels.library(), op.c_symbol), ctypes._CFuncPtr)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_c_abi_arguments_follow_the_table(op):
    # inputs, outputs, shape ints, attributes in table order, stream (edgeq_kernels.h): what
    # the TensorRT harness (tests/support/plugin_harness.py) relies on to turn a kernel call into
    # a plugin
    args = kernels.SYMBOLS[op.c_symbol]
    ports = len(op.inputs) + len(op.outputs)
    assert args[:ports] == [ctypes.c_void_p] * ports and args[-1] is ctypes.c_void_p
    by_type = {"INT": (ctypes.c_int32, ctypes.c_int64), "FLOAT": (ctypes.c_float,),
               "FLOATS": (kernels.Scales,)}
    tail = args[-1 - len(op.attrs):-1]
    assert all(t in by_type[a.type] for t, a in zip(tail, op.attrs, strict=True)), op.name
    assert set(args[ports:-1 - len(op.attrs)]) == {ctypes.c_int64}  # the shape ints


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_torch_op_arguments_follow_the_table(op):
    # the ONNX export maps the torch op's arguments onto the table's inputs, then attributes
    import torch
    import edgeq.ops.custom  # noqa: F401 - registers torch.ops.edgeq
    ns, name = op.torch_name.split("::")
    schema = getattr(getattr(torch.ops, ns), name).default._schema
    assert [a.name for a in schema.arguments] == [p.name for p in op.inputs] + \
        [a.name for a in op.attrs]


# Where an op is named. "The name" is its ONNX op_type (= TensorRT plugin name) and its C
# symbols (the fp32 or int8 one and the fp16 variant), as whole words in code: the package
# (edgeq/) and the native build (CMakeLists.txt, plugins/). Comments, docstrings and other bare
# string statements are prose and may cite any op; tests/, tools/ (benchmarks of particular
# ops), README.md, docs/ and bench/results/ are not glue either. Apart from the table and the
# files generated from it, an op may be named only in its own plugins/ folder, in
# edgeq/ops/reference.py and in docs/ops.md (not scanned: test_doc_matches_table holds it to
# the table): adding an op touches no other code (docs/adding-an-op.md).
GLUE = ("edgeq", "plugins", "CMakeLists.txt")
CODE = {".py", ".h", ".cpp", ".cu", ".cuh", ".cmake", ".txt", ".sh", ".map"}
GENERATED = "Generated by tools/gen_op_table_h.py"


def python_code(text: str) -> str:
    """The tokens of Python source that are code: no comments, no bare string statements."""
    keep, line = [], []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if not (len(line) == 1 and line[0].type == tokenize.STRING):
                keep += [t.string for t in line]
            line = []
        elif tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            line.append(tok)
    return "\n".join(keep)


def c_code(text: str, cmake: bool) -> str:
    """C, C++, CUDA or CMake source without its comments."""
    if cmake:
        return re.sub(r"#[^\n]*", "", text)
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def glue_files():
    listed = subprocess.run(["git", "ls-files", "--", *GLUE], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    for rel in listed:
        path = ROOT / rel
        if path.suffix in CODE and path.is_file() and rel != "edgeq/ops/table.py":
            text = path.read_text()
            if GENERATED not in text.split("\n", 1)[0]:
                yield rel, text


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_ops_are_named_only_in_their_own_places():
    code = {}
    for rel, text in glue_files():
        if rel.endswith(".py"):
            code[rel] = python_code(text)
        else:
            code[rel] = c_code(text, cmake=rel.endswith((".cmake", ".txt")))
    found = []
    for op in OPS:
        own = (f"plugins/{op.folder}/", "edgeq/ops/reference.py")
        for name in filter(None, (op.name, op.c_symbol, op.f16_symbol)):
            word = re.compile(rf"\b{name}\b")
            found += [f"{rel}: {name}" for rel, text in code.items()
                      if not rel.startswith(own) and word.search(text)]
    assert not found, "ops named outside their places (see docs/adding-an-op.md):\n" + \
        "\n".join(found)
