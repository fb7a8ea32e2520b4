"""What TensorRT made of the graph: the engine inspector's layer information, written to the
bundle (engine_layers.json), and a precision summary from it: each linear of the graph (MatMul)
with the precision its engine layer runs in, and each Edgeq plugin's I/O types.

The layer information is TensorRT 10.3's JSON (IEngineInspector::getEngineInformation with
LayerInformationFormat::kJSON, NvInferRuntime.h; an engine built with ProfilingVerbosity::
kDETAILED): {"Layers": [...], "Bindings": [...]}, each layer an object with "Name",
"LayerType", "Inputs" and "Outputs" (each with "Name", "Dimensions" and "Format/Datatype", a
phrase such as "Row major Int8 format" or "Row major linear FP16 format"), "TacticName" and
"Metadata"; with the default verbosity the layers are names only. The ONNX parser sets each
layer's metadata to "[ONNX Layer: <node name>]" (onnx-tensorrt 10.1-GA importerUtils.cpp,
processMetadata), and a fused layer carries its nodes' joined by "\\x1e"; the layers of
optimization profile k > 0 have " [profile k]" after their names (TensorRT's engine explorer,
trex/parser.py). A layer's precision is that of its first input, as trex reads it, INT4 where
its weights or any input are 4-bit."""
from __future__ import annotations

import json
import re
from pathlib import Path

import onnx

from ..bundle_files import ENGINE, LAYERS
from ..errors import EdgeqError
from ..ops.table import DOMAIN
from ..output import write_inside

FLOAT = ("FP32", "FP16", "BF16")
# phrases of "Format/Datatype" (and of "Weights"/"Type"), most specific first
_PRECISIONS = [("INT4", r"\bInt4\b|\bINT4\b"), ("INT8", r"\bInt8\b|\bINT8\b"),
               ("BF16", r"BFloat16|\bBF16\b"), ("FP16", r"\bFP16\b|\bHalf\b"),
               ("FP32", r"\bFP32\b|\bFloat\b"), ("INT32", r"\bInt32\b|\bINT32\b"),
               ("INT64", r"\bInt64\b|\bINT64\b"), ("BOOL", r"\bBool\b|\bBOOL\b")]
_NODE = re.compile(r"\[ONNX Layer: (.*?)(?: \| [^\]]*)?\]")
_PROFILE = re.compile(r" \[profile (\d+)\]")


def write(trt, logger, bundle: Path) -> dict:
    """Read the bundle's engine back and write its layer information to LAYERS."""
    from .runtime import deserialize
    engine = deserialize(trt, logger, bundle / ENGINE)
    if engine is None:
        raise EdgeqError(f"TensorRT could not load the engine it built: {logger.errors()[0]}")
    text = engine.create_engine_inspector().get_engine_information(
        trt.LayerInformationFormat.JSON)
    info = json.loads(text)
    if not info.get("Layers") or not isinstance(info["Layers"][0], dict):
        raise EdgeqError("TensorRT's engine inspector gave layer names only: the engine was not "
                         "built with ProfilingVerbosity.DETAILED")
    write_inside(bundle, LAYERS, (json.dumps(info, indent=1) + "\n").encode())
    return info


def precision(desc: str) -> str:
    for name, pattern in _PRECISIONS:
        if re.search(pattern, desc):
            return name
    return "?"


def _layer_precision(layer: dict) -> str:
    inputs = [precision(t.get("Format/Datatype", "")) for t in layer.get("Inputs", [])]
    weights = precision(str(layer.get("Weights", {}).get("Type", "")))
    if "INT4" in inputs or weights == "INT4":
        return "INT4"
    return inputs[0] if inputs else "?"


def _graph(onnx_path: Path) -> tuple[list[dict], list[dict]]:
    """The graph's linears (node, weight, kind: W8A8, W4A16 or float) and Edgeq nodes."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def source(name: str) -> tuple[str, list]:
        """The initializer behind a tensor (through DQ, Transpose, Cast), and the nodes passed."""
        passed = []
        while name not in inits and name in producer and \
                producer[name].op_type in ("DequantizeLinear", "Transpose", "Cast"):
            passed.append(producer[name])
            name = producer[name].input[0]
        return name, passed

    linears, plugins = [], []
    for n in g.node:
        if n.domain == DOMAIN:
            plugins.append({"node": n.name, "op": n.op_type})
        if n.op_type not in ("MatMul", "Gemm"):
            continue
        weight, passed = source(n.input[1])
        dqs = [p for p in passed if p.op_type == "DequantizeLinear"]
        x = producer.get(n.input[0])
        if any(a.name == "block_size" for p in dqs for a in p.attribute):
            kind = "W4A16"
        elif dqs and x is not None and x.op_type == "DequantizeLinear" and weight in inits and \
                inits[weight].data_type == onnx.TensorProto.INT8:
            kind = "W8A8"
        else:
            kind = "float"
        linears.append({"node": n.name, "weight": weight, "kind": kind})
    return linears, plugins


def _by_node(info: dict) -> dict[str, list[tuple[int, dict]]]:
    """Per ONNX node name, the (profile, layer) pairs whose metadata names it."""
    out: dict[str, list[tuple[int, dict]]] = {}
    for layer in info.get("Layers", []):
        m = _PROFILE.search(layer.get("Name", ""))
        profile = int(m.group(1)) if m else 0
        for node in _NODE.findall(layer.get("Metadata", "")):
            out.setdefault(node, []).append((profile, layer))
    return out


def summary(info: dict, onnx_path: Path) -> dict:
    """Per linear its precision in each profile's engine, per plugin node its I/O types."""
    linears, plugins = _graph(onnx_path)
    by_node = _by_node(info)
    for lin in linears:
        found = sorted(by_node.get(lin["node"], []), key=lambda p: p[0])
        lin["precision"] = [_layer_precision(layer) for _, layer in found] or ["not in the engine"]
        lin["tactic"] = [layer.get("TacticName", "") for _, layer in found]
    for p in plugins:
        found = sorted(by_node.get(p["node"], []), key=lambda p: p[0])
        p["io"] = sorted({" ".join(precision(t.get("Format/Datatype", "")) for t in layer["Inputs"])
                          + " -> " + " ".join(precision(t.get("Format/Datatype", ""))
                                              for t in layer["Outputs"])
                          for _, layer in found}) or ["not in the engine"]
    return {"linears": linears, "plugins": plugins}


def _groups(s: dict) -> tuple[dict, dict]:
    """Linear weights by (kind, precision) and plugin nodes by (op, I/O types)."""
    linears: dict[tuple, list[str]] = {}
    plugins: dict[tuple, list[str]] = {}
    for lin in s["linears"]:
        key = (lin["kind"], "/".join(sorted(set(lin["precision"]))))
        linears.setdefault(key, []).append(lin["weight"])
    for p in s["plugins"]:
        plugins.setdefault((p["op"], "; ".join(p["io"])), []).append(p["node"])
    return linears, plugins


def counts(s: dict) -> dict:
    """The summary in numbers, for bundle.json."""
    linears, plugins = _groups(s)
    return {"linears": {f"{k} {p}": len(v) for (k, p), v in linears.items()},
            "plugins": {f"{op} {io}": len(v) for (op, io), v in plugins.items()}}


def describe(s: dict) -> str:
    """The summary in lines: linears grouped by kind and precision, plugins by op and types."""
    linears, plugins = _groups(s)
    return "\n".join(["engine precision (TensorRT's layer information, engine_layers.json):",
                      *(f"  {kind} linears on {prec} ({len(names)}): {', '.join(names)}"
                        for (kind, prec), names in sorted(linears.items())),
                      *(f"  {op} x{len(nodes)}: {io}" for (op, io), nodes in sorted(plugins.items()))])


def check_int8(s: dict) -> None:
    """--expect-int8: every W8A8 linear's engine layer runs on INT8, in every profile."""
    bad = [f"{lin['weight']} ({'/'.join(sorted(set(lin['precision'])))})" for lin in s["linears"]
           if lin["kind"] == "W8A8" and set(lin["precision"]) != {"INT8"}]
    if bad:
        raise EdgeqError(f"{len(bad)} W8A8 linears do not run on INT8 in the engine: "
                         f"{', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''} (a dequantize "
                         "then float GEMM moves 2-4x the bytes); see engine_layers.json")
