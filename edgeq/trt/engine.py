"""Build a TensorRT engine from a bundle on the device: an explicitly quantized, strongly typed
network from the ONNX parser, the edgeq plugin library loaded into the plugin registry,
optimization profiles for prefill and decode, memory-pool limits from the target and a timing
cache. Not run in edgeq's CI: no TensorRT there."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from ..errors import EdgeqError
from ..ops.table import BY_NAME, DOMAIN
from . import load

ENGINE, LOG, CACHE = "model.engine", "engine_build.log", "timing.cache"


def check_compatible(manifest: dict) -> None:
    """Refuse a bundle made for another TensorRT version or GPU than this device's."""
    from ..runtime.cuda_kernels import gpu_sm
    trt = load()
    want = manifest["target"].get("tensorrt")
    have = ".".join(trt.__version__.split(".")[:2])
    if want and want != have:
        raise EdgeqError(f"the bundle targets TensorRT {want}, this device has {have}; build a "
                         "bundle for this device's target")
    sm = gpu_sm()
    if sm != manifest["target"]["sm"]:
        raise EdgeqError(f"the bundle targets sm_{manifest['target']['sm']}, this GPU is "
                         f"{'sm_%d' % sm if sm else 'absent'}; build for this device's target")


def custom_ops(onnx_path: Path) -> set[tuple[str, str, str]]:
    model = onnx.load(str(onnx_path), load_external_data=False)
    return {(n.op_type, BY_NAME[n.op_type].version, BY_NAME[n.op_type].namespace)
            for n in model.graph.node if n.domain == DOMAIN}


def build_engine(bundle: Path, target: dict, log, max_batch: int = 1, max_seq: int = 2048) -> dict:
    trt = load()
    lib = bundle / "plugins" / "libedgeq_trt_plugins.so"
    if not lib.is_file():
        raise EdgeqError(f"{bundle}: no built plugin library; run plugins-src/build_plugins.sh first")
    logger = _recorder(trt)
    registry = trt.get_plugin_registry()
    registry.load_library(str(lib))
    for name, version, namespace in sorted(custom_ops(bundle / "model.onnx")):
        if registry.get_creator(name, version, namespace) is None:
            raise EdgeqError(f"the plugin library lacks {namespace}::{name} v{version}, which the "
                             "graph uses; rebuild the plugins from this bundle's sources")
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle / "model.onnx")):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeqError(f"TensorRT's ONNX parser refused the graph: {errors} "
                         f"(the whole log: {_failed_log(logger)})")
    config = builder.create_builder_config()
    pool = int(target.get("usable_memory_gb", target["memory_gb"]) * 2**30 // 4)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, pool)
    cache_path = bundle / CACHE
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # another device's: start anew
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    # profile 0: prefill (seq 1..max_seq), profile 1: decode (seq 1), both over batch 1..max_batch
    # and with logits at one position: lm_head's activations are then [batch, 1, vocab], not
    # [max_batch, max_seq, vocab] (1 GB in fp16 for Mamba2-8B's 256k vocabulary at 2048 tokens)
    for seq_range in ((1, min(128, max_seq), max_seq), (1, 1, 1)):
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            rest = tuple(t.shape)[1:]
            if t.name == "input_ids":
                profile.set_shape(t.name, (1, seq_range[0]), (1, seq_range[1]), (max_batch, seq_range[2]))
            elif t.name == "logits_at":
                profile.set_shape(t.name, (1,), (1,), (1,))
            else:
                profile.set_shape(t.name, (1, *rest), (1, *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = [line for line in logger.lines if line.startswith(("[ERROR]", "[INTERNAL_ERROR]"))]
        raise EdgeqError(f"TensorRT could not build the engine: "
                         f"{errors[-1] if errors else 'it gave no error'} (the whole log: "
                         f"{_failed_log(logger)})")
    (bundle / ENGINE).write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    (bundle / LOG).write_text("".join(f"{line}\n" for line in logger.lines))
    log(f"engine written: {bundle / ENGINE}")
    return {"built": True, "engine": ENGINE, "log": LOG, "tensorrt": trt.__version__,
            "profiles": {"prefill": [1, max_seq], "decode": [1, 1], "batch": [1, max_batch],
                         "logits_at": [1, 1]}, "workspace_bytes": pool}


def _recorder(trt):
    """A TensorRT logger that keeps its messages, VERBOSE aside, for the build log (trt.Logger
    only prints them)."""
    class Recorder(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity, msg):
            if severity != trt.ILogger.Severity.VERBOSE:
                self.lines.append(f"[{severity.name}] {msg}")
    return Recorder()


def _failed_log(logger) -> str:
    """Write a failed build's log outside the bundle (whose files its manifest lists) and name it."""
    fd, path = tempfile.mkstemp(prefix="edgeq-engine-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{line}\n" for line in logger.lines)
    return path
