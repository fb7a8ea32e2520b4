"""Probing the CUDA GPU through cuda-python: whether one can be used, its compute capability,
and errors of cuda-python calls as EdgeqError. Below every layer that needs a GPU (kernels,
plugins, engines), so none of them imports another to ask."""
from __future__ import annotations

from .errors import EdgeqError


def no_gpu_reason() -> str:
    """Why no CUDA GPU can be used here, or "" when one can."""
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        return "cuda-python is not installed (pip install cuda-python)"
    try:
        err, count = rt.cudaGetDeviceCount()
    except Exception as e:  # noqa: BLE001 - any failure to ask means no usable GPU
        return f"cudaGetDeviceCount raised {e!r}"
    if err != rt.cudaError_t.cudaSuccess:
        return f"cudaGetDeviceCount failed: {err.name}"
    return "" if count else "cudaGetDeviceCount found 0 devices"


def gpu_sm() -> int | None:
    """The compute capability of GPU 0 as 87, 90, ...; None without a usable GPU."""
    if no_gpu_reason():
        return None
    from cuda.bindings import runtime as rt
    err, prop = rt.cudaGetDeviceProperties(0)
    return None if err != rt.cudaError_t.cudaSuccess else prop.major * 10 + prop.minor


def check(result):
    """A cuda-python call's value, or EdgeqError naming the CUDA error."""
    from cuda.bindings import runtime as rt
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise EdgeqError(f"CUDA call failed: {err.name}")
    return rest[0] if len(rest) == 1 else (rest or None)
