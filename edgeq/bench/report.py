"""A benchmark result as JSON, Markdown and a PNG plot of the decode latency per token."""
from __future__ import annotations

import json
from pathlib import Path

ROWS = [("TTFT", "ttft_ms", "ms"), ("TPOT mean", "tpot_ms", "ms"), ("TPOT p50", "tpot_p50_ms", "ms"),
        ("TPOT p90", "tpot_p90_ms", "ms"), ("tokens/s", "tokens_per_s", ""),
        ("decode tokens/s", "decode_tokens_per_s", ""), ("peak RSS", "peak_rss_mib", "MiB"),
        ("device memory in use in decode (all processes)", "device_used_decode_mib", "MiB"),
        ("power", "power_w", "W"), ("energy", "energy_j", "J"), ("tokens/J", "tokens_per_joule", "")]


def markdown(r: dict) -> str:
    head = (f"Backend {r['backend']}, batch {r['batch']}, prompt {r['prompt_len']} tokens, "
            f"{r['gen_len']} generated, {r['warmup']} warm-up + {r['iters']} timed runs"
            + (f", {r['machine']}" if r.get("machine") else ""))
    lines = [head, "", "| metric | value |", "|---|---|"]
    for label, key, unit in ROWS:
        if r.get(key) is not None:
            lines.append(f"| {label} | {r[key]:.2f} {unit} |".replace("  |", " |"))
    return "\n".join(lines) + "\n"


def write(r: dict, folder: Path, stem: str = "bench") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"{stem}.json", folder / f"{stem}.md"]
    out[0].write_text(json.dumps(r, indent=1) + "\n")
    out[1].write_text(markdown(r))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is optional: pip install edgeq[bench]
        return out
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(2, len(r["tpot_series_ms"]) + 2), r["tpot_series_ms"], lw=1)
    ax.set_xlabel("generated token")
    ax.set_ylabel("decode latency (ms)")
    ax.set_title(f"{r['backend']}: TTFT {r['ttft_ms']:.1f} ms, TPOT p50 {r['tpot_p50_ms'] or 0:.2f} ms")
    fig.tight_layout()
    fig.savefig(folder / f"{stem}.png", dpi=100)
    plt.close(fig)
    return [*out, folder / f"{stem}.png"]
