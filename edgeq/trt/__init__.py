"""TensorRT: engine building and running on the device. `tensorrt` is imported lazily: it
exists only where TensorRT is installed (JetPack, or a workstation with TensorRT)."""
from __future__ import annotations

from ..errors import EdgeqError

# ICudaEngine.device_memory_size_v2 and IExecutionContext.set_device_memory(ptr, size) came in
# 10.1 (JetPack 6.0 has 8.6; 6.1 and 6.2 have 10.3)
MIN_VERSION = (10, 1)


def load():
    """The tensorrt module, or EdgeqError saying why this host cannot use it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeqError("tensorrt is not installed on this host; build and run engines on the "
                         "device (JetPack 6.1 and 6.2 ship TensorRT 10.3)") from None
    have = tuple(int(p) for p in trt.__version__.split(".")[:2])
    if have < MIN_VERSION:
        raise EdgeqError(f"TensorRT {trt.__version__} is older than edgeq needs "
                         f"({'.'.join(map(str, MIN_VERSION))}); upgrade to JetPack 6.1 or later")
    return trt
