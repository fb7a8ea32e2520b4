"""The README's roofline table: `edgeq estimate` lower bounds for Mamba-1 and Mamba-2 sizes on
Orin Nano next to Quamba's and Quamba2's published Orin Nano measurements.

    python tools/estimate_table.py [--write-readme]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import readme_table
from edgeq.models import MambaConfig
from edgeq.targets import estimate, get

ROOT = Path(__file__).resolve().parents[1]
# mamba_ssm README sizes (d_model, n_layer); vocab 50277 padded to 50280. Mamba2-8B is
# NVIDIA's mamba2-8b-3t-4k (vocab 256000, 8 B/C groups, untied head)
M1 = ("fp16", "quamba-w8a8", "quamba2-w4a8 h2t")
M2 = ("fp16", "quamba2-w8a8", "quamba2-w4a8 h2t", "quamba2-w4a16 h2t", "quamba2-w4ax h2t")
SIZES = {"mamba-130m": (MambaConfig(d_model=768, n_layer=24, vocab_size=50280), M1),
         "mamba-1.4b": (MambaConfig(d_model=2048, n_layer=48, vocab_size=50280), M1),
         "mamba-2.8b": (MambaConfig(d_model=2560, n_layer=64, vocab_size=50280), M1),
         "mamba2-2.7b": (MambaConfig(d_model=2560, n_layer=64, vocab_size=50288, arch="mamba2",
                                     d_state=128, headdim=64), M2),
         "mamba2-8b": (MambaConfig(d_model=4096, n_layer=56, vocab_size=256000, arch="mamba2",
                                   d_state=128, headdim=64, ngroups=8, tie_embeddings=False), M2)}
# Orin Nano 8 GB, ms per token: Quamba (ICLR'25) Mamba-2.8B; Quamba2 (ICML'25, Table 5, head
# and embedding 4-bit as its eval.sh runs) Mamba2-8B, where fp16 and W8A8 run out of memory
PUBLISHED = {("mamba-2.8b", "fp16"): 103.56, ("mamba-2.8b", "quamba-w8a8"): 60.17,
             ("mamba2-8b", "quamba2-w4a8 h2t"): 79.91, ("mamba2-8b", "quamba2-w4a16 h2t"): 78.77}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    lines = ["| model | recipe | weights | decode bound, orin-nano (68 GB/s) | orin-nano-super (102 GB/s) "
             "| Quamba/Quamba2 measured, orin-nano | prefill bound, 1024 tokens, orin-nano |",
             "|---|---|---|---|---|---|---|"]
    for name, (cfg, recipes) in SIZES.items():
        for recipe in recipes:
            r, h2t = recipe.split()[0], recipe.endswith("h2t")
            e = estimate(cfg, get("orin-nano"), r, h2t=h2t)
            s = estimate(cfg, get("orin-nano-super"), r, h2t=h2t)
            bound = e["decode_ms_per_token"]
            pub = PUBLISHED.get((name, recipe))
            measured = f"{pub} ms/token ({pub / bound:.2f}x the bound)" if pub else "—"
            lines.append(f"| {name} | {recipe} | {e['weights_bytes'] / 1e9:.2f} GB | "
                         f"{bound:.1f} ms/token | {s['decode_ms_per_token']:.1f} ms/token | "
                         f"{measured} | {e['prefill_ms']:.0f} ms |")
    readme_table.emit("estimate-table", lines, args.write_readme)


if __name__ == "__main__":
    main()
