"""Decode and prefill speed of edgeq graphs on ONNX Runtime (CPU), with per-op times, side by
side in one run.

    python tools/bench_ort_runtime.py GRAPH.onnx [GRAPH.onnx ...] [--threads 2] [--rounds 3]
        [--prompt-len 128] [--gen-len 16] [--before TREE] [--out bench/results/NAME]

Each graph (e.g. an fp32 and an int8 export of one model) runs in its own subprocess per round:
a prefill of --prompt-len tokens, then --gen-len single-token decode steps, timed; then a few
decode steps under ORT's profiler, summed per op type. --before TREE runs the same measurements
with another checkout's edgeq (its source tree and its built libedgeq_cpu, EDGEQ_CPU_LIB or
TREE/edgeq/lib), alternating with this one round by round, so that load from other jobs on a
shared machine hits both. Prints a table (medians over rounds) and writes NAME.json and NAME.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(graph: str, threads: int, prompt_len: int, gen_len: int, profile_steps: int) -> dict:
    """One graph's timings, in this process (edgeq imported from sys.path)."""
    import numpy as np
    import onnxruntime as ort

    from edgeq.runtime.backends import OrtBackend

    def run(backend):
        ids = np.random.default_rng(0).integers(0, backend.config.vocab_size, (1, prompt_len))
        state = backend.new_state(1)
        t = time.perf_counter()
        logits, state = backend.forward(ids, state, last=True)
        prefill = time.perf_counter() - t
        tok = np.argmax(logits[:, -1], -1)[:, None]
        backend.forward(tok, state, last=True)  # warm-up step
        t = time.perf_counter()
        for _ in range(gen_len):
            logits, state = backend.forward(tok, state, last=True)
            tok = np.argmax(logits[:, -1], -1)[:, None]
        return prompt_len / prefill, gen_len / (time.perf_counter() - t), state, tok

    backend = OrtBackend(graph, threads=threads)
    run(backend)  # warm-up: first-run allocations and prepacking
    prefill_tps, decode_tps, _, _ = run(backend)

    plain = ort.SessionOptions

    class Profiled(plain):  # the same session, with ORT's profiler on
        def __init__(self):
            super().__init__()
            self.enable_profiling = True

    ort.SessionOptions = Profiled
    try:
        prof = OrtBackend(graph, threads=threads)
    finally:
        ort.SessionOptions = plain
    state = prof.new_state(1)
    tok = np.zeros((1, 1), np.int64)
    for _ in range(profile_steps):
        logits, state = prof.forward(tok, state, last=True)
    path = prof.session.end_profiling()
    ops: dict[str, list] = {}
    for ev in json.loads(Path(path).read_text()):
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            op = ev["args"].get("op_name", "?")
            acc = ops.setdefault(op, [0.0, 0])
            acc[0] += ev["dur"] / profile_steps
            acc[1] += 1 / profile_steps
    Path(path).unlink()
    return {"prefill_tps": prefill_tps, "decode_tps": decode_tps,
            "ops_us_per_step": {k: v[0] for k, v in ops.items()},
            "calls_per_step": {k: round(v[1]) for k, v in ops.items()}}


def call_cost(n: int = 1000) -> dict:
    """One EdgeqHadamardInt8 call on a decode row (1 x 1536, Mamba-130m's d_inner): the C kernel
    alone, the Python wrapper, a one-node ORT session through the PyOp, and an Identity session
    (ORT's own run() cost): bridge = one-node - Identity - C call."""
    import timeit

    import numpy as np
    import onnxruntime as ort
    from onnx import helper

    from edgeq.ops.table import DOMAIN, HADAMARD_INT8
    from edgeq.runtime import kernels, ort_ops

    x = np.random.default_rng(0).standard_normal((1, 1, 1536)).astype(np.float32)
    y = np.empty(x.shape, np.int8)
    fn = getattr(kernels.library(), HADAMARD_INT8.c_symbol)
    per = lambda f: timeit.timeit(f, number=n) / n * 1e6  # noqa: E731

    def session(node, out_type):
        opts = ort.SessionOptions()
        opts.register_custom_ops_library(ort_ops.register())
        opts.intra_op_num_threads = 1
        io = [helper.make_tensor_value_info(v, t, [1, 1, 1536])
              for v, t in (("x", 1), ("y", out_type))]
        model = helper.make_model(helper.make_graph([node], "g", io[:1], io[1:]), opset_imports=[
            helper.make_opsetid("", 20), helper.make_opsetid(DOMAIN, 1)])
        s = ort.InferenceSession(ort_ops.for_ort(model).SerializeToString(), opts,
                                 providers=["CPUExecutionProvider"])
        return lambda: s.run(None, {"x": x})
    c = per(lambda: fn(x.ctypes.data, y.ctypes.data, 1, 1536, 0.05, None))
    out = {"c_call_us": c, "python_wrapper_us": per(lambda: kernels.hadamard_int8(x, 0.05)),
           "ort_pyop_us": per(session(helper.make_node(
               HADAMARD_INT8.name, ["x"], ["y"], domain=DOMAIN,
               **HADAMARD_INT8.node_attrs(y_scale=0.05)), 3)),
           "ort_identity_us": per(session(helper.make_node("Identity", ["x"], ["y"]), 1))}
    out["bridge_us"] = out["ort_pyop_us"] - out["ort_identity_us"] - c
    return out


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() \
            else ():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def spawn(tree: Path, graph: str, args) -> dict:
    env = dict(os.environ, EDGEQ_BENCH_TREE=str(tree))
    lib = tree / "edgeq" / "lib" / "libedgeq_cpu.so"
    if tree != ROOT:
        env["EDGEQ_CPU_LIB"] = os.environ.get("EDGEQ_BEFORE_LIB", str(lib))
    cmd = [sys.executable, __file__, "--worker", graph, "--threads", str(args.threads),
           "--prompt-len", str(args.prompt_len), "--gen-len", str(args.gen_len)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"worker failed on {graph} ({tree}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=16)
    ap.add_argument("--before", type=Path, help="another checkout to compare against")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if os.environ.get("EDGEQ_BENCH_TREE"):  # that tree's edgeq, not an editable install's
            sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
            sys.path.insert(0, os.environ["EDGEQ_BENCH_TREE"])
        print(json.dumps(worker(args.graphs[0], args.threads, args.prompt_len, args.gen_len, 4)))
        return
    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    runs: dict[tuple, list] = {}
    for r in range(args.rounds):
        for g in args.graphs:
            for label, tree in trees.items():
                runs.setdefault((label, g), []).append(spawn(tree, g, args))
                print(f"round {r + 1}: {label} {Path(g).name} "
                      f"{runs[label, g][-1]['decode_tps']:.2f} decode tok/s", file=sys.stderr)
    cost = call_cost()
    rows = []
    for (label, g), rs in runs.items():
        ops = {k: statistics.median(x["ops_us_per_step"].get(k, 0) for x in rs)
               for k in rs[0]["ops_us_per_step"]}
        rows.append({"code": label, "graph": Path(g).name,
                     "prefill_tps": statistics.median(x["prefill_tps"] for x in rs),
                     "decode_tps": statistics.median(x["decode_tps"] for x in rs),
                     "ops_us_per_step": ops, "calls_per_step": rs[0]["calls_per_step"]})
    lines = [f"machine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
             f"ORT intra-op threads {args.threads}, prompt {args.prompt_len}, "
             f"decode {args.gen_len} steps, medians of {args.rounds} interleaved rounds", "",
             "| code | graph | prefill tok/s | decode tok/s |", "|---|---|---|---|"]
    lines += [f"| {r['code']} | {r['graph']} | {r['prefill_tps']:.1f} | {r['decode_tps']:.2f} |"
              for r in rows]
    lines += ["", "one custom-op call (EdgeqHadamardInt8, 1 x 1536, this tree): " + ", ".join(
        f"{k[:-3]} {v:.1f} us" for k, v in cost.items())]
    for r in rows:
        total = sum(r["ops_us_per_step"].values())
        lines += ["", f"{r['code']} {r['graph']}: per decode step {total / 1e3:.2f} ms in ops",
                  "", "| op | calls/step | us/step | share |", "|---|---|---|---|"]
        for op, us in sorted(r["ops_us_per_step"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {op} | {r['calls_per_step'][op]} | {us:.0f} | {us / total:.1%} |")
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"runs": rows, "call": cost},
                                                            indent=1) + "\n")
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
