"""edgeq quantize / export / generate / eval on a quantized folder, through the CLI."""
import json

import pytest


def assert_export_generates_the_same(run_cli, quant_dir, onnx_path):
    """`edgeq export` of a quantized folder, then greedy ids from the folder on torch equal
    those from the graph on ORT."""
    code, _, err = run_cli("export", quant_dir, "-o", onnx_path)
    assert code == 0, err
    ids = {}
    for src, backend in [(quant_dir, "torch"), (onnx_path, "ort")]:
        code, out, err = run_cli("generate", src, "--backend", backend, "--prompt-ids", "3,4,5",
                                 "--max-new-tokens", "5", "--json")
        assert code == 0, err
        ids[backend] = json.loads(out)["ids"]
    assert ids["torch"] == ids["ort"]


def test_quantize_export_generate_eval(run_cli, hf_model, calib_npy, tmp_path):
    _, folder = hf_model("h96")
    q = tmp_path / "q"
    code, out, err = run_cli("quantize", folder, "--recipe", "quamba-w8a8", "--calib", calib_npy,
                             "--samples", "8", "--seq-len", "64", "-o", q)
    assert code == 0, err
    meta = json.loads((q / "quant.json").read_text())
    assert meta["recipe"]["name"] == "quamba-w8a8" and len(meta["scales"]) == 2
    assert meta["calibration"]["samples"] == 8 and "calibrating" in err
    code, out, err = run_cli("inspect", q, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["recipe"] == "quamba-w8a8" and info["quantized_bytes"] < info["size_bytes"]["fp16"] * 1.1
    assert_export_generates_the_same(run_cli, q, tmp_path / "q.onnx")
    text = tmp_path / "held.txt"
    text.write_text("x")
    code, _, err = run_cli("eval", q, "--ppl", text)
    assert code == 2 and "no tokenizer" in err


@pytest.mark.parametrize("recipe", ["quamba2-w4a8", "quamba2-w4a16", "quamba2-w4ax"])
def test_quamba2_on_mamba2_through_the_cli(run_cli, calib_npy, tmp_path, recipe):
    import torch

    from edgeq.models import MambaConfig, MambaLM, save_model
    torch.manual_seed(0)
    save_model(MambaLM(MambaConfig(d_model=64, n_layer=4, vocab_size=1001, arch="mamba2",
                                   d_state=16, headdim=16, ngroups=2, chunk_size=8)), tmp_path / "m")
    q = tmp_path / "q"
    half = ["--a16-fraction", "0.5"] if recipe == "quamba2-w4ax" else []  # 2 of 4 layers
    code, _, err = run_cli("quantize", tmp_path / "m", "--recipe", recipe, "--calib", calib_npy,
                           "--samples", "8", "--seq-len", "64", "--h2t", *half, "-o", q)
    assert code == 0, err
    assert err.index("calibrating") < err.index("quantizing")  # both bars, in order
    code, out, err = run_cli("inspect", q, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["recipe"] == recipe and info["quantized_bytes"] < 0.45 * info["size_bytes"]["fp16"]
    scales = json.loads((q / "quant.json").read_text())["scales"]
    assert len(scales) == (0 if recipe == "quamba2-w4a16" else 4)
    assert sum(not s for s in scales) == (2 if half else 0)
    assert_export_generates_the_same(run_cli, q, tmp_path / "q.onnx")
    code, _, err = run_cli("quantize", tmp_path / "m", "--recipe", "quamba-w8a8", "--calib",
                           calib_npy, "-o", tmp_path / "q2")
    assert code == 2 and "does not quantize mamba2" in err and not (tmp_path / "q2").exists()


def test_eval_json(run_cli, tmp_path):
    from conftest import DEMO
    if not (DEMO / "model.safetensors").exists():
        pytest.skip("the demo model is not in this checkout")
    held = tmp_path / "h.txt"
    held.write_text((DEMO / "heldout.txt").read_text()[:3000])
    code, out, err = run_cli("eval", DEMO, "--ppl", held, "--seq-len", "128", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert 1 < r["ppl"] < 200 and r["backend"] == "torch"


@pytest.mark.parametrize("args,fragment", [
    (["quantize", "{m}", "--recipe", "nope", "--calib", "{c}", "-o", "{tmp}/q"], "unknown recipe"),
    (["quantize", "{m}", "--calib", "{c}", "--seq-len", "99999", "-o", "{tmp}/q"], "fewer than one window"),
    (["quantize", "{m}", "--calib", "{tmp}/none.txt", "-o", "{tmp}/q"], "no such file"),
    (["quantize", "{m}", "--calib", "{c}", "-o", "{tmp}/no/dir/q"], "no such folder"),
    (["eval", "{m}"], "--ppl"),
    (["quantize", "{m}", "--recipe", "quamba2-w4a8", "--a16-fraction", "0.5", "--calib", "{c}",
      "-o", "{tmp}/q"], "use quamba2-w4ax"),
    (["quantize", "{m}", "--recipe", "quamba2-w4ax", "--a16-fraction", "1.5", "--calib", "{c}",
      "-o", "{tmp}/q"], "must be in [0, 1]"),
    (["quantize", "{m}", "--calib", "", "-o", "{tmp}/q"], "--calib is empty"),
    (["quantize", "{m}", "--calib", "{c}", "--seq-len", "1", "-o", "{tmp}/q"], "--seq-len"),
])
def test_quantize_errors(run_cli, hf_model, calib_npy, tmp_path, args, fragment):
    _, folder = hf_model("h96")
    code, _, err = run_cli(*[a.format(m=folder, c=calib_npy, tmp=tmp_path) for a in args])
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert not list(tmp_path.iterdir())


def test_refusals_before_calibrating(run_cli, calib_npy, tmp_path):
    import torch

    from edgeq.models import MambaConfig, MambaLM, save_model
    # d_inner 400 has no Hadamard transform: quamba-w8a8 refuses before calibrating
    torch.manual_seed(0)
    save_model(MambaLM(MambaConfig(d_model=200, n_layer=1, vocab_size=1001)), tmp_path / "m")
    code, _, err = run_cli("quantize", tmp_path / "m", "--calib", calib_npy, "--samples", "2",
                           "--seq-len", "16", "-o", tmp_path / "q")
    assert code == 2 and err.count("\n") == 1 and "no Hadamard transform" in err, err
    assert "calibrating" not in err and not (tmp_path / "q").exists()
    code, _, err = run_cli("estimate", tmp_path / "m", "--target", "orin-nano")  # fp16: fine
    assert code == 0, err
    code, _, err = run_cli("estimate", tmp_path / "m", "--target", "orin-nano", "--recipe",
                           "quamba-w8a8")
    assert code == 2 and "no Hadamard transform" in err, err
    # estimate refuses what quantize refuses: a Mamba-1 recipe for a Mamba-2 model
    save_model(MambaLM(MambaConfig(d_model=64, n_layer=1, vocab_size=1001, arch="mamba2",
                                   d_state=16, headdim=16, ngroups=2)), tmp_path / "m2")
    code, _, err = run_cli("estimate", tmp_path / "m2", "--target", "orin-nano", "--recipe",
                           "quamba-w8a8")
    assert code == 2 and "does not quantize mamba2" in err, err
    # a quantized folder is not a checkpoint to quantize
    code, _, err = run_cli("quantize", tmp_path / "m2", "--recipe", "quamba2-w8a8", "--calib",
                           calib_npy, "--samples", "2", "--seq-len", "16", "-o", tmp_path / "q2")
    assert code == 0, err
    code, _, err = run_cli("quantize", tmp_path / "q2", "--recipe", "quamba2-w8a8", "--calib",
                           calib_npy, "-o", tmp_path / "q3")
    assert code == 2 and "is a quantized folder" in err, err
