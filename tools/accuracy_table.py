"""The README's accuracy table: fp32 vs naive-w8a8 vs quamba-w8a8 perplexity of the demo model
on its held-out text, each quantized model also run as its int8 ONNX graph on ONNX Runtime.

    python tools/accuracy_table.py [--write-readme]

Writes bench/results/accuracy_demo.json and prints the Markdown table; --write-readme puts the
table between the README's accuracy markers.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import readme_table
from edgeq.export.onnx_export import to_onnx
from edgeq.models import load_model
from edgeq.quant import calib
from edgeq.quant import quantize as Q
from edgeq.quant import recipe as R
from edgeq.runtime import text
from edgeq.runtime.backends import OrtBackend, TorchBackend
from edgeq.runtime.evaluate import perplexity, top1_agreement

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=ROOT / "examples" / "demo-mamba")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()

    fp, folder = load_model(str(args.model))
    tok = text.from_folder(folder)
    held = np.array(tok.encode((folder / "heldout.txt").read_text()).ids)
    windows = calib.windows(calib.load_tokens(str(folder / "calib.txt"), tok), args.samples,
                            args.seq_len, fp.cfg.vocab_size)
    fp_ppl = perplexity(TorchBackend(fp), held, args.seq_len)
    rows = [{"model": "fp32", "ppl": fp_ppl, "vs_fp32": 0.0}]
    for name in ("naive-w8a8", "quamba-w8a8"):
        rec = R.load(name)
        t0 = time.time()
        tensors, scales = Q.quantize_model(fp, Q.calibrate(fp, windows, rec), rec)
        with tempfile.TemporaryDirectory() as tmp:
            Q.save(Path(tmp) / "q", fp, tensors, scales, rec, {}, None)
            qm = Q.load(Path(tmp) / "q")
        fq, ort = TorchBackend(qm), OrtBackend(to_onnx(qm))
        ppl = perplexity(fq, held, args.seq_len)
        rows.append({"model": name, "ppl": ppl, "vs_fp32": ppl / fp_ppl - 1,
                     "ort_int8_ppl": perplexity(ort, held, args.seq_len),
                     "ort_top1_agreement": top1_agreement(fq, ort, held, args.seq_len),
                     "seconds": time.time() - t0})
    result = {"model": str(args.model.relative_to(ROOT)), "heldout_tokens": len(held),
              "seq_len": args.seq_len, "calibration": f"{args.samples} x {args.seq_len} tokens of calib.txt",
              "machine": platform.machine(), "rows": rows}
    (ROOT / "bench" / "results" / "accuracy_demo.json").write_text(json.dumps(result, indent=1) + "\n")

    lines = [f"Demo model, held-out perplexity ({len(held)} tokens, windows of {args.seq_len}; "
             f"calibration {result['calibration']}). Produced by `tools/accuracy_table.py`.", "",
             "| model | perplexity (torch) | vs fp32 | int8 ONNX on ORT | ORT top-1 = torch |",
             "|---|---|---|---|---|"]
    for r in rows:
        ort = f"{r['ort_int8_ppl']:.3f}" if "ort_int8_ppl" in r else "—"
        agree = f"{100 * r['ort_top1_agreement']:.2f} %" if "ort_top1_agreement" in r else "—"
        lines.append(f"| {r['model']} | {r['ppl']:.3f} | {100 * r['vs_fp32']:+.2f} % | {ort} | {agree} |")
    table = "\n".join(lines)
    print(table)
    if args.write_readme:
        readme_table.write("accuracy-table", table)


if __name__ == "__main__":
    main()
