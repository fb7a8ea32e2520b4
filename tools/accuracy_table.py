"""The README's accuracy table: perplexity of the demo models (Mamba-1 and Mamba-2) on their
held-out text, fp32 against every recipe that fits the backbone, each quantized model also run as
its ONNX graph on ONNX Runtime; for Mamba-2 also the ablation of Quamba2's W8A8 and W4A8 steps.

    python tools/accuracy_table.py [--write-readme]

Writes bench/results/accuracy_demo.json and prints the Markdown table; --write-readme puts the
table between the README's accuracy markers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import readme_table
from edgeq import tokenizer
from edgeq.export.onnx_export import to_onnx
from edgeq.models import load_model
from edgeq.models.loader import find_tokenizer
from edgeq.quant import calib_data
from edgeq.quant import folder as quant_folder
from edgeq.quant import pipeline
from edgeq.quant import recipe as R
from edgeq.runtime.backends import OrtBackend, TorchBackend
from edgeq.runtime.evaluate import perplexity, top1_agreement

ROOT = Path(__file__).resolve().parents[1]


# Quamba2's ablation (its Table 8, W4A8) on the Mamba-2 demo, at W8A8 and W4A8: every step off,
# then one more on per row, in the paper's order (Mamba-1 has neither step: no state groups, no
# heads). Base W4A8 rounds its 4-bit weights to nearest; both keep the online Hadamard.
ABLATION = (("quamba2-w8a8", "per-tensor x, B, C", ("per-state-group B, C", "sort-and-cluster")),
            ("quamba2-w4a8", "RTN, per-tensor x, B, C",
             ("GPTQ", "per-state-group B, C", "sort-and-cluster")))
STEP_OFF = {"GPTQ": {"weights.method": "rtn"}, "per-state-group B, C": {"per_state_group": False},
            "sort-and-cluster": {"cluster": None}}


def ablation(recipe: str, base: str, steps: tuple) -> list[tuple[str, dict]]:
    """(label, recipe) per row: the base with every step off, then each step added in turn."""
    name, rows = f"ablation {recipe.split('-')[1]}:", []
    for k in range(len(steps) + 1):  # steps[:k] on
        off = {key: v for s in steps[k:] for key, v in STEP_OFF[s].items()}
        rows.append((f"{name} + {steps[k - 1]}" if k else f"{name} {base}", variant(recipe, off)))
    return rows


def variant(base: str, changes: dict) -> R.Recipe:
    rec = R.load(base)
    for key, value in changes.items():
        rec = replaced(rec, key.split("."), value)
    return rec


def replaced(part, path: list[str], value):
    """The recipe (or its part) with the field at `path` set to `value`."""
    head, *rest = path
    return dataclasses.replace(part, **{head: replaced(getattr(part, head), rest, value)
                                        if rest else value})


def evaluate(fp, rec, label, windows, held, seq_len, ort=True) -> dict:
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pipeline.quantize_to(Path(tmp) / "q", fp, windows, rec, {}, None)
        qm = quant_folder.load(Path(tmp) / "q")
        size = (Path(tmp) / "q" / "model.safetensors").stat().st_size
    fq = TorchBackend(qm)
    fp16 = 2 * sum(p.numel() for p in fp.parameters())  # tied weights counted once
    row = {"model": label, "ppl": perplexity(fq, held, seq_len), "size_vs_fp16": size / fp16}
    if ort:
        ob = OrtBackend(to_onnx(qm))
        row.update(ort_ppl=perplexity(ob, held, seq_len),
                   ort_top1_agreement=top1_agreement(fq, ob, held, seq_len))
    row["seconds"] = time.time() - t0
    return row


def demo_data(model: str, samples: int, seq_len: int):
    """A demo model folder's fp model, held-out token ids and calibration windows."""
    fp, folder = load_model(model)
    tok = tokenizer.from_json(find_tokenizer(folder))
    held = np.array(tok.encode((folder / "heldout.txt").read_text()).ids)
    windows = calib_data.windows(calib_data.load_tokens(str(folder / "calib.txt"), tok), samples,
                            seq_len, fp.cfg.vocab_size)
    return fp, held, windows


def table(model: str, samples: int, seq_len: int) -> dict:
    fp, held, windows = demo_data(model, samples, seq_len)
    rows = [{"model": "fp32", "ppl": perplexity(TorchBackend(fp), held, seq_len)}]
    for name in sorted(R.for_arch(fp.cfg.arch), key=lambda n: (n.startswith("quamba2"), n != "naive-w8a8", n)):
        rows.append(evaluate(fp, R.load(name), name, windows, held, seq_len))
    for flags in ({"h2t": True}, {"residual_hadamard": True}):
        label = "quamba2-w4a8 " + " ".join(f"--{f.replace('_', '-')}" for f in flags)
        rows.append(evaluate(fp, R.load("quamba2-w4a8", **flags), label, windows, held, seq_len))
    if fp.cfg.arch == "mamba2":
        for args in ABLATION:
            for label, rec in ablation(*args):
                rows.append(evaluate(fp, rec, label, windows, held, seq_len, ort=False))
    for r in rows:
        r["vs_fp32"] = r["ppl"] / rows[0]["ppl"] - 1
    return {"model": str(Path(model).resolve().relative_to(ROOT)), "arch": fp.cfg.arch,
            "heldout_tokens": len(held), "rows": rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", type=Path,
                    default=[ROOT / "examples" / "demo-mamba", ROOT / "examples" / "demo-mamba2"])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()

    tables = [table(str(m), args.samples, args.seq_len) for m in args.models]
    result = {"seq_len": args.seq_len,
              "calibration": f"{args.samples} x {args.seq_len} tokens of calib.txt",
              "machine": platform.machine(), "models": tables}
    (ROOT / "bench" / "results" / "accuracy_demo.json").write_text(json.dumps(result, indent=1) + "\n")

    lines = [f"Demo models, held-out perplexity (windows of {args.seq_len}; calibration "
             f"{result['calibration']}). Produced by `tools/accuracy_table.py`.", "",
             "| model | recipe | perplexity (torch) | vs fp32 | weights vs fp16 | ONNX on ORT | ORT top-1 = torch |",
             "|---|---|---|---|---|---|---|"]
    for t in tables:
        for r in t["rows"]:
            ort = f"{r['ort_ppl']:.3f}" if "ort_ppl" in r else "—"
            agree = f"{100 * r['ort_top1_agreement']:.2f} %" if "ort_top1_agreement" in r else "—"
            size = f"{r['size_vs_fp16']:.2f}x" if "size_vs_fp16" in r else "—"
            lines.append(f"| {Path(t['model']).name} ({t['arch']}) | {r['model']} | {r['ppl']:.3f} | "
                         f"{100 * r['vs_fp32']:+.2f} % | {size} | {ort} | {agree} |")
    readme_table.emit("accuracy-table", lines, args.write_readme)


if __name__ == "__main__":
    main()
