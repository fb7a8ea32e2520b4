"""The launch tables of plugins/*/README.md are the launchers' (tools/launch_table.py over
tests/support/cuda_host_emu.cu's emu_edgeq_launches), and a batch-1 decode step's row kernels
fill the Orin Nano's 8 SMs (issue 22, item 7)."""
from __future__ import annotations

import ctypes
import sys

import pytest

from conftest import ROOT
from native_build import NVCC, nvcc_host, run

sys.path.insert(0, str(ROOT / "tools"))
import launch_table as lt  # noqa: E402


@pytest.fixture(scope="module")
def lib(emulation_object, tmp_path_factory):
    out = tmp_path_factory.mktemp("launches") / "libemu.so"
    run([NVCC, "-shared", *nvcc_host(), emulation_object, "-o", out])
    return ctypes.CDLL(str(out))


@pytest.mark.parametrize("op", sorted(lt.SHAPES))
def test_readme_table_is_current(lib, op):
    text = lt.readme(op).read_text()
    assert lt.updated(text, lt.table(lib, op)) == text, \
        f"plugins/{op}/README.md: stale launch table; run python tools/launch_table.py"


@pytest.mark.parametrize("op,dims", [("add_rmsnorm", (1, 2560)), ("add_rmsnorm", (1, 4096)),
                                     ("hadamard", (1, 5120)), ("hadamard", (1, 8192)),
                                     ("hadamard", (2, 1536))])
def test_decode_row_kernels_fill_the_orin(lib, op, dims):
    for kernel, x, y, *_ in lt.launches(lib, op, dims, 8):
        assert x * y >= 8, (kernel, x, y)
    # as many rows as SMs: one block per row, one kernel
    (kernel, x, y, *_), = lt.launches(lib, op, (8, dims[1]), 8)
    assert (x, y) == (8, 1), kernel


def test_unknown_op_and_bad_shape_are_refused(lib):
    out = ctypes.create_string_buffer(64)
    assert lib.emu_edgeq_launches(b"nope", (ctypes.c_int64 * 2)(1, 8), 8, out, 64) != 0
    assert lib.emu_edgeq_launches(b"hadamard", (ctypes.c_int64 * 2)(1, 7), 8, out, 64) != 0
