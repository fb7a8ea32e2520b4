"""Peak memory of `edgeq bench` against what edgeq.bench.run.needs counts (without its runtime
term), one process per row: the data behind bench/results/bench_memory_check.md.

    python tools/bench_memory_check.py BUNDLE CHECKPOINT
"""
import json
import subprocess
import sys

from edgeq.bench.run import needs
from edgeq.models import MambaConfig


def peak_mib(source: str, backend: str, batch: int, prompt_len: int) -> float:
    r = subprocess.run([sys.executable, "-m", "edgeq.cli", "bench", source, "--backend", backend,
                        "--batch", str(batch), "--prompt-len", str(prompt_len), "--gen-len", "2",
                        "--iters", "1", "--warmup", "0", "--json"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["peak_rss_mib"]


def main(bundle: str, checkpoint: str) -> None:
    with open(f"{bundle}/bundle.json") as f:
        cfg = MambaConfig.from_dict(json.load(f)["model"]["config"])
    rows = {"ort": (bundle, [(8, 512), (32, 512), (64, 512)]),
            "torch": (checkpoint, [(8, 256)])}
    for backend, (source, sizes) in rows.items():
        base = peak_mib(source, backend, 1, 16)
        print(f"{backend} 1 x 16: peak RSS {base:.0f} MiB", flush=True)
        for batch, prompt_len in sizes:
            grown = peak_mib(source, backend, batch, prompt_len) - base
            counted = sum(v for k, v in needs(cfg, prompt_len, batch).items() if k != "runtime")
            print(f"{backend} {batch} x {prompt_len}: {grown:.0f} MiB over batch 1, counted "
                  f"{counted / 2**20:.0f} MiB, ratio {grown / (counted / 2**20):.2f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
