"""Build a TensorRT engine from a bundle on the device: an explicitly quantized, strongly typed
network from the ONNX parser, the edgeq plugin library loaded into the plugin registry,
optimization profiles for prefill and decode, memory-pool limits from the target and a timing
cache; detailed layer information (engine_layers.json) for the precision summary
(edgeq.trt.layers). Not run in edgeq's CI: no TensorRT there; tests/support/fake_trt.py simulates
it."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import onnx

from .. import gpu
from ..bundle_files import CACHE, ENGINE, GRAPH, LAYERS, LOG
from ..errors import EdgeqError
from ..ops.table import BY_NAME, DOMAIN
from ..output import write_inside
from . import layers, load, load_plugins
from . import logger as trt_logger
from .memory import workspace_bytes



def check_compatible(manifest: dict) -> None:
    """Refuse a bundle made for another TensorRT version or GPU than this device's. A
    workstation target names no TensorRT version: any that edgeq takes builds its engine."""
    trt = load()
    want = manifest["target"].get("tensorrt")
    have = ".".join(trt.__version__.split(".")[:2])
    if want and want != have:
        raise EdgeqError(f"the bundle targets TensorRT {want}, this device has {have}; build a "
                         "bundle for this device's target")
    sm = gpu.gpu_sm()
    if sm != manifest["target"]["sm"]:
        raise EdgeqError(f"the bundle targets sm_{manifest['target']['sm']}, this GPU is "
                         f"{'sm_%d' % sm if sm else 'absent'}; build for this device's target")


def check_engine(manifest: dict) -> None:
    """Before running the bundle's engine: check_compatible, and refuse an engine that another
    TensorRT version built (an engine runs only on the version that built it, patch included)."""
    check_compatible(manifest)
    built, have = manifest["engine"].get("tensorrt"), load().__version__
    if built and built != have:
        raise EdgeqError(f"the engine was built by TensorRT {built}, this device has {have}; "
                         "rebuild it with `edgeq engine BUNDLE` here")


def custom_ops(onnx_path: Path) -> set[tuple[str, str, str]]:
    model = onnx.load(str(onnx_path), load_external_data=False)
    return {(n.op_type, BY_NAME[n.op_type].version, BY_NAME[n.op_type].namespace)
            for n in model.graph.node if n.domain == DOMAIN}


@contextmanager
def replacing(bundle: Path):
    """Around a rebuild of the engine's files: yields the old timing cache, and on failure puts
    the old files back (a bundle that verifies, as before), on success drops them."""
    olds = [(bundle / n, bundle / f"{n}.old") for n in (ENGINE, CACHE, LOG, LAYERS)]
    for new, old in olds:
        if new.exists():
            os.replace(new, old)
    cache = bundle / f"{CACHE}.old"
    try:
        yield cache.read_bytes() if cache.exists() else b""
    except BaseException:
        for new, old in olds:
            new.unlink(missing_ok=True)
            if old.exists():
                os.replace(old, new)
        raise
    for _, old in olds:
        old.unlink(missing_ok=True)


def build_engine(bundle: Path, target: dict, log, max_batch: int = 1, max_seq: int = 2048,
                 timing_cache: bytes = b"", expect_int8: bool = False) -> dict:
    trt = load()
    logger = trt_logger(trt)
    logger.lines.clear()
    load_plugins(trt, bundle)
    registry = trt.get_plugin_registry()
    for name, version, namespace in sorted(custom_ops(bundle / GRAPH)):
        if registry.get_creator(name, version, namespace) is None:
            raise EdgeqError(f"the plugin library lacks {namespace}::{name} v{version}, which the "
                             "graph uses; rebuild the plugins from this bundle's sources")
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle / GRAPH)):
        errors = "; ".join(" ".join(str(parser.get_error(i)).split())
                           for i in range(parser.num_errors))
        raise EdgeqError(f"TensorRT's ONNX parser refused the graph: {errors} "
                         f"(the whole log: {_failed_log(logger)})")
    config = builder.create_builder_config()
    pool = workspace_bytes(target)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, pool)
    # layer names, types, tactics and I/O formats in the engine's inspector (pyCore.cpp 10.3
    # binds IBuilderConfig.profiling_verbosity; the default, LAYER_NAMES_ONLY, gives names only)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    cache = config.create_timing_cache(timing_cache)
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
    cache_data = config.get_timing_cache().serialize()
    # the parser holds the graph's weights and the network points into them: both go before
    # the engine is written and read back (on a Jetson, host and GPU share one DRAM)
    del parser, network, config, builder
    if serialized is None:
        # the first error is the cause; TensorRT's last is a generic assertion
        raise EdgeqError(f"TensorRT could not build the engine: {logger.errors()[0]} (the "
                         f"whole log: {_failed_log(logger)})")
    # never through a link in the bundle; IHostMemory written through its buffer, no copy
    # (pyFoundationalTypes.cpp, 10.3: py::buffer_protocol() and def_buffer over data())
    write_inside(bundle, ENGINE, serialized)
    del serialized
    write_inside(bundle, CACHE, cache_data)
    write_inside(bundle, LOG, logger.text().encode())
    log(f"engine written: {bundle / ENGINE}")
    summary = layers.summary(layers.write(trt, logger, bundle), bundle / GRAPH)
    log(layers.describe(summary))
    if expect_int8:
        layers.check_int8(summary)
    return {"built": True, "engine": ENGINE, "log": LOG, "tensorrt": trt.__version__,
            "profiles": {"prefill": [1, max_seq], "decode": [1, 1], "batch": [1, max_batch],
                         "logits_at": [1, 1]}, "workspace_bytes": pool, "layers": LAYERS,
            "precision": layers.counts(summary)}



def _failed_log(logger) -> str:
    """Write a failed build's log outside the bundle (whose files its manifest lists) and name it."""
    fd, path = tempfile.mkstemp(prefix="edgeq-engine-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(logger.text())
    return path
