"""What the precision of the cached SSM state costs: token-by-token (decode) perplexity of the
quantized Mamba-2 demo with the state between steps held in fp32, fp16 (what EdgeqSSDScanInt8
ships), bf16, or int8 re-quantized every step as Quamba2 caches it, with scales per (head, state
index) or per (channel, state index). The int8 scales are the absmax of the fp32 states over
this same evaluation: the best int8 can do, not a calibration.

    python tools/state_cache_ablation.py [--recipe quamba2-w8a8] [--windows 8]

Writes bench/results/state_cache_ablation.md. Prefill perplexity (one call per window) never
rounds the state inside a window, so it is the same for every variant.
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from accuracy_table import demo_data
from edgeq.ops import reference
from edgeq.quant import pipeline
from edgeq.quant import qmodel
from edgeq.quant import recipe as R
from edgeq.runtime.backends import TorchBackend
from edgeq.runtime.evaluate import perplexity

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = reference.ssd_scan_int8


def scan_with(rounding):
    """EdgeqSSDScanInt8 on an fp32-carried state, `rounding(final state, A)` applied."""
    def scan(x, dt, A, *args, **kwargs):
        y, s = reference.ssd_scan_int8_fp32_state(x, dt, A, *args, **kwargs)
        return y, rounding(s, A)
    return scan


def int8(scales: dict, per_head: bool):
    def rounding(s, A):
        amax = scales[A.data_ptr()]  # [D, N], this layer's
        if per_head:
            P = s.shape[1] // A.shape[0]
            amax = amax.view(A.shape[0], P, -1).amax(1).repeat_interleave(P, 0)
        sc = amax.clamp_min(1e-8) / 127
        return torch.clamp(torch.round(s / sc), -128, 127) * sc
    return rounding


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "examples" / "demo-mamba2"))
    ap.add_argument("--recipe", default="quamba2-w8a8")
    ap.add_argument("--windows", type=int, default=8, help="held-out windows of --seq-len")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--samples", type=int, default=128, help="calibration windows")
    args = ap.parse_args()

    fp, held, windows = demo_data(args.model, args.samples, args.seq_len)
    held = held[:args.windows * args.seq_len + 1]
    rec = R.load(args.recipe)
    qfp, tensors, scales = pipeline.run(fp, windows, rec)
    model = qmodel.load_model(qfp.cfg, tensors, scales, rec)
    backend = TorchBackend(model)

    def decode_ppl():
        return perplexity(backend, held, args.seq_len, step=True)

    rows = [("fp16 (shipped: EdgeqSSDScanInt8)", decode_ppl())]
    prefill = perplexity(backend, held, args.seq_len)
    fp32_state = qmodel.QuantMambaLM.new_state
    amax: dict[int, torch.Tensor] = {}

    def record(s, A):
        a = s.abs().amax(0)
        amax[A.data_ptr()] = torch.maximum(amax[A.data_ptr()], a) if A.data_ptr() in amax else a
        return s
    try:
        qmodel.QuantMambaLM.new_state = lambda self, b: [(c, s.float())
                                                          for c, s in fp32_state(self, b)]
        for label, rounding in (("fp32", record), ("bf16", lambda s, A: s.bfloat16().float()),
                                ("int8, scale per (head, state index)", int8(amax, True)),
                                ("int8, scale per (channel, state index)", int8(amax, False))):
            reference.ssd_scan_int8 = scan_with(rounding)
            rows.append((label, decode_ppl()))
    finally:
        reference.ssd_scan_int8 = SHIPPED
        qmodel.QuantMambaLM.new_state = fp32_state

    base = dict(rows)["fp32"]
    lines = [f"SSM state cache precision, {Path(args.model).name} {args.recipe}: perplexity of "
             f"{args.windows} held-out windows of {args.seq_len} tokens, decoded token by token "
             f"(prefill, one call per window: {prefill:.3f}). Produced by "
             f"`tools/state_cache_ablation.py` on {platform.machine()} (CPU).", "",
             "| state between steps | decode perplexity | vs fp32 state |", "|---|---|---|"]
    lines += [f"| {label} | {ppl:.3f} | {100 * (ppl / base - 1):+.2f} % |" for label, ppl in rows]
    out = "\n".join(lines) + "\n"
    print(out)
    (ROOT / "bench" / "results" / "state_cache_ablation.md").write_text(out)


if __name__ == "__main__":
    main()
