"""The README's roofline table: `edgeq estimate` lower bounds for the Mamba-1 sizes on Orin Nano
next to Quamba's published Orin Nano measurements.

    python tools/estimate_table.py [--write-readme]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import readme_table
from edgeq.models import MambaConfig
from edgeq.targets import estimate, get

ROOT = Path(__file__).resolve().parents[1]
# mamba_ssm README sizes (d_model, n_layer); vocab 50277 padded to 50280
SIZES = {"mamba-130m": (768, 24), "mamba-1.4b": (2048, 48), "mamba-2.8b": (2560, 64)}
# Quamba (ICLR'25) on Orin Nano 8 GB, Mamba-2.8B generation, ms per token
PUBLISHED = {("mamba-2.8b", "fp16"): 103.56, ("mamba-2.8b", "quamba-w8a8"): 60.17}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    lines = ["| model | recipe | weights | decode bound, orin-nano (68 GB/s) | orin-nano-super (102 GB/s) "
             "| Quamba measured, orin-nano | prefill bound, 1024 tokens, orin-nano |",
             "|---|---|---|---|---|---|---|"]
    for name, (d, n) in SIZES.items():
        cfg = MambaConfig(d_model=d, n_layer=n, vocab_size=50280)
        for recipe in ("fp16", "quamba-w8a8"):
            e = estimate(cfg, get("orin-nano"), recipe)
            s = estimate(cfg, get("orin-nano-super"), recipe)
            bound = e["decode_ms_per_token"]
            pub = PUBLISHED.get((name, recipe))
            measured = f"{pub} ms/token ({pub / bound:.2f}x the bound)" if pub else "—"
            lines.append(f"| {name} | {recipe} | {e['weights_bytes'] / 1e9:.2f} GB | "
                         f"{bound:.1f} ms/token | {s['decode_ms_per_token']:.1f} ms/token | "
                         f"{measured} | {e['prefill_ms']:.0f} ms |")
    table = "\n".join(lines)
    print(table)
    if args.write_readme:
        readme_table.write("estimate-table", table)


if __name__ == "__main__":
    main()
