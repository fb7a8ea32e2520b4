"""The command line: outputs, JSON, and one-line errors with exit code 2 and nothing half-written."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import hf_greedy


def test_inspect(run_cli, hf_model):
    _, folder = hf_model("h96")
    code, out, _ = run_cli("inspect", folder, "--json")
    s = json.loads(out)
    assert code == 0 and s["architecture"] == "mamba1" and s["d_inner"] == 192
    from transformers import MambaForCausalLM
    hf = MambaForCausalLM.from_pretrained(folder)
    assert s["parameters"] == sum(p.numel() for p in hf.parameters())
    assert s["size_bytes"]["fp16"] < s["size_bytes"]["fp32"]
    assert s["size_bytes"]["int4"] < s["size_bytes"]["int8"] < s["size_bytes"]["fp16"]
    code, out, _ = run_cli("inspect", folder)
    assert "d_model 96" in out and "parameters" in out


def test_export_then_generate_json(run_cli, hf_model, tmp_path):
    hf, folder = hf_model("h96")
    code, out, err = run_cli("export", folder, "-o", tmp_path / "m.onnx")
    assert code == 0, err
    results = {}
    for src, backend in [(folder, "torch"), (folder, "ort"), (tmp_path / "m.onnx", "ort")]:
        code, out, err = run_cli("generate", src, "--backend", backend, "--prompt-ids", "3,4,5",
                                 "--max-new-tokens", "6", "--json")
        assert code == 0, err
        results[(str(src), backend)] = json.loads(out)["ids"]
    want = hf_greedy(hf, [3, 4, 5], 6)
    assert all(ids == want for ids in results.values()), results


@pytest.mark.parametrize("args,fragment", [
    (["generate", "{m}", "--prompt", "hi"], "no tokenizer"),
    (["generate", "{m}", "--prompt-ids", "1,x"], "integers"),
    (["generate", "{m}", "--prompt-ids", "1", "--greedy", "--top-k", "3"], "--greedy"),
    (["generate", "{m}", "--prompt-ids", "1", "--prompt", "a"], "exactly one"),
    (["generate", "{tmp}/none.onnx", "--prompt-ids", "1"], "no such file"),
    (["generate", "{tmp}/none.onnx", "--backend", "torch", "--prompt-ids", "1"], "--backend ort"),
    (["export", "{m}", "-o", "{tmp}/missing-dir/m.onnx"], "no such folder"),
    (["export", "{m}", "-o", "{tmp}/m.txt"], ".onnx"),
    (["export", "{tmp}/nope", "-o", "{tmp}/m.onnx"], "no such folder"),
    (["inspect", "bad id with spaces"], "no such folder"),
    (["frobnicate"], "No such command"),
    (["generate", "{m}", "--prompt-ids", "1", "--max-new-tokens", "100001"], "1<=x<=100000"),
    (["generate", "{m}", "--prompt-ids", "1,99999"], "outside the vocabulary"),
    (["generate", "{m}", "--prompt-ids", "1", "--temperature", "nan"], "not nan"),
    (["generate", "{m}", "--prompt-ids", "1", "--top-k", "3", "--seed", "-1"], "--seed"),
    (["bench", "{m}", "--port", "22"], "for --host"),
    (["bench", "{m}", "--host", ""], "give user@device"),
    (["bench", "{m}", "--host", "a@b", "--identity", "{tmp}/no-key"], "does not exist"),
    (["bench", "{m}", "--host", "a@b", "--remote-edgeq", "'python3 -m edgeq.cli"], "No closing quotation"),
    (["bench", "{m}", "--host", "a@b", "--remote-edgeq", " "], "--remote-edgeq is empty"),
])
def test_errors_are_one_line_exit_2(run_cli, hf_model, tmp_path, args, fragment):
    _, folder = hf_model("h96")
    code, out, err = run_cli(*[a.format(m=folder, tmp=tmp_path) for a in args])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("edgeq: error:") and fragment in err, err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("change,fragment", [
    ({"hidden_size": "96"}, "d_model '96' is not a positive integer"),
    ({"hidden_size": -96}, "d_model -96 is not a positive integer"),
    ({"conv_kernel": 0}, "d_conv 0"),
    ({"layer_norm_epsilon": "tiny"}, "norm epsilon"),
    ({"use_bias": "no"}, "bias 'no' is not true or false"),
    ([1, 2], "not a JSON object"),
])
def test_malformed_config_is_one_line(run_cli, hf_model, tmp_path, change, fragment):
    _, folder = hf_model("h96")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    cfg = json.loads((folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, **change} if isinstance(change, dict) else change))
    for args in (["inspect", bad], ["estimate", bad, "--target", "orin-nano"]):
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and "malformed Mamba config" in err, err
        assert fragment in err, err


def test_eval_and_bundle_folder_hints(run_cli, tmp_path):
    from conftest import DEMO
    if not (DEMO / "model.safetensors").exists():
        pytest.skip("the demo model is not in this checkout")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 ".encode("latin-1") * 10)
    code, _, err = run_cli("eval", DEMO, "--ppl", latin1)
    assert code == 2 and err.count("\n") == 1 and "not UTF-8" in err, err
    (tmp_path / "model.onnx").write_bytes(b"")  # a folder that looks like a bundle
    code, _, err = run_cli("generate", tmp_path, "--prompt-ids", "1")
    assert code == 2 and err.count("\n") == 1 and "model.onnx" in err, err


def test_every_option_has_help():
    import click

    from edgeq.cli import cli
    missing = [(name, p.opts[0]) for name, cmd in cli.commands.items() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert len(cli.commands) >= 10 and not missing, missing


def test_export_refuses_an_existing_file(run_cli, hf_model, tmp_path):
    (tmp_path / "m.onnx").write_text("earlier")
    code, _, err = run_cli("export", hf_model("h96")[1], "-o", tmp_path / "m.onnx")
    assert code == 2 and err == f"edgeq: error: {tmp_path / 'm.onnx'}: already exists; remove " \
        "it or choose another -o\n"
    assert (tmp_path / "m.onnx").read_text() == "earlier"


def test_main_gives_back_the_signal_handlers(monkeypatch):
    # main() turns SIGTERM/SIGHUP into an unwinding exit only while it runs, and only where
    # they would kill (nohup's ignored SIGHUP stays ignored)
    import signal

    from edgeq import cli
    seen = {}
    monkeypatch.setattr(cli, "_run", lambda: seen.update(term=signal.getsignal(signal.SIGTERM),
                                                         hup=signal.getsignal(signal.SIGHUP)))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        cli.main()
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    assert seen == {"term": cli._exit_on_signal, "hup": signal.SIG_IGN}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_failed_export_leaves_nothing(run_cli, hf_model, tmp_path):
    _, folder = hf_model("h96")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "model.safetensors").write_bytes(b"\0" * 100)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli("export", bad, "-o", out_dir / "m.onnx")
    assert code == 2 and "corrupt" in err
    assert not list(out_dir.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permission check cannot fail")
def test_unwritable_output(run_cli, hf_model, tmp_path):
    _, folder = hf_model("h96")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    code, _, err = run_cli("export", folder, "-o", ro / "m.onnx")
    assert code == 2 and "not writable" in err


def test_console_script_exits_2_without_traceback(tmp_path):
    exe = shutil.which("edgeq") or os.path.join(os.path.dirname(sys.executable), "edgeq")
    r = subprocess.run([exe, "inspect", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "no such folder" in r.stderr
