"""`edgeq build`: checkpoint -> bundle for a target. Stages: load, calibrate, quantize, export,
validate on ORT, plugin library, engine, bundle.json. Everything is written into a temp folder
beside the output and renamed into place at the end, so a failed build leaves no bundle."""
from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from ..bundle_files import GRAPH, QUANT, TOKENIZER
from ..errors import EdgeqError
from ..gpu import gpu_sm
from ..host_memory import peak_rss_mib
from ..output import check_output, writing
from ..trt import memory
from . import manifest, plugins


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("edgeq", "torch", "onnx", "onnxruntime", "onnxruntime-extensions", "tensorrt"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


class Stages:
    """Runs named stages, printing progress and keeping their timings and the peak memory by the
    end of each (what a workstation needs for a model)."""

    def __init__(self, out=None):
        self.out, self.timings, self.peak_rss_mib = out or sys.stderr, {}, {}  # the stream of now

    def __call__(self, name: str, fn, *args, **kwargs):
        print(f"[{len(self.timings) + 1}] {name} ...", file=self.out, flush=True)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - t0, 3)
        self.peak_rss_mib[name] = peak_rss_mib()
        print(f"    {name} done in {self.timings[name]:.1f} s (peak memory "
              f"{self.peak_rss_mib[name] / 1024:.2f} GiB)", file=self.out, flush=True)
        return result

    def log(self, text: str) -> None:
        if text.strip():
            print(text.rstrip(), file=self.out)


def validate(model, proto, tokens: np.ndarray) -> dict:
    """The exported graph on ORT (C++ kernels) against the torch model on the same tokens."""
    from ..runtime.backends import OrtBackend, TorchBackend
    from ..runtime.evaluate import perplexity, top1_agreement
    tb, ob = TorchBackend(model), OrtBackend(proto)
    seq = min(128, len(tokens) - 1)
    a, _ = tb.forward(tokens[None, :seq], tb.new_state(1))
    b, _ = ob.forward(tokens[None, :seq], ob.new_state(1))
    return {"tokens": int(len(tokens)), "top1_agreement": top1_agreement(tb, ob, tokens, seq),
            "max_abs_logit_diff": float(np.abs(a - b).max()),
            "ppl_torch": perplexity(tb, tokens, seq), "ppl_ort": perplexity(ob, tokens, seq)}


VALIDATION_MIN = 16  # next-token predictions compared, at least


def build(model: str, target_name: str, out: Path, recipe_name: str = "quamba-w8a8",
          calib_data: str | None = None, samples: int = 512, seq_len: int = 512,
          sysroot: Path | None = None, stages: Stages | None = None, h2t: bool = False,
          residual_hadamard: bool = False, a16_fraction: float | None = None,
          tokenizer: str | None = None) -> dict:
    from ..export.onnx_export import save, to_onnx
    from ..models import load_model
    from ..models.loader import find_tokenizer
    from ..quant import calib_data as data, folder as quant_folder, recipe as recipes
    from ..quant.pipeline import quantize_to
    from ..targets import estimate, get
    from ..tokenizer import META_KEY, from_json

    st = stages or Stages()
    target = get(target_name)
    out = Path(out)
    check_output(out)
    plugin_plan = plugins.plan(target, sysroot)  # its sysroot and nvcc: before the slow stages
    rec = recipes.load(recipe_name, h2t=h2t, residual_hadamard=residual_hadamard,
                       a16_fraction=a16_fraction)

    lm, folder = st("load", load_model, model)
    cfg = lm.cfg
    # the engine is built and loaded on the device: refuse one it cannot hold before the slow
    # stages (from the config; the graph's own weights are counted after export)
    if warning := memory.check(memory.from_config(cfg, target, rec.name, h2t, a16_fraction),
                               target):
        print(warning, file=sys.stderr)
    tok_json = find_tokenizer(folder, tokenizer, cfg.vocab_size)
    tok = from_json(tok_json)
    if calib_data is None and (folder / "calib.txt").is_file():
        calib_data = str(folder / "calib.txt")
    if calib_data is None:
        raise EdgeqError("give --calib DATA (text, a folder of .txt, or a tokenized .npy): "
                         "validation (and calibration) need it")
    tokens = data.load_tokens(calib_data, tok)
    if len(tokens) <= VALIDATION_MIN:  # an agreement over fewer predictions says nothing
        raise EdgeqError(f"{calib_data}: {len(tokens)} tokens; validation needs at least "
                         f"{VALIDATION_MIN + 1} (to compare {VALIDATION_MIN} next-token "
                         "predictions): give more calibration data")
    data.check(tokens, 2, cfg.vocab_size)
    with writing(out) as tmp:
        if not rec.quantizes:  # fp16, the baseline: the SSM state fp32 (docs/ops.md)
            model_for_export = lm.half()
        else:
            windows = data.windows(tokens, samples, seq_len, cfg.vocab_size)
            fp = [lm]
            del lm  # the pipeline holds the only reference: each stage's model goes once used
            quantize_to(tmp / ".quantized", fp.pop(), windows, rec,
                        {"data": Path(calib_data).name, "samples": samples, "seq_len": seq_len},
                        None, stage=lambda name, steps, fn, *args: st(name, fn, *args))
            model_for_export = quant_folder.load(tmp / ".quantized")
            # the graph holds the weights: a second copy would double what goes to the device
            os.replace(tmp / ".quantized" / QUANT, tmp / QUANT)
            shutil.rmtree(tmp / ".quantized")
        meta = {META_KEY: tok_json} if tok_json else {}
        meta["edgeq.recipe"] = rec.name
        meta["edgeq.target"] = target["name"]
        proto = st("export", to_onnx, model_for_export, meta)
        save(proto, tmp / GRAPH)
        projected = estimate(cfg, target, rec.name, h2t=h2t, a16_fraction=a16_fraction)
        engine_memory = memory.project(memory.graph_weight_bytes(tmp / GRAPH), target,
                                       cfg, projected["state_bytes"])
        memory.check(engine_memory, target)  # its warning was printed from the config
        # validation tokens: a fixed window of the calibration data the build did not choose
        val = tokens[: min(len(tokens), 2 * 128 + 1)]
        metrics = st("validate", validate, model_for_export, proto, val)
        plugin = st("plugins", plugins.stage, tmp, target, plugin_plan, st.log)
        engine = st("engine", _engine_stage, tmp, target, plugin, st.log)
        if tok_json:
            (tmp / TOKENIZER).write_text(tok_json)
        manifest.write(tmp, {
            "target": target, "recipe": recipes.to_dict(rec),
            "model": {"source": model, "config": cfg.to_dict()},
            "versions": _versions(), "validation": metrics, "plugins": plugin, "engine": engine,
            "projected": projected, "engine_memory": engine_memory, "timings": st.timings,
            "peak_rss_mib": st.peak_rss_mib, "host": platform.machine()})
    return manifest.read(out)


def _engine_stage(bundle: Path, target: dict, plugin: dict, log) -> dict:
    """Build the TensorRT engine when this host can (TensorRT importable, the target's GPU, a
    built plugin library); engines are not portable, so otherwise the device builds it."""
    from ..trt import load
    try:
        load()
    except EdgeqError as e:
        return {"built": False, "reason": f"{e}; run `edgeq engine BUNDLE` there"}
    if gpu_sm() != target["sm"] or plugin["mode"] == "sources":
        return {"built": False, "reason": f"this host has no sm_{target['sm']} GPU with a built "
                                          "plugin library; run `edgeq engine BUNDLE` on the device"}
    from ..trt.engine import build_engine
    return build_engine(bundle, target, log)
