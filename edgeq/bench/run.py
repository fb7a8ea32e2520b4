"""Measure generation the way Quamba does: random prompt tokens, warm-up runs, then timed runs
of prefill (TTFT: the prompt to its first token, argmax of the logits included) and greedy
decode (TPOT: each further token), on CUDA events where the backend has them (trt)."""
from __future__ import annotations

import time

import numpy as np

from ..errors import EdgeqError
from ..host_memory import available_memory, meminfo, peak_rss_mib
from . import tegrastats


def percentile(xs, p: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=np.float64), p))


RUNTIME_COPIES = 3  # below the 3.4x to 3.8x measured (bench/results/bench_memory_check.md)


def needs(cfg, prompt_len: int, batch: int) -> dict[str, int]:
    """Bytes a run holds at least, all fp32 (as the ORT and torch backends compute; an int8
    graph keeps some activations narrower, but its kernels widen them): the prompt's ids, the
    states in and out, the last position's logits, the prefill's activations in a layer while
    its scan runs (the residual stream and its norm, the scan's input, gate, dt, B, C and
    output, for every token), and the runtime's working copies of them (quantize/dequantize
    outputs, kernel inputs, the allocator's slack)."""
    state = cfg.n_layer * (cfg.d_inner * cfg.d_state + (cfg.d_conv - 1) * cfg.conv_dim)
    per_token = 2 * cfg.d_model + 2 * cfg.d_inner + cfg.conv_dim + cfg.nheads
    activations = 4 * batch * prompt_len * per_token
    return {"ids": 8 * batch * prompt_len, "states": 2 * 4 * batch * state,
            "logits": 4 * batch * cfg.vocab_size, "activations": activations,
            "runtime": RUNTIME_COPIES * activations}


def check_fits(cfg, prompt_len: int, batch: int, available: int | None,
               total: int | None = None) -> None:
    """Refuse a run that cannot fit in the memory this host has available (None: unknown, not
    checked); total, the host's memory, is named in the message."""
    need = needs(cfg, prompt_len, batch)
    if available is not None and sum(need.values()) > available:
        parts = ", ".join(f"{k} {v / 2**30:.1f}" for k, v in need.items())
        of = f" of {total / 2**30:.1f} GiB" if total else ""
        raise EdgeqError(f"a prompt of {prompt_len} tokens at batch {batch} needs over "
                         f"{sum(need.values()) / 2**30:.1f} GiB ({parts}), and this host has "
                         f"{available / 2**30:.1f} GiB available{of}; lower --batch or --prompt-len")


class HostTimer:
    """perf_counter, for backends whose forward() returns when its work is done (ORT, torch):
    mark() takes the time, read() gives the ms between consecutive marks since the last read.
    A backend with a device clock gives the same interface from its timer(marks)."""

    def __init__(self):
        self.marks: list[float] = []

    def mark(self) -> None:
        self.marks.append(time.perf_counter())

    def read(self) -> list[float]:
        marks, self.marks = self.marks, []
        return [1e3 * (b - a) for a, b in zip(marks, marks[1:])]


def bench(backend, prompt_len: int, gen_len: int, batch: int = 1, warmup: int = 1,
          iters: int = 3, seed: int = 0) -> dict:
    if backend.name != "trt":  # an engine's memory is already held; its profiles refuse the rest
        check_fits(backend.config, prompt_len, batch, available_memory(), meminfo("MemTotal"))
    vocab = backend.config.vocab_size
    ids = np.random.default_rng(seed).integers(0, vocab, (batch, prompt_len))
    ttft, tpot, totals = [], [], []
    timer = backend.timer(gen_len + 1) if hasattr(backend, "timer") else HostTimer()
    device_used = None
    with tegrastats.Recorder() as power:  # a failed run leaves no tegrastats running
        for it in range(warmup + iters):
            if it == warmup:
                power.start()
            state = backend.new_state(batch)
            timer.mark()
            logits, state = backend.forward(ids, state, last=True)
            tok = logits[:, -1].argmax(-1)
            timer.mark()
            for _ in range(gen_len - 1):
                logits, state = backend.forward(tok[:, None], state)
                tok = logits[:, -1].argmax(-1)
                timer.mark()
            if hasattr(backend, "device_used_mib"):  # the decode's memory all still held
                device_used = backend.device_used_mib()
            ms = timer.read()
            if it >= warmup:
                ttft.append(ms[0])
                tpot.extend(ms[1:])
                totals.append(sum(ms))
        energy = power.stop()
    result = {
        "backend": backend.name, "prompt_len": prompt_len, "gen_len": gen_len, "batch": batch,
        "warmup": warmup, "iters": iters,
        "ttft_ms": float(np.mean(ttft)),
        "tpot_ms": float(np.mean(tpot)) if tpot else None,
        "tpot_p50_ms": percentile(tpot, 50) if tpot else None,
        "tpot_p90_ms": percentile(tpot, 90) if tpot else None,
        "tokens_per_s": 1e3 * batch * gen_len / float(np.mean(totals)),
        "decode_tokens_per_s": 1e3 * batch / float(np.mean(tpot)) if tpot else None,
        "peak_rss_mib": peak_rss_mib(),
        "tpot_series_ms": tpot[: gen_len - 1],
    }
    if device_used is not None:  # cudaMemGetInfo has no peak: in use after the last step
        result["device_used_decode_mib"] = device_used
    if energy:
        result.update(energy)
        result["tokens_per_joule"] = batch * gen_len * iters / energy["energy_j"]
    return result
