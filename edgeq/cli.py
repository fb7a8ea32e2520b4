"""The edgeq command line: thin commands over the library."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import EdgeqError


@click.group()
@click.version_option(package_name="edgeq")
def cli():
    """edgeq: quantized Mamba models for NVIDIA Jetson Orin Nano."""


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(model, as_json):
    """Architecture, dims, parameter count and size at each precision."""
    from .models import load_model
    from .models.inspect import format_summary, summary
    s = summary(load_model(model)[0])
    click.echo(json.dumps(s) if as_json else format_summary(s))


@cli.command()
@click.argument("model")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The .onnx file to write.")
def export(model, output):
    """Export MODEL to one stateful ONNX graph with edgeq custom ops."""
    from .export.onnx_export import check_output, save, to_onnx
    from .models import load_model
    from .runtime import text
    if output.suffix != ".onnx":
        raise EdgeqError(f"{output}: the output must end in .onnx")
    check_output(output)
    lm, folder = load_model(model)
    meta = {}
    if (folder / "tokenizer.json").exists():
        meta[text.META_KEY] = (folder / "tokenizer.json").read_text()
    save(to_onnx(lm, meta), output)
    click.echo(f"wrote {output}")


def _prompt_ids(prompt, prompt_ids, tok) -> list[int]:
    if (prompt is None) == (prompt_ids is None):
        raise EdgeqError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3")
    if prompt_ids is not None:
        try:
            ids = [int(x) for x in prompt_ids.split(",") if x.strip()]
        except ValueError:
            raise EdgeqError(f"--prompt-ids {prompt_ids!r}: expected integers like 1,2,3") from None
    else:
        if tok is None:
            raise EdgeqError("the model has no tokenizer.json; pass --prompt-ids instead of --prompt")
        ids = tok.encode(prompt).ids
    if not ids:
        raise EdgeqError("the prompt is empty; give at least one token")
    return ids


@cli.command()
@click.argument("source", metavar="MODEL_OR_ONNX")
@click.option("--backend", type=click.Choice(["torch", "ort"]), default=None,
              help="torch for a model folder, ort for an .onnx (default by source).")
@click.option("--prompt", default=None, help="Prompt text (needs the model's tokenizer).")
@click.option("--prompt-ids", default=None, help="Prompt token ids, comma separated.")
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(1))
@click.option("--greedy", is_flag=True, help="Always take the most likely token (the default "
              "unless --temperature, --top-k or --top-p is given).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--top-k", type=click.IntRange(0), default=None)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the ids.")
def generate(source, backend, prompt, prompt_ids, max_new_tokens, greedy, temperature, top_k,
             top_p, seed, as_json):
    """Generate text from MODEL_OR_ONNX, streamed as it comes."""
    from .runtime import text
    from .runtime.backends import open_backend
    from .runtime.generate import Sampling
    from .runtime.generate import generate as run
    sampled = any(v is not None for v in (temperature, top_k, top_p))
    if greedy and sampled:
        raise EdgeqError("--greedy excludes --temperature/--top-k/--top-p; give one or the other")
    sampling = Sampling(greedy=not sampled, temperature=temperature or 1.0, top_k=top_k or 0,
                        top_p=top_p or 1.0, seed=seed)
    be, tok = open_backend(source, backend)
    ids = _prompt_ids(prompt, prompt_ids, tok)
    stream = text.Streamer(tok) if tok is not None and not as_json else None
    if stream and prompt is not None:
        click.echo(prompt, nl=False)
    out = run(be, ids, max_new_tokens, sampling, eos_id=text.eos_id(tok) if tok else None,
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


def main():
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:  # usage errors: one line too
        click.echo(f"edgeq: error: {e.format_message()}", err=True)
        sys.exit(2)
    except EdgeqError as e:
        click.echo(f"edgeq: error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"edgeq: error: {e.filename or ''}: {e.strerror}; check the path and "
                   "its permissions", err=True)
        sys.exit(2)
