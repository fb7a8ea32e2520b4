"""TensorRT: engine building and running on the device. `tensorrt` is imported lazily: it
exists only where TensorRT is installed (JetPack, or a workstation with TensorRT)."""
from __future__ import annotations

import ctypes
from pathlib import Path

from ..bundle_files import PLUGIN_LIBRARY
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


_PLUGINS: dict[int, tuple] = {}  # per tensorrt module: (module, library path, its handle)


def load_plugins(trt, bundle: Path) -> None:
    """Register the bundle's plugin library with TensorRT, once per process. loadLibrary
    "will fail and return nullptr if any of the plugins are already registered"
    (NvInferRuntimeCommon.h 10.3, IPluginRegistry::loadLibrary): a second call for the same
    library (an engine build, then its --compare run) reuses the first, and another bundle's
    library, whose plugins have the same names, is refused."""
    lib = (bundle / PLUGIN_LIBRARY).resolve()
    if id(trt) in _PLUGINS:
        loaded = _PLUGINS[id(trt)][1]
        if loaded == lib:
            return
        raise EdgeqError(f"this process registered the plugins of {loaded} already; TensorRT "
                         f"takes a plugin library once per process: run {bundle} in a new one")
    if not lib.is_file():
        raise EdgeqError(f"{bundle}: no built plugin library; run plugins-src/build_plugins.sh "
                         "first")
    handle = trt.get_plugin_registry().load_library(str(lib))
    if not handle:
        raise EdgeqError(f"TensorRT could not load the plugin library {lib}: "
                         f"{_loader_error(lib) or logger(trt).errors()[-1]}; rebuild it from the "
                         "bundle's plugins-src/ for this device")
    _PLUGINS[id(trt)] = (trt, lib, handle)


def _loader_error(lib: Path) -> str:
    """The dynamic loader's own error for the library (dlerror, through ctypes), or "" if it
    loads: TensorRT's loadLibrary logs it only through its logger, with its own wording."""
    try:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_LOCAL)
    except OSError as e:
        return str(e)
    return ""
