"""The op table, docs/ops.md, the C header and the built library name the same ops."""
import ctypes
import re

import onnx
import pytest

from edgeq.ops.table import OPS
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
        assert p.dtype in ("", "int8", "float"), p.name


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_c_abi_declares_and_exports_every_op(op):
    header = (ROOT / "plugins" / "common" / "edgeq_kernels.h").read_text()
    assert re.search(rf"EDGEQ_API int {op.c_symbol}\(", header)
    assert isinstance(getattr(kernels.library(), op.c_symbol), ctypes._CFuncPtr)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_c_abi_arguments_follow_the_table(op):
    # inputs, outputs, shape ints, attributes in table order, stream (edgeq_kernels.h): what
    # the TensorRT harness (tests/support/plugin_harness.py) relies on to turn a kernel call into
    # a plugin
    args = kernels._ARGTYPES[op.c_symbol]
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
