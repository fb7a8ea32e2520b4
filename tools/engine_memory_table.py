"""The README's engine memory table: edgeq.trt.memory's projected peaks of building and of
loading each size's TensorRT engine on the 8 GB Orin Nano (batch 1, 2048 tokens), from the
weights `edgeq estimate` counts (docs/engine.md says what the projection rests on).

    python tools/engine_memory_table.py [--write-readme]
"""
from __future__ import annotations

import argparse

import readme_table
from estimate_table import SIZES
from edgeq.targets import get
from edgeq.trt.memory import GIB, from_config, verdict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    nano = get("orin-nano")
    lines = [f"| model | recipe | engine weights | build peak | load peak | on orin-nano "
             f"({nano['usable_memory_gb']} GiB after the OS) |", "|---|---|---|---|---|---|"]
    for name, (cfg, recipes) in SIZES.items():
        for recipe in recipes:
            p = from_config(cfg, nano, recipe.split()[0], h2t=recipe.endswith("h2t"))
            lines.append(f"| {name} | {recipe} | {p['weights_bytes'] / GIB:.2f} GiB | "
                         f"{p['build_peak_bytes'] / GIB:.2f} GiB | "
                         f"{p['load_peak_bytes'] / GIB:.2f} GiB | {verdict(p)} |")
    readme_table.emit("engine-memory-table", lines, args.write_readme)


if __name__ == "__main__":
    main()
