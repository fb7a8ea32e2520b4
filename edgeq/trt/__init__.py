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


_LOGGER = None


def logger(trt):
    """The process's one TensorRT logger. TensorRT keeps a pointer to the first logger it is
    given (its plugin registry logs through it), so this one lives as long as the process. It
    keeps the messages, VERBOSE aside, for the build log and for errors; a build clears them."""
    global _LOGGER
    if _LOGGER is None:
        class Recorder(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.lines: list[str] = []

            def log(self, severity, msg):
                if severity != trt.ILogger.Severity.VERBOSE:
                    self.lines.append(f"[{severity.name}] {' '.join(str(msg).split())}")

            def text(self) -> str:
                return "".join(f"{line}\n" for line in self.lines)

            def errors(self) -> list[str]:
                return [line for line in self.lines
                        if line.startswith(("[ERROR]", "[INTERNAL_ERROR]"))] or ["no error logged"]
        _LOGGER = Recorder()
    return _LOGGER
