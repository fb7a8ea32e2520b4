"""What a model is: architecture, dimensions, parameter count and size at each precision."""
# the analytic numbers work on a model built on the meta device (no weights needed)
from __future__ import annotations

from .mamba import MambaLM

# bytes per parameter of the projection and embedding matrices at each precision; vectors
# (norms, A, D, biases, conv) stay fp32 in every edgeq recipe
PRECISIONS = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}


def summary(model: MambaLM) -> dict:
    cfg = model.cfg
    params = {n: p for n, p in model.named_parameters()}  # tied weights appear once
    matrices = sum(p.numel() for n, p in params.items() if p.dim() == 2 and "A_log" not in n)
    total = sum(p.numel() for p in params.values())
    vectors = total - matrices
    state = cfg.n_layer * (cfg.d_inner * cfg.d_state * 4 + (cfg.d_conv - 1) * cfg.conv_dim * 4)
    return {
        "architecture": cfg.arch,
        "layout": cfg.layout,
        "d_model": cfg.d_model, "n_layer": cfg.n_layer, "d_inner": cfg.d_inner,
        "d_state": cfg.d_state, "d_conv": cfg.d_conv, "dt_rank": cfg.dt_rank,
        "vocab_size": cfg.vocab_size, "tie_embeddings": cfg.tie_embeddings,
        "parameters": total,
        "size_bytes": {k: int(matrices * b + vectors * 4) for k, b in PRECISIONS.items()},
        "state_bytes_per_sequence": state,
    }


def format_summary(s: dict) -> str:
    mib = lambda b: f"{b / 2**20:,.1f} MiB"  # noqa: E731
    lines = [f"architecture  {s['architecture']} ({s['layout']} checkpoint)",
             f"dims          d_model {s['d_model']}, layers {s['n_layer']}, d_inner {s['d_inner']}, "
             f"d_state {s['d_state']}, d_conv {s['d_conv']}, dt_rank {s['dt_rank']}",
             f"vocab         {s['vocab_size']} ({'tied' if s['tie_embeddings'] else 'untied'} lm_head)",
             f"parameters    {s['parameters']:,}"]
    lines += [f"size {k:<8} {mib(v)}" for k, v in s["size_bytes"].items()]
    lines.append(f"state         {mib(s['state_bytes_per_sequence'])} per sequence (fp32)")
    return "\n".join(lines)
