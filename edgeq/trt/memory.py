"""Projected peak memory of building and of loading a TensorRT engine on a target, from the
weight bytes of the graph (or of the model's config, before there is a graph). docs/engine.md
says what each term rests on. Pure arithmetic: no TensorRT needed.

Building (edgeq.trt.engine.build_engine) holds, at its peak, the end of
build_serialized_network:
  host    the parsed graph (W: the network's weights point into the parser's copy of the
          ONNX file, which lives until the build ends) and the serialized engine (W: an
          IHostMemory that holds the weights once more);
  device  the builder's copy of the weights (W) and the workspace pool (the limit edgeq sets);
  both    a fixed cost: CUDA context, TensorRT's libraries, the Python process (assumed).
Loading (edgeq.trt.runtime) deserializes from a memory map, whose pages are the file's (the
kernel can drop them), so it holds the engine's weights on the device (W), its activation block,
two sets of states, and the fixed cost. On a Jetson both sides are one DRAM: the sum must fit
the memory left after the OS; on a discrete GPU the device side must fit its memory (the host's
RAM is not part of the target, so its side is shown only)."""
from __future__ import annotations

from pathlib import Path

from ..errors import EdgeqError

GIB = 2**30
# assumed, not measured (no device yet): CUDA context, TensorRT's libraries and the Python
# process; building loads TensorRT's builder resources as well
FIXED_BUILD, FIXED_LOAD = 1.0 * GIB, 0.5 * GIB


def workspace_bytes(target: dict) -> int:
    """The builder's workspace pool limit: a quarter of the target's usable memory."""
    return int(target.get("usable_memory_gb", target["memory_gb"]) * GIB // 4)


def _available(target: dict) -> int:
    return int(target.get("usable_memory_gb", target["memory_gb"]) * GIB)


def graph_weight_bytes(onnx_path: Path) -> int:
    """The bytes of the graph's initializers (INT4 two to a byte), read from its header and
    external-data records, not its data."""
    import onnx
    from onnx import helper
    model = onnx.load(str(onnx_path), load_external_data=False)
    total = 0
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            total += (n + 1) // 2
        else:
            total += n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def activation_bytes(cfg, max_batch: int, max_seq: int) -> int:
    """A bound on the engine's activation block: a prompt of max_seq tokens at max_batch through
    the widest layer, its in_proj output, scan output and gate live at once, fp32."""
    width = 2 * cfg.d_inner + (2 * cfg.ngroups * cfg.d_state + cfg.nheads
                               if cfg.arch == "mamba2" else 0)
    return 4 * max_batch * max_seq * (width + 2 * cfg.d_inner)


def project(weights: int, target: dict, cfg, state_bytes: int, max_batch: int = 1,
            max_seq: int = 2048, basis: str = "graph") -> dict:
    """Peak bytes of building and of loading the engine on `target`, and whether they fit.
    state_bytes: one set of states at batch 1."""
    shared = target.get("kind") == "jetson"
    build_host, build_device = 2 * weights + FIXED_BUILD, weights + workspace_bytes(target)
    load_device = weights + activation_bytes(cfg, max_batch, max_seq) + 2 * max_batch * state_bytes
    build = build_host + build_device if shared else build_device
    load = load_device + FIXED_LOAD if shared else load_device
    available = _available(target)
    return {"basis": basis, "weights_bytes": int(weights), "build_peak_bytes": int(build),
            "load_peak_bytes": int(load), "build_host_bytes": int(build_host),
            "available_bytes": available, "shared_memory": shared,
            "max_batch": max_batch, "max_seq": max_seq,
            "loads": load <= available, "builds": build <= available}


def verdict(p: dict) -> str:
    if not p["loads"]:
        return "does not fit"
    return "fits" if p["builds"] else "loads; the build is projected over"


def describe(p: dict, target: dict) -> str:
    where = "of the DRAM the OS leaves" if p["shared_memory"] else "of the GPU's memory"
    host = "" if p["shared_memory"] else \
        f" (and {p['build_host_bytes'] / GIB:.2f} GiB of host memory to build)"
    return (f"engine on {target['name']}: build needs {p['build_peak_bytes'] / GIB:.2f} GiB, "
            f"load {p['load_peak_bytes'] / GIB:.2f} GiB, of {p['available_bytes'] / GIB:.2f} GiB "
            f"{where}{host}: {verdict(p)} (weights "
            f"{p['weights_bytes'] / GIB:.2f} GiB, batch {p['max_batch']}, {p['max_seq']} tokens)")


def check(p: dict, target: dict) -> str | None:
    """Refuse, in one line, an engine the target cannot load. A build projected over the memory
    is only a warning (returned): its fixed cost is assumed, the workspace is a limit, not an
    allocation, and on a Jetson swap holds the host side (the parser's copy and the plan)."""
    if not p["loads"]:
        raise EdgeqError(f"{describe(p, target)}; use a smaller recipe (4-bit weights, --h2t), a "
                         "smaller model or a target with more memory")
    if not p["builds"]:
        return (f"warning: the engine build is projected at {p['build_peak_bytes'] / GIB:.2f} GiB, "
                f"over the {p['available_bytes'] / GIB:.2f} GiB {target['name']} has: give it swap "
                "(the parser's copy and the serialized engine are host memory) or build the "
                "engine on a device of the same GPU and TensorRT version with more memory")
    return None


def from_config(cfg, target: dict, recipe: str, h2t: bool = False,
                a16_fraction: float | None = None, max_batch: int = 1,
                max_seq: int = 2048) -> dict:
    """project() before there is a graph: the weights as `edgeq estimate` counts them (the
    layers and the head), and an untied embedding at the head's precision."""
    from ..targets import estimate, precision
    e = estimate(cfg, target, recipe, h2t=h2t, a16_fraction=a16_fraction)
    embedding = 0 if cfg.tie_embeddings else \
        cfg.vocab_size * cfg.d_model * precision(recipe, cfg, h2t, a16_fraction)["head"]
    return project(e["weights_bytes"] + int(embedding), target, cfg, e["state_bytes"], max_batch,
                   max_seq, basis="config")
