"""Every kernel case (tests/support/kernel_cases.py) on every backend that runs on the CPU and
supports it (tests/support/backends.py), against edgeq.ops.reference (docs/ops.md), each backend
within its own tolerance: the torch custom ops, the CPU library, the CUDA kernels' per-thread code
run on the CPU, and the TensorRT plugins over that emulation as TensorRT drives them (where nvcc
and TensorRT's headers, EDGEQ_TRT_INCLUDE, are). The GPU backends: test_backend_ops_gpu.py."""
from __future__ import annotations

import pytest

import kernel_cases as kc
from backends import params


@pytest.mark.parametrize("backend,kind,case", params(on_gpu=False))
def test_kernel_case(request, backend, kind, case):
    with backend.open(request) as (lib, mem, prefix):
        kc.RUNS[kind](lib, mem, case, prefix=prefix, tol=backend.tolerance)
