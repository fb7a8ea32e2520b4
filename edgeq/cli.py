"""The edgeq command line: thin commands over the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import EdgeqError
from .quant.recipe import names as recipe_names

RECIPES = ", ".join(recipe_names())  # for help texts
TOKENIZER = click.option(
    "--tokenizer", default=None, help="A tokenizer.json, its folder or a hub id, instead of the "
    "model's (state-spaces checkpoints have none: GPT-NeoX-20B's from the hub by default).")
SAMPLES = click.option("--samples", default=512, show_default=True, type=click.IntRange(1),
                       help="Calibration windows drawn from the data.")
SEQ_LEN = click.option("--seq-len", default=512, show_default=True, type=click.IntRange(2),
                       help="Tokens per calibration window.")
MAX_NEW_TOKENS = 100_000  # a bound on one run; the states do not grow with it
H2T = click.option("--h2t", is_flag=True,
                   help="Head-to-toe: embedding and lm_head 4-bit too (quamba2-w4 recipes).")
RESIDUAL_HADAMARD = click.option(
    "--residual-hadamard", is_flag=True,
    help="Rotate the residual stream by a Hadamard (quamba2 recipes; unties the head).")
TARGET = click.option("--target", "target_name", required=True,
                      help="A target from `edgeq targets`.")
A16_FRACTION = click.option(
    "--a16-fraction", type=float, default=None,
    help="quamba2-w4ax: the fraction of layers that run W4A16, the rest W4A8 (recipe: 0.25).")


@click.group()
@click.version_option(package_name="edgeq")
def cli():
    """edgeq: quantized Mamba models for NVIDIA Jetson Orin Nano."""


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(model, as_json):
    """Architecture, dims, parameter count and size at each precision."""
    import torch

    from .models import MambaLM, load_model, read_config
    from .hub import resolve
    from .models.inspect import format_summary, summary
    from .quant import folder as quant_folder
    folder = resolve(model)
    if quant_folder.is_quantized(folder):  # dims from the config; the int8 folder as it is on disk
        with torch.device("meta"):
            s = summary(MambaLM(read_config(folder)))
        s["recipe"] = quant_folder.read_meta(folder)[1]["recipe"].name
        s["quantized_bytes"] = (folder / "model.safetensors").stat().st_size
    else:
        s = summary(load_model(str(folder))[0])
    if as_json:
        click.echo(json.dumps(s))
    else:
        click.echo(format_summary(s))
        if "recipe" in s:
            click.echo(f"quantized     {s['recipe']}, {s['quantized_bytes'] / 2**20:,.1f} MiB on disk")


@cli.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The .onnx file to write.")
@TOKENIZER
def export(model, output, tokenizer):
    """Export MODEL (a checkpoint or a quantized folder) to one stateful ONNX graph."""
    from .export.onnx_export import save, to_onnx
    from .models.loader import find_tokenizer
    from .output import check_output
    from .sources import load_torch
    from .tokenizer import META_KEY
    if output.suffix != ".onnx":
        raise EdgeqError(f"{output}: the output must end in .onnx")
    check_output(output)
    lm, folder = load_torch(model)
    meta = {}
    tok_json = find_tokenizer(folder, tokenizer, lm.cfg.vocab_size)
    if tok_json:
        meta[META_KEY] = tok_json
    if getattr(lm, "recipe", None):
        meta["edgeq.recipe"] = lm.recipe.name
    proto = to_onnx(lm, meta)
    save(proto, output)
    click.echo(f"wrote {output}")


def _prompt_ids(prompt, prompt_ids, tok, vocab_size: int) -> list[int]:
    from .tokenizer import MISSING
    if (prompt is None) == (prompt_ids is None):
        raise EdgeqError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3")
    if prompt_ids is not None:
        try:
            ids = [int(x) for x in prompt_ids.split(",") if x.strip()]
        except ValueError:
            raise EdgeqError(f"--prompt-ids {prompt_ids!r}: expected integers like 1,2,3") from None
    else:
        if tok is None:
            raise EdgeqError(f"the model has no tokenizer; {MISSING}, or --prompt-ids "
                             "instead of --prompt")
        ids = tok.encode(prompt).ids
    if not ids:
        raise EdgeqError("the prompt is empty; give at least one token")
    if not all(0 <= i < vocab_size for i in ids):
        raise EdgeqError(f"prompt ids fall outside the vocabulary (0..{vocab_size - 1}); give "
                         "ids of this model's tokenizer")
    return ids


@cli.command()
@click.argument("source", metavar="MODEL_OR_ONNX")
@click.option("--backend", type=click.Choice(["torch", "ort"]), default=None,
              help="torch for a model folder, ort for an .onnx (default by source).")
@click.option("--prompt", default=None, help="Prompt text (needs the model's tokenizer).")
@click.option("--prompt-ids", default=None, help="Prompt token ids, comma separated.")
@click.option("--max-new-tokens", default=64, show_default=True,
              type=click.IntRange(1, MAX_NEW_TOKENS),
              help=f"Tokens to generate after the prompt (at most {MAX_NEW_TOKENS:,}; fewer "
                   "when the model emits its end-of-text token).")
@click.option("--greedy", is_flag=True, help="Always take the most likely token (the default "
              "unless --temperature, --top-k or --top-p is given).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sample with the logits divided by this (default 1 when sampling).")
@click.option("--top-k", type=click.IntRange(0), default=None,
              help="Sample among the K most likely tokens only (0: all).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Sample among the most likely tokens whose probabilities reach P (nucleus).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Seeds the sampling.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the ids.")
@TOKENIZER
def generate(source, backend, prompt, prompt_ids, max_new_tokens, greedy, temperature, top_k,
             top_p, seed, as_json, tokenizer):
    """Generate text from MODEL_OR_ONNX, streamed as it comes."""
    from .runtime.generate import Sampling
    from .sources import open_backend
    from .runtime.generate import generate as run
    from .tokenizer import Streamer, eos_id
    if any(v != v for v in (temperature, top_p) if v is not None):  # NaN passes FloatRange
        raise EdgeqError("--temperature and --top-p take numbers, not nan")
    sampled = any(v is not None for v in (temperature, top_k, top_p))
    if greedy and sampled:
        raise EdgeqError("--greedy excludes --temperature/--top-k/--top-p; give one or the other")
    sampling = Sampling(greedy=not sampled, temperature=temperature or 1.0, top_k=top_k or 0,
                        top_p=top_p or 1.0, seed=seed)
    be, tok = open_backend(source, backend, tokenizer)
    ids = _prompt_ids(prompt, prompt_ids, tok, be.config.vocab_size)
    stream = Streamer(tok) if tok is not None and not as_json else None
    if stream and prompt is not None:
        click.echo(prompt, nl=False)
    out = run(be, ids, max_new_tokens, sampling, eos_id=eos_id(tok) if tok else None,
              on_token=stream)
    if as_json:
        res = {"backend": be.name, "prompt_ids": ids, "ids": out}
        if tok is not None:
            res["text"] = tok.decode(out)
        click.echo(json.dumps(res))
    elif stream:
        click.echo()
    else:
        click.echo(" ".join(map(str, out)))


@cli.command()
@click.argument("model")
@click.option("--recipe", default="quamba-w8a8", show_default=True,
              help=f"A recipe from edgeq/quant/recipes: {RECIPES}.")
@click.option("--calib", "calib_data", required=True,
              help="Calibration data: a text file, a folder of .txt files, a tokenized .npy "
                   "array, or a `datasets` id with its text column, NAME or NAME:SUBSET (online).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The quantized folder to create.")
@SAMPLES
@SEQ_LEN
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1),
              help="Calibration windows run at once (more: faster, more memory).")
@click.option("--percentile", type=float, default=None,
              help="Clip the SSM input at this percentile of |x| (quamba-w8a8: 99.999).")
@click.option("--per-channel", is_flag=True, help="Per-output-channel weight scales.")
@H2T
@RESIDUAL_HADAMARD
@A16_FRACTION
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Chooses the calibration windows.")
@TOKENIZER
def quantize(model, recipe, calib_data, output, samples, seq_len, batch, percentile, per_channel,
             h2t, residual_hadamard, a16_fraction, seed, tokenizer):
    """Calibrate MODEL and write its quantized folder (safetensors + quant.json)."""
    import time

    from .models import load_model
    from .models.loader import find_tokenizer
    from .output import check_output
    from .quant import calib_data as data
    from .quant import recipe as recipes
    from .quant.pipeline import quantize_to
    from .tokenizer import from_json
    rec = recipes.load(recipe, percentile, per_channel, h2t, residual_hadamard, a16_fraction)
    check_output(output)
    lm, folder = load_model(model)
    tok_json = find_tokenizer(folder, tokenizer, lm.cfg.vocab_size)
    windows = data.windows(data.load_tokens(calib_data, from_json(tok_json)), samples,
                           seq_len, lm.cfg.vocab_size, seed)
    recipes.check_supported(lm.cfg, rec)
    t0 = time.time()
    quantize_to(output, lm, windows, rec,
                {"data": str(calib_data), "samples": samples, "seq_len": seq_len, "seed": seed},
                tok_json, batch, stage=_progress_bar)
    click.echo(f"wrote {output} ({rec.name}, calibrated on {samples} x {seq_len} tokens "
               f"in {time.time() - t0:.1f} s)")


def _progress_bar(name: str, steps: int, fn, *args):
    """A quantization pipeline stage under a progress bar on stderr."""
    label = {"calibrate": "calibrating", "quantize": "quantizing"}[name]
    with click.progressbar(length=steps, label=label, file=sys.stderr) as bar:
        return fn(*args, progress=bar.update)


@cli.command(name="eval")
@click.argument("source", metavar="MODEL_OR_QUANT_DIR_OR_ONNX")
@click.option("--ppl", "ppl_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Perplexity on this held-out text file.")
@click.option("--tasks", default=None,
              help="lm-eval harness tasks, comma separated (needs lm_eval and its data).")
@click.option("--backend", type=click.Choice(["torch", "ort"]), default=None,
              help="torch for a model or quantized folder, ort for an .onnx (default by source).")
@click.option("--seq-len", default=512, show_default=True, type=click.IntRange(2),
              help="Tokens per perplexity window (the text is cut into windows of this length).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@TOKENIZER
def eval_cmd(source, ppl_file, tasks, backend, seq_len, as_json, tokenizer):
    """Perplexity (and lm-eval tasks) of a model, a quantized folder or an ONNX graph."""
    from .runtime.evaluate import perplexity
    from .sources import open_backend
    from .tokenizer import MISSING
    if not ppl_file and not tasks:
        raise EdgeqError("give --ppl TEXT_FILE and/or --tasks TASKS")
    be, tok = open_backend(source, backend, tokenizer)
    result = {"source": source, "backend": be.name}
    if ppl_file:
        if tok is None:
            raise EdgeqError(f"{source}: no tokenizer to tokenize {ppl_file}; {MISSING}")
        try:
            ids = tok.encode(ppl_file.read_text()).ids
        except OSError as e:
            raise EdgeqError(f"{ppl_file}: unreadable ({e.strerror}); check the path") from None
        except UnicodeDecodeError:
            raise EdgeqError(f"{ppl_file}: not UTF-8 text; give a UTF-8 text file") from None
        if len(ids) < 2:
            raise EdgeqError(f"{ppl_file}: needs at least two tokens of text")
        result.update(ppl=perplexity(be, ids, seq_len), tokens=len(ids), seq_len=seq_len)
    if tasks:
        from .runtime.lm_eval_adapter import run_tasks
        result["tasks"] = run_tasks(be, tok, tasks.split(","))
    if as_json:
        click.echo(json.dumps(result))
    else:
        for k, v in result.items():
            click.echo(f"{k:8} {v:.4f}" if isinstance(v, float) else f"{k:8} {v}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def targets(as_json):
    """The device targets edgeq knows (targets/*.toml)."""
    from .targets import all_targets
    ts = all_targets()
    if as_json:
        click.echo(json.dumps(ts))
        return
    for t in ts.values():
        click.echo(f"{t['name']:<16} sm_{t['sm']}  {t['memory_gb']:>3} GB  {t['bandwidth_gbs']:>6} GB/s  "
                   f"{t['int8_tops_dense']:>6} INT8 TOPS  {t['description']}")


@cli.command()
@click.argument("model")
@TARGET
@click.option("--recipe", default="fp16", show_default=True,
              help=f"A recipe: {RECIPES}.")
@H2T
@A16_FRACTION
@click.option("--prompt-len", default=1024, show_default=True, type=click.IntRange(1),
              help="Prompt tokens the prefill bound is for.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1),
              help="Sequences decoded together.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def estimate(model, target_name, recipe, h2t, a16_fraction, prompt_len, batch, as_json):
    """Roofline lower bounds of MODEL on a target: decode (bytes per token / bandwidth) and
    prefill (FLOPs / TOPS). Needs only the model's config.json."""
    from .models.config import read_config
    from .hub import resolve
    from .targets import estimate as run, get
    from .trt.memory import describe, from_config
    target = get(target_name)
    cfg = read_config(resolve(model, ["config.json"]))
    e = run(cfg, target, recipe, prompt_len, batch, h2t, a16_fraction)
    e["engine_memory"] = from_config(cfg, target, recipe, h2t, a16_fraction, max_batch=batch)
    if as_json:
        click.echo(json.dumps(e))
        return
    click.echo(f"{model} on {target['name']} ({e['recipe']}, batch {batch}):\n"
               f"  decode  >= {e['decode_ms_per_token']:.2f} ms/token "
               f"({e['decode_bytes_per_token'] / 1e6:.1f} MB moved per token at {target['bandwidth_gbs']} GB/s)\n"
               f"  prefill >= {e['prefill_ms']:.1f} ms for {prompt_len} tokens "
               f"({e['prefill_flops'] / 1e12:.2f} TFLOP)\n"
               f"  weights    {e['weights_bytes'] / 2**20:.1f} MiB\n"
               f"  states     {e['state_bytes'] / 2**20:.1f} MiB (read and written every token)\n"
               f"  {describe(e['engine_memory'], target)}")


@cli.command()
@click.argument("model")
@TARGET
@click.option("--recipe", default="quamba-w8a8", show_default=True,
              help=f"A recipe ({RECIPES}; fp16: no quantization, the baseline).")
@H2T
@RESIDUAL_HADAMARD
@A16_FRACTION
@click.option("--calib", "calib_data", default=None,
              help="Calibration data (default: the model folder's calib.txt).")
@SAMPLES
@SEQ_LEN
@click.option("--sysroot", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A JetPack root file system: cross-compile the plugin library of a Jetson target "
                   "against it.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The bundle folder to create.")
@TOKENIZER
def build(model, target_name, recipe, h2t, residual_hadamard, a16_fraction, calib_data, samples,
          seq_len, sysroot, output, tokenizer):
    """Build a deployable bundle of MODEL for a target: load, calibrate, quantize, export,
    validate on ORT, plugin library, engine (where possible), bundle.json."""
    from .bundle.build import build as run
    m = run(model, target_name, output, recipe, calib_data, samples, seq_len, sysroot, h2t=h2t,
            residual_hadamard=residual_hadamard, a16_fraction=a16_fraction, tokenizer=tokenizer)
    v, p = m["validation"], m["projected"]
    from .trt.memory import describe
    click.echo(f"wrote {output} for {target_name}: ORT top-1 agreement {100 * v['top1_agreement']:.2f} %, "
               f"projected decode >= {p['decode_ms_per_token']:.2f} ms/token; plugins: "
               f"{m['plugins']['mode']}; engine: {'built' if m['engine']['built'] else 'on the device'}"
               f"\n{describe(m['engine_memory'], m['target'])}")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
def verify(bundle):
    """Check every file of BUNDLE against the sha256 in its bundle.json."""
    from .bundle.manifest import verify as run
    m = run(bundle)
    click.echo(f"{bundle}: {len(m['files'])} files match bundle.json (target {m['target']['name']})")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--max-batch", default=1, show_default=True, type=click.IntRange(1),
              help="The largest batch the engine's profiles take.")
@click.option("--max-seq", default=2048, show_default=True, type=click.IntRange(1),
              help="The longest prompt the prefill profile takes.")
@click.option("--compare", is_flag=True, help="Then compare the engine's outputs with the ONNX "
              "graph's on ORT (the C++ kernels) with polygraphy, and their top-1 agreement.")
@click.option("--expect-int8", is_flag=True, help="Fail when a W8A8 linear runs in a float "
              "precision in the engine (TensorRT's layer information, engine_layers.json).")
def engine(bundle, max_batch, max_seq, compare, expect_int8):
    """Build BUNDLE's TensorRT engine on this device (needs TensorRT and the target's GPU), and
    first its plugin library when the bundle has only the sources; print the memory it needs
    and the precision each linear and plugin runs in."""
    from .bundle import manifest
    m = manifest.verify(bundle)
    from .bundle.plugins import build_from_sources
    from .bundle_files import GRAPH
    from .models.config import MambaConfig
    from .trt import memory
    from .trt.engine import build_engine, check_compatible, replacing
    check_compatible(m)  # TensorRT here, of the bundle's version, and the target's GPU
    need = memory.project(memory.graph_weight_bytes(bundle / GRAPH), m["target"],
                          MambaConfig.from_dict(m["model"]["config"]),
                          m["projected"]["state_bytes"], max_batch, max_seq)
    click.echo(memory.describe(need, m["target"]))
    if warning := memory.check(need, m["target"]):
        click.echo(warning, err=True)
    if compare:
        from .trt.compare import compare as run_compare  # without polygraphy: fail before building
    if m["plugins"]["mode"] == "sources":
        m["plugins"] = build_from_sources(bundle, click.echo)
        manifest.verify(bundle)  # the script added the library and nothing else, and no link
    with replacing(bundle) as timing_cache:
        m["engine"] = build_engine(bundle, m["target"], click.echo, max_batch, max_seq,
                                   timing_cache, expect_int8)
        if compare:
            m["engine"]["compare_ort"] = run_compare(bundle)
            click.echo(f"engine vs ORT: {m['engine']['compare_ort']}")
    manifest.write(bundle, {k: v for k, v in m.items() if k not in ("format", "files", "sha256")})
    click.echo(f"wrote {bundle / 'model.engine'}")


@cli.command()
@click.argument("source", metavar="BUNDLE_OR_MODEL")
@click.option("--backend", type=click.Choice(["trt", "ort", "torch"]), default="ort",
              show_default=True, help="trt: the bundle's engine; ort: its graph on the CPU; "
              "torch: a model folder.")
@click.option("--prompt-len", default=128, show_default=True, type=click.IntRange(1),
              help="Prompt tokens (random ids) per sequence.")
@click.option("--gen-len", default=32, show_default=True, type=click.IntRange(1),
              help="Tokens generated per sequence.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1),
              help="Sequences generated together.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(0),
              help="Untimed runs first.")
@click.option("--iters", default=3, show_default=True, type=click.IntRange(1),
              help="Timed runs.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write bench.json, bench.md and bench.png here.")
@click.option("--host", default=None, help="user@device: run the benchmark there over SSH.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="SSH port.")
@click.option("--identity", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="SSH private key file.")
@click.option("--remote-edgeq", default="edgeq", show_default=True,
              help="The edgeq command on the device, split as a shell would: "
                   "'python3 -m edgeq.cli' is three words, quote a path with spaces.")
@click.option("--cuda-graph/--no-cuda-graph", default=True, show_default=True,
              help="trt: run decode steps as captured CUDA graphs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(source, backend, prompt_len, gen_len, batch, warmup, iters, report_dir, host, port,
          identity, remote_edgeq, cuda_graph, as_json):
    """Generation latency of a bundle or model: TTFT, TPOT p50/p90, tokens/s, peak memory, and
    power and energy from tegrastats on a Jetson."""
    import platform

    from .bench import report
    args = ["--backend", backend, "--prompt-len", prompt_len, "--gen-len", gen_len, "--batch",
            batch, "--warmup", warmup, "--iters", iters, "--json"]
    if not cuda_graph:
        args.append("--no-cuda-graph")
    if host is not None:
        from .bench.remote import Remote, bench_remote
        out = report_dir or Path(f"{Path(source).name}-{host.split('@')[-1]}-report")
        r = bench_remote(Path(source), Remote(host, port, identity, log=lambda m: click.echo(m, err=True)),
                         [str(a) for a in args], out, remote_edgeq)
    else:
        if port or identity:
            raise EdgeqError("--port and --identity are for --host user@device")
        from .bench.run import bench as run
        r = run(_bench_backend(source, backend, cuda_graph), prompt_len, gen_len, batch,
                warmup, iters)
        r["machine"] = f"{platform.machine()} {platform.node()}"
        if backend == "trt":
            r["cuda_graph"] = cuda_graph
        if report_dir:
            report.write(r, report_dir)
    click.echo(json.dumps(r) if as_json else report.markdown(r))


def _bench_backend(source: str, backend: str, cuda_graph: bool = True):
    from .sources import bundle_root, open_backend
    if backend != "trt":
        return open_backend(source, backend)[0]
    path = Path(source)
    if bundle_root(source) != path:
        raise EdgeqError(f"{source}: --backend trt needs a bundle made by `edgeq build`")
    from .bundle import manifest
    from .trt.engine import check_engine
    from .trt.runtime import TrtBackend
    check_engine(manifest.verify(path))  # before TensorRT meets an engine it cannot run
    return TrtBackend(path, cuda_graph)


class Stopped(SystemExit):
    """A signal's exit: unwinds like SystemExit (temp folders are removed on the way out)."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def _exit_on_signal(signum, frame):
    import signal
    signal.signal(signum, signal.SIG_DFL)  # a second one kills at once
    raise Stopped(signum)


def main():
    """The console script: one-line errors with exit code 2; SIGTERM and SIGHUP unwind as
    Ctrl-C does (where they would kill: under nohup, SIGHUP stays ignored)."""
    import signal
    kept = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)  # no SIGHUP on Windows
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            kept[sig] = signal.signal(sig, _exit_on_signal)
    try:
        _run()
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)


def _run():
    import signal
    try:
        cli.main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt, Stopped) as e:
        signum = getattr(e, "signum", signal.SIGINT)  # click turns Ctrl-C into Abort
        click.echo(f"edgeq: stopped by {signal.Signals(signum).name}; nothing half-written was "
                   "left", err=True)
        sys.exit(128 + signum)
    except click.ClickException as e:  # usage errors: one line too
        click.echo(f"edgeq: error: {e.format_message()}", err=True)
        sys.exit(2)
    except EdgeqError as e:
        click.echo(f"edgeq: error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""  # a full disk's write names no file
        click.echo(f"edgeq: error: {where}{e.strerror}; check the path, its permissions and "
                   "the free space", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("edgeq: error: out of memory on this host; use a machine with more memory "
                   "(or a smaller --batch / --samples)", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
