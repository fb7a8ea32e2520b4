"""Bundle sizes side by side: `edgeq build --recipe fp16` against a 4-bit recipe (default
`quamba2-w4a8 --h2t`) of the same model, part by part, in one run. Issue 6's target: a 4-bit
bundle at most 0.3x the fp16 one.

Models: the demo folders, and random-weight models with a published checkpoint's dimensions
(`tools/estimate_table.py`'s sizes; sizes do not depend on the weights' values, so no download).

    python tools/bundle_size.py [--shapes mamba-130m mamba2-130m] [--write-readme]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import readme_table
import torch

from edgeq.bundle.build import build
from edgeq.models import MambaConfig, MambaLM, save_model
from estimate_table import SIZES

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ("demo-mamba", "demo-mamba2")
# mamba2-130m: state-spaces/mamba2-130m's dimensions (not in estimate_table's list)
SHAPES = {"mamba2-130m": MambaConfig(d_model=768, n_layer=24, vocab_size=50288, arch="mamba2",
                                     d_state=128, headdim=64),
          **{name: cfg for name, (cfg, _) in SIZES.items()}}


def parts(bundle: Path) -> dict[str, int]:
    """Bytes per part of a bundle: the graph (with any external data), then the rest."""
    sizes: dict[str, int] = {}
    for f in sorted(p for p in bundle.rglob("*") if p.is_file()):
        rel = f.relative_to(bundle)
        key = "graph" if rel.name.startswith("model.onnx") else rel.parts[0]
        sizes[key] = sizes.get(key, 0) + f.stat().st_size
    return sizes


def random_model(name: str, folder: Path) -> Path:
    torch.manual_seed(0)
    save_model(MambaLM(SHAPES[name]).eval(), folder / name)
    return folder / name


def measure(model: Path, calib: str | None, work: Path, recipe: str, h2t: bool) -> list[str]:
    fp16 = parts(_build(model, calib, work / "fp16", "fp16", False))
    q = parts(_build(model, calib, work / "q", recipe, h2t))
    rows = []
    for key in ["graph", *sorted((set(fp16) | set(q)) - {"graph"})]:
        a, b = fp16.get(key, 0), q.get(key, 0)
        rows.append(f"| {model.name} | {key} | {a / 2**20:.2f} | {b / 2**20:.2f} | "
                    f"{f'{b / a:.3f}x' if a else '—'} |")
    a, b = sum(fp16.values()), sum(q.values())
    rows.append(f"| {model.name} | **whole bundle** | {a / 2**20:.2f} | {b / 2**20:.2f} | "
                f"**{b / a:.3f}x** |")
    return rows


def _build(model: Path, calib: str | None, out: Path, recipe: str, h2t: bool) -> Path:
    # sizes do not depend on how well it is calibrated: a few short windows
    out.parent.mkdir(parents=True, exist_ok=True)
    build(str(model), "orin-nano", out, recipe, calib, samples=8, seq_len=128, h2t=h2t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="*", default=["mamba-130m", "mamba2-130m"], choices=SHAPES)
    ap.add_argument("--recipe", default="quamba2-w4a8")
    ap.add_argument("--no-h2t", dest="h2t", action="store_false")
    ap.add_argument("--write-readme", action="store_true",
                    help="Put the table into README.md and bench/results/bundle_size.md.")
    args = ap.parse_args()
    recipe = args.recipe + (" --h2t" if args.h2t else "")
    lines = [f"Bundle sizes, `edgeq build --target orin-nano`: `--recipe fp16` against "
             f"`--recipe {recipe}`, MiB (`tools/bundle_size.py`).", "",
             "| model | part | fp16 | 4-bit | ratio |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = [(ROOT / "examples" / d, None) for d in DEMOS]
        for name in args.shapes:  # calibrated on token ids: a random model has no tokenizer
            ids = tmp / f"{name}.npy"
            np.save(ids, np.random.default_rng(0).integers(0, SHAPES[name].vocab_size, 4096))
            models.append((random_model(name, tmp / "models"), str(ids)))
        for i, (model, calib) in enumerate(models):
            for row in measure(model, calib, tmp / str(i), args.recipe, args.h2t):
                print(row, flush=True)
                lines.append(row)
    if args.write_readme:
        table = "\n".join(lines)
        (ROOT / "bench/results/bundle_size.md").write_text(table + "\n")
        readme_table.write("bundle-size-table", table)


if __name__ == "__main__":
    main()
