"""Decode and 128-token prefill speed on this CPU, side by side in one run: llama.cpp Q8_0 and F32
(llama-bench), transformers fp32 (greedy generate) and edgeq's fp32 and W8A8 int8 graphs
on ONNX Runtime (`edgeq bench --backend ort`), on a random Mamba-1 at mamba-130m's widths and
the demo models, in interleaved rounds (noise on a shared machine hits every runtime alike);
then the ratios, and the int8 graph's custom ops' per-call overhead at batch 1 decode (ONNX
Runtime's profiler, minus the C kernel's own time; split into edgeq's Python and the PyOps bridge).

    python tools/bench_cpu_runtime.py [--edgeq-python PY] [--rounds 3] [--threads 2]
        [--skip-llama-cpp] [--tiny] [--out FILE.md] [--json FILE.json]

--edgeq-python picks the edgeq under test: that interpreter runs every edgeq command (another
worktree's .venv benches that worktree's code); transformers and llama.cpp's converter run in
this one. llama.cpp comes from PyPI's llama-cpp-python source distribution (its vendored
llama.cpp), built once into --cache. --tiny benches a 2-layer model of width 96 with a short
prompt, edgeq and transformers only: a fast check of the script, not a measurement."""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LLAMA_CPP_PYTHON = "0.3.36"  # PyPI's llama-cpp-python whose sdist vendors the llama.cpp we build
# The demo tokenizer is byte-level BPE with GPT-2's split regex, which llama.cpp knows as
# "gpt-2"; its converter only knows tokenizers by a hash of their output, so we name it.
PRE_TOKENIZER = "gpt-2"

MODELS = {  # name -> transformers MambaConfig kwargs, or a folder
    "mamba-130m-widths": dict(vocab_size=2048, hidden_size=768, num_hidden_layers=24,
                                     state_size=16),
    "demo-mamba": ROOT / "examples" / "demo-mamba",
    "demo-mamba2": ROOT / "examples" / "demo-mamba2",
}
TINY = {"tiny h96": dict(vocab_size=1001, hidden_size=96, num_hidden_layers=2, state_size=16)}
RUNTIMES = ["llama.cpp Q8_0", "llama.cpp F32", "transformers fp32", "edgeq fp32 (ORT)",
            "edgeq int8 W8A8 (ORT)"]
RECIPE = {"mamba": "quamba-w8a8", "mamba2": "quamba2-w8a8"}  # by the config's model_type
INT8, FP32, HF, Q8 = RUNTIMES[4], RUNTIMES[3], RUNTIMES[2], RUNTIMES[0]


def run(cmd, env=None, cwd=None, timeout=3600) -> str:
    """Run a command; its last stderr line becomes the error when it fails."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=timeout)
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"{Path(str(cmd[0])).name} exited {p.returncode}: {tail[:300]}")
    return p.stdout


# --- llama.cpp ----------------------------------------------------------------------------

def llama_source(cache: Path) -> Path:
    """The sdist unpacked as cache/sdist (renamed whole: an interrupted unpack is redone)."""
    src = cache / "sdist" / "vendor" / "llama.cpp"
    if not src.is_dir():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", tmp], timeout=900)
            with tarfile.open(f"{tmp}/llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz") as t:
                t.extractall(tmp, filter="data")
            Path(tmp, f"llama_cpp_python-{LLAMA_CPP_PYTHON}").rename(cache / "sdist")
    return src


def build_llama_bench(cache: Path) -> Path:
    """llama-bench from the vendored llama.cpp, built once (nice, 2 jobs: a shared machine)."""
    exe = cache / "build" / "bin" / "llama-bench"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second run waits for the first one's build
        if not exe.is_file():
            build(cache)
    return exe


def build(cache: Path) -> None:
    src = llama_source(cache)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    run([*nice, "cmake", "-S", src, "-B", cache / "build", "-DCMAKE_BUILD_TYPE=Release",
         "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
         "-DLLAMA_BUILD_APP=OFF"])
    run([*nice, "cmake", "--build", cache / "build", "--target", "llama-bench", "-j2"],
        timeout=7200)


CONVERT = """import sys, runpy
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/gguf-py"]  # the converter reads sys.path[0]/models
import conversion.base as base
pre, script = sys.argv[2], sys.argv[1] + "/convert_hf_to_gguf.py"
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


def convert_gguf(src: Path, model: Path, out: Path, outtype: str) -> Path:
    """llama.cpp's own converter with the vendored gguf-py, the pre-tokenizer named."""
    run([sys.executable, "-c", CONVERT, src, PRE_TOKENIZER, model, "--outtype", outtype,
         "--outfile", out])
    return out


def llama_round(exe: Path, gguf: Path, args, repack: list[str]) -> tuple[float, float]:
    out = run([exe, "-m", gguf, "-t", args.threads, "-p", args.prompt_len, "-n", args.gen,
               "-r", 1, "-o", "json", *repack])
    rows = json.loads(out)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] and not r["n_gen"])
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] and not r["n_prompt"])
    return pp, tg


# --- transformers ---------------------------------------------------------------------------

class Stamps:
    """A logits processor that notes the time each new token's logits are ready."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def hf_round(hf, args, vocab: int, seed: int) -> tuple[float, float]:
    import torch
    ids = torch.from_numpy(np.random.default_rng(seed).integers(0, vocab, (1, args.prompt_len)))
    stamps = Stamps()
    start = time.perf_counter()
    with torch.no_grad():
        hf.generate(ids, max_new_tokens=args.gen, min_new_tokens=args.gen, do_sample=False,
                    logits_processor=[stamps], pad_token_id=0, eos_token_id=None)
    t = [start] + stamps.times
    return args.prompt_len / (t[1] - t[0]), (len(t) - 2) / (t[-1] - t[1])


# --- edgeq ------------------------------------------------------------------------------------

def edgeq(args, *cmd, timeout=3600) -> str:
    return run([args.edgeq_python, "-m", "edgeq.cli", *cmd], env=args.env, timeout=timeout)


def edgeq_graphs(args, model: Path, vocab: int, recipe: str, work: Path) -> dict[str, Path]:
    """The fp32 graph, and the W8A8 one calibrated on a few random token windows
    (its speed does not depend on its scales)."""
    calib = work / "calib.npy"
    np.save(calib, np.random.default_rng(0).integers(0, vocab, (args.calib, args.calib_len)))
    edgeq(args, "export", model, "-o", work / "fp32.onnx")
    edgeq(args, "quantize", model, "--recipe", recipe, "--calib", calib, "--samples",
          args.calib, "--seq-len", args.calib_len, "-o", work / "q")
    edgeq(args, "export", work / "q", "-o", work / "int8.onnx")
    return {FP32: work / "fp32.onnx", INT8: work / "int8.onnx"}


def edgeq_round(args, graph: Path) -> tuple[float, float]:
    r = json.loads(edgeq(args, "bench", graph, "--backend", "ort", "--prompt-len",
                         args.prompt_len, "--gen-len", args.gen + 1, "--warmup", 1, "--iters", 1,
                         "--json"))
    return 1e3 * args.prompt_len / r["ttft_ms"], r["decode_tokens_per_s"]


PROFILE = """import json, sys, time, numpy as np, onnxruntime as ort
from edgeq.runtime import kernels, ort_ops
from edgeq.runtime.backends import OrtBackend
base = ort.SessionOptions
def profiling():  # every session edgeq opens records its nodes
    o = base(); o.enable_profiling = True; o.profile_file_prefix = sys.argv[2]; return o
ort.SessionOptions = profiling
spent = {"c": {}, "hook": {}}  # by op type, per call: its C kernels, the PyOp hook (Python)
inside = []  # the C kernel calls of the hook running now (a fused op makes several)
c_call, hook = kernels._call, ort_ops._invoke
def timed_c_call(name, *args):
    t = time.perf_counter(); c_call(name, *args); inside.append(time.perf_counter() - t)
def timed_hook(op_id, inputs, attrs):
    inside.clear(); t = time.perf_counter(); out = hook(op_id, inputs, attrs)
    op = ort_ops._OPS[op_id].op_type
    spent["hook"].setdefault(op, []).append(time.perf_counter() - t)
    spent["c"].setdefault(op, []).append(sum(inside))
    return out
kernels._call, ort_ops._invoke = timed_c_call, timed_hook  # before register() installs the hook
b = OrtBackend(sys.argv[1]); state = b.new_state(1); tok = np.zeros((1, 1), np.int64)
for i in range(int(sys.argv[3])):
    if i == 1:  # the first step, cold, left out as in the profile
        spent["c"].clear(); spent["hook"].clear()
    logits, state = b.forward(tok, state); tok = logits[:, -1].argmax(-1)[:, None]
med = lambda d: {k: 1e6 * float(np.median(v)) for k, v in d.items()}
print(json.dumps({"trace": b.session.end_profiling(), "config": b.config.__dict__,
                  "c_us": med(spent["c"]), "hook_us": med(spent["hook"])}, default=str))
"""


def op_calls(args, graph: Path, steps: int, work: Path) -> tuple[dict, dict]:
    """Per custom-op type: calls per decode step and the median call time (us), from ORT's
    profiler over `steps` batch-1 decode steps (the first step, cold, left out), split into
    the C kernel, edgeq's Python around it (the PyOp hook and the kernel's ctypes wrapper) and
    the PyOps bridge (onnxruntime-extensions' C++ side: ORT tensors to numpy arrays and back)."""
    r = json.loads(run([args.edgeq_python, "-c", PROFILE, graph, work / "ortprof", steps],
                       env=args.env))
    events = json.loads(Path(r["trace"]).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    cold_end = runs[0]["ts"] + runs[0]["dur"] if runs else 0
    times: dict[str, list[float]] = {}
    for e in events:
        op = e.get("args", {}).get("op_name", "")
        if e.get("cat") == "Node" and op.startswith("Edgeq") and e["ts"] >= cold_end:
            times.setdefault(op, []).append(e["dur"])
    warm = max(len(runs) - 1, 1)
    per_op = {}
    for op, t in sorted(times.items()):
        o = per_op[op] = {"calls_per_token": len(t) / warm, "call_us": statistics.median(t),
                          "kernel_us": r["c_us"][op],
                          "hook_us": r["hook_us"][op]}
        # the hook holds the C call; ORT's node time holds the hook
        o["python_us"] = o["hook_us"] - o["kernel_us"]
        o["bridge_us"] = o["call_us"] - o["hook_us"]
        o["overhead_us"] = o["call_us"] - o["kernel_us"]
    return per_op, r["config"]


def flop_rate() -> float:
    """float32 multiply-adds per second of one core in cache (numpy's dot): what vectorised
    kernel arithmetic can reach here."""
    a = np.ones(1 << 15, np.float32)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 0.2:
        a.dot(a)
        n += 1
    return 2 * a.size * n / (time.perf_counter() - start)


def flops(op: str, c: dict) -> float | None:
    """A decode step's arithmetic in one call (rough counts: exp ~ 4, dequantize/quantize ~ 3
    per value); None for an op without a count here. A fused op (cpu_fusion) adds its ops'."""
    d, n, k, h = c["expand"] * c["d_model"], c["d_state"], c["d_conv"], c["d_model"]
    count = {"EdgeqHadamardInt8": d * (np.log2(d) + 4), "EdgeqSelectiveScanInt8": d * n * 10 + d * 25,
             "EdgeqCausalConv1dInt8": d * (2 * k + 8), "EdgeqAddRMSNormInt8": h * 10}
    parts = [count.get(p) for p in op.split("+")]
    return None if None in parts else sum(parts)


# --- tables -------------------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


RATIOS = [("int8 / llama.cpp Q8_0", Q8, ">= 0.5"), ("int8 / transformers fp32", HF, ">= 1"),
          ("int8 / edgeq fp32", FP32, "> 1")]


def ratios(speeds: dict) -> list[dict]:
    """speeds: runtime -> {"prefill": [...], "decode": [...]}; the int8 graph against each."""
    out = []
    for name, other, target in RATIOS:
        row = {"ratio": name, "target": target}
        for kind in ("prefill", "decode"):
            a, b = (med(speeds.get(r, {}).get(kind, [])) for r in (INT8, other))
            row[kind] = a / b if a and b else None
        out.append(row)
    return out


def markdown(result: dict) -> str:
    lines = [f"CPU runtimes, {result['machine']}, {result['threads']} threads, prompt "
             f"{result['prompt_len']} tokens, {result['gen']} decode tokens, median of "
             f"{result['rounds']} interleaved rounds; edgeq {result['edgeq']} "
             f"({result['edgeq_python']}); {result['versions']}.", ""]
    for note in result["notes"]:
        lines.append(f"- {note}")
    for m in result["models"]:
        lines += ["", f"### {m['name']} (int8: {m['recipe']})", "",
                  "| runtime | prefill tok/s | decode tok/s | rounds |",
                  "|---|---|---|---|"]
        for r in RUNTIMES:
            s = m["speeds"].get(r)
            if s is None:
                lines.append(f"| {r} | — | — | {m['failed'].get(r, 'not run')} |")
            else:
                lines.append(f"| {r} | {fmt(med(s['prefill']))} | {fmt(med(s['decode']))} | "
                             f"{len(s['decode'])} |")
        lines += ["", "| ratio | prefill | decode | target |", "|---|---|---|---|"]
        for row in m["ratios"]:
            lines.append(f"| {row['ratio']} | {fmt(row['prefill'], '.3f')}x | "
                         f"{fmt(row['decode'], '.3f')}x | {row['target']} |")
    ops = result.get("ops")
    if ops:
        lines += ["", f"### Custom-op calls, int8 graph, batch 1 decode, {ops['model']} "
                  f"(d_inner {ops['d_inner']}; ORT profiler, median of {ops['steps']} steps; "
                  f"arithmetic at {ops['gflops']:.1f} GFLOP/s, one core's numpy dot)", "",
                  "The call (ORT's node time) is the C kernel, edgeq's Python around it (PyOp "
                  "hook, ctypes wrapper) and the PyOps bridge (onnxruntime-extensions' C++ side); "
                  "overhead is the call minus the C kernel. Ideal arithmetic: the op's "
                  "multiply-adds at the numpy rate, what the kernel could reach.", "",
                  "| op | calls per token | call us | C kernel us | Python us | bridge us | "
                  "overhead us | target | ideal arithmetic us |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for op, o in ops["per_op"].items():
            lines.append(f"| {op} | {o['calls_per_token']:g} | {o['call_us']:.1f} | "
                         f"{o['kernel_us']:.1f} | {o['python_us']:.1f} | {o['bridge_us']:.1f} | "
                         f"{o['overhead_us']:.1f} | <= 10 | {fmt(o['arith_us'], '.1f')} |")
    return "\n".join(lines) + "\n"


def readme_table(result: dict, link: str) -> str:
    """The first model's speeds and ratios, for README's performance section."""
    m = result["models"][0]
    lines = [f"{m['name']}, {result['threads']} threads, {result['machine']}, median of "
             f"{result['rounds']} interleaved rounds (`tools/bench_cpu_runtime.py`; all models, "
             f"versions and the custom ops' per-call overhead in [{link}]({link})).", "",
             "| runtime | prefill tok/s (128 tokens) | decode tok/s |", "|---|---|---|"]
    for r, s in m["speeds"].items():
        lines.append(f"| {r} | {fmt(med(s['prefill']))} | {fmt(med(s['decode']))} |")
    for row in m["ratios"]:
        lines.append(f"| {row['ratio']} (target {row['target']}) | {fmt(row['prefill'], '.3f')}x "
                     f"| {fmt(row['decode'], '.3f')}x |")
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------------

def prepare(name, spec, work: Path, args, llama) -> dict:
    """The model's folder, its GGUF files and edgeq graphs, and its transformers model."""
    from transformers import AutoModelForCausalLM, MambaConfig, MambaForCausalLM
    import torch
    folder = work / "model"
    if isinstance(spec, dict):  # made in code, seeded: the same weights every run
        torch.manual_seed(0)
        MambaForCausalLM(MambaConfig(**spec)).save_pretrained(folder)
    else:
        shutil.copytree(spec, folder)
        # transformers 5 reads a bare tokenizer.json as GPT-NeoX's and adds a token past the
        # vocabulary, which llama.cpp's converter refuses: ask for the file as it is
        (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "PreTrainedTokenizerFast"}')
    cfg = json.loads((folder / "config.json").read_text())
    vocab, d_inner = cfg["vocab_size"], cfg.get("intermediate_size", 2 * cfg["hidden_size"])
    m = {"name": name, "folder": folder, "vocab": vocab, "d_inner": d_inner, "run": {},
         "failed": {}, "speeds": {}, "recipe": RECIPE[cfg["model_type"]]}
    m["hf"] = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    m["run"][HF] = lambda i: hf_round(m["hf"], args, vocab, i)
    try:
        for r, g in edgeq_graphs(args, folder, vocab, m["recipe"], work).items():
            m["run"][r] = lambda i, g=g: edgeq_round(args, g)
            m[r] = g
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        m["failed"][FP32] = m["failed"][INT8] = f"failed: {e}"
    if llama.get("exe"):
        for r, t in ((Q8, "q8_0"), (RUNTIMES[1], "f32")):
            try:
                g = convert_gguf(llama["src"], folder, work / f"{t}.gguf", t)
                m["run"][r] = lambda i, g=g: llama_round(llama["exe"], g, args, llama["repack"])
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                m["failed"][r] = f"failed: {e}"
    return m


def one_round(m, runtime, i, llama, notes):
    try:
        return m["run"][runtime](i)
    except RuntimeError as e:
        # AMX repacking crashed here once (a signal, a negative code); a load error is not that
        if runtime.startswith("llama") and not llama["repack"] and "exited -" in str(e):
            llama["repack"] = ["--repack", "0"]
            notes.append(f"llama-bench failed ({e}); every llama.cpp run uses --repack 0")
            return m["run"][runtime](i)
        raise


def bench(args) -> dict:
    import torch
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # the slow-path notice, once per model
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    notes, llama = [], {"repack": []}
    if args.skip_llama_cpp:
        notes.append("llama.cpp: skipped (--skip-llama-cpp)")
    else:
        try:
            llama["exe"] = build_llama_bench(args.cache)
            llama["src"] = llama_source(args.cache)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            notes.append(f"llama.cpp: not built ({e}); the other runtimes are below")
            print(f"bench_cpu_runtime: llama.cpp not built ({e}); going on without it",
                  file=sys.stderr)
    if os.cpu_count() != args.threads:
        notes.append(f"ONNX Runtime's intra-op pool takes its default ({os.cpu_count()} "
                     "logical CPUs here; edgeq bench has no thread option)")
    specs = TINY if args.tiny else {k: MODELS[k] for k in args.models
                                    if isinstance(MODELS[k], dict) or (MODELS[k] / "config.json").is_file()}
    with tempfile.TemporaryDirectory(prefix="edgeq-cpu-bench-") as tmp:
        models = []
        for name, spec in specs.items():
            work = Path(tmp) / name.replace(" ", "-")
            work.mkdir()
            print(f"preparing {name}", file=sys.stderr)
            models.append(prepare(name, spec, work, args, llama))
        for i in range(args.rounds):  # every runtime once per round, the order rotated
            for m in models:
                order = [r for r in RUNTIMES if r in m["run"]]
                order = order[i % len(order):] + order[:i % len(order)]
                for r in order:
                    try:
                        pp, tg = one_round(m, r, i, llama, notes)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        m["failed"][r] = f"failed: {e}"
                        del m["run"][r]
                        continue
                    s = m["speeds"].setdefault(r, {"prefill": [], "decode": []})
                    s["prefill"].append(pp)
                    s["decode"].append(tg)
                    print(f"round {i + 1} {m['name']} {r}: prefill {pp:.2f} decode {tg:.2f} "
                          "tok/s", file=sys.stderr)
        ops = None
        target = max(models, key=lambda m: m["d_inner"])  # the issue's 1536 when benched
        if INT8 in target:
            per_op, cfg = op_calls(args, target[INT8], args.profile_steps, Path(tmp))
            rate = flop_rate()
            for op, o in per_op.items():
                f = flops(op, cfg)
                o["arith_us"] = None if f is None else 1e6 * f / rate
            ops = {"model": target["name"], "d_inner": cfg["expand"] * cfg["d_model"],
                   "steps": args.profile_steps - 1, "gflops": rate / 1e9, "per_op": per_op}
    notes.append(f"1-minute load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at "
                 f"the end, on {os.cpu_count()} logical CPUs (other jobs share this machine)")
    result = {"machine": f"{platform.machine()} {platform.processor() or ''} "
                         f"{cpu_name()}".replace("  ", " ").strip(),
              "threads": args.threads, "prompt_len": args.prompt_len, "gen": args.gen,
              "rounds": args.rounds, "edgeq_python": str(args.edgeq_python),
              "edgeq": edgeq_version(args), "versions": versions(llama), "notes": notes,
              "ops": ops, "models": []}
    for m in models:
        result["models"].append({"name": m["name"], "recipe": m["recipe"], "speeds": m["speeds"],
                                 "failed": m["failed"], "ratios": ratios(m["speeds"])})
    return result


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return ""


def edgeq_version(args) -> str:
    """The edgeq under test: its version and, from a git checkout, its commit."""
    code = ("import edgeq, pathlib; print(edgeq.__version__, "
            "pathlib.Path(edgeq.__file__).resolve().parents[1])")
    version, where = run([args.edgeq_python, "-c", code], env=args.env).split()
    try:
        commit = run(["git", "-C", where, "rev-parse", "--short", "HEAD"]).strip()
        if run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"]).strip():
            commit += " with uncommitted changes"
    except (RuntimeError, OSError):
        commit = "no git"
    return f"{version} at {where} ({commit})"


def versions(llama) -> str:
    import onnxruntime
    import torch
    import transformers
    llama_v = f"llama.cpp from llama-cpp-python {LLAMA_CPP_PYTHON}" if llama.get("exe") else \
        "no llama.cpp"
    return (f"{llama_v}, transformers {transformers.__version__}, torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__} (this interpreter's)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edgeq-python", type=Path, default=Path(sys.executable),
                    help="the interpreter whose edgeq is benched (default: this one)")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                    metavar="MODEL", help=f"any of {', '.join(MODELS)} (default: all present)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen", type=int, default=32, help="decode tokens per round")
    ap.add_argument("--skip-llama-cpp", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="a fast check of the script, not a measurement")
    ap.add_argument("--cache", type=Path,
                    default=Path.home() / ".cache" / "edgeq-bench" / f"llama.cpp-{LLAMA_CPP_PYTHON}",
                    help="where llama.cpp's source and build are kept between runs")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    ap.add_argument("--json", type=Path, help="also write every round's numbers here")
    ap.add_argument("--readme", action="store_true",
                    help="put the first model's table into README.md, linking to --out")
    args = ap.parse_args()
    if not os.access(args.edgeq_python, os.X_OK):
        print(f"bench_cpu_runtime: {args.edgeq_python} is not an executable Python; give the "
              "interpreter of the edgeq to bench with --edgeq-python", file=sys.stderr)
        return 2
    for path in (args.out, args.json):
        if path and not path.parent.is_dir():
            print(f"bench_cpu_runtime: no folder {path.parent} for {path}; create it or give "
                  "another path", file=sys.stderr)
            return 2
    if args.readme and not args.out:
        print("bench_cpu_runtime: --readme links to the full table: give --out too",
              file=sys.stderr)
        return 2
    if args.rounds < 1 or args.threads < 1 or args.gen < 2:
        print("bench_cpu_runtime: --rounds and --threads must be 1 or more, --gen 2 or more",
              file=sys.stderr)
        return 2
    args.prompt_len, args.calib, args.calib_len = (16, 2, 32) if args.tiny else (128, 4, 128)
    args.profile_steps = 4 if args.tiny else 20
    if args.tiny:
        args.rounds, args.gen = 1, 4
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: temp folders go
    args.env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    result = bench(args)
    text = markdown(result)
    print(text, end="")
    for path, content in ((args.out, text), (args.json, json.dumps(result, indent=1))):
        if path:  # whole or not at all
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(content)
            tmp.replace(path)
    if args.readme:
        sys.path.insert(0, str(ROOT / "tools"))
        from readme_table import write
        write("cpu-runtime-table", readme_table(result, os.path.relpath(args.out, ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
