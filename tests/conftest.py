"""Shared fixtures: tiny Mamba checkpoints made in code with transformers (nothing downloaded)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

# nothing is downloaded in tests: offline, the hub fails at once instead of retrying for ~20 s
# (tests of downloads replace huggingface_hub's functions)
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
# the harness: kernel cases, native builds, TensorRT and nvcc stand-ins, the C++ drivers
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from native_libraries import (cuda_library, emulated_kernels, emulated_plugins,  # noqa: E402,F401
                              emulation_object, gpu_plugins, harness)  # (fixtures)
DEMO = ROOT / "examples" / "demo-mamba"

# transformers MambaConfig kwargs; covers non-power-of-2 widths, odd vocabs, dt_rank from
# ceil(d/16), biases, untied heads and the Mamba-130m dims
CONFIGS = {
    "h96": dict(vocab_size=1001, hidden_size=96, num_hidden_layers=2, state_size=16),
    "h40-bias-untied": dict(vocab_size=517, hidden_size=40, num_hidden_layers=3, state_size=8,
                            conv_kernel=3, use_bias=True, use_conv_bias=False,
                            tie_word_embeddings=False),
    "h64-expand3": dict(vocab_size=333, hidden_size=64, num_hidden_layers=2, state_size=4,
                        expand=3, time_step_rank=7),
    "mamba130m-dims": dict(vocab_size=50280, hidden_size=768, num_hidden_layers=2, state_size=16),
}


# At the 130m widths fp32 GEMM rounding alone moves logits of magnitude ~15 by up to ~8e-5
# between torch and ORT; that config keeps transformers' own init, whose dims are its point.
PLAIN_INIT = {"mamba130m-dims"}


def make_hf(name: str, folder: Path, seed: int = 0):
    from transformers import MambaConfig, MambaForCausalLM
    torch.manual_seed(seed)
    hf = MambaForCausalLM(MambaConfig(**CONFIGS[name])).eval()
    with torch.no_grad():  # random but lively dynamics: spread A, D and the dt bias
        for layer in ([] if name in PLAIN_INIT else hf.backbone.layers):
            m = layer.mixer
            m.A_log.add_(torch.randn_like(m.A_log) * 0.5)
            m.D.add_(torch.randn_like(m.D))
            m.dt_proj.bias.add_(torch.randn_like(m.dt_proj.bias))
            layer.norm.weight.add_(torch.randn_like(layer.norm.weight) * 0.1)
    hf.save_pretrained(folder)
    return hf


def hf_greedy(hf, prompt: list[int], n: int) -> list[int]:
    """transformers' greedy ids for exactly n new tokens (no end-of-text stop)."""
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


def assert_backends_agree(ref, other, vocab: int, tolerance=lambda logits: 1e-4) -> None:
    """Logits of two backends at L = 1, 7, 64 (batch 2), then once more with states carried."""
    import numpy as np
    rng = np.random.default_rng(0)
    for L in (1, 7, 64):
        ids = rng.integers(0, vocab, (2, L))
        a, sa = ref.forward(ids, ref.new_state(2))
        b, sb = other.forward(ids, other.new_state(2))
        assert np.abs(a - b).max() < tolerance(a)
        ids2 = rng.integers(0, vocab, (2, 3))  # a second call, states carried
        a2, _ = ref.forward(ids2, sa)
        b2, _ = other.forward(ids2, sb)
        assert np.abs(a2 - b2).max() < tolerance(a2)


def assert_decode_equals_full(model, ids, prefill: int) -> None:
    """A prefill of `prefill` tokens, then one decode step (the model at L = 1) per token,
    gives the full pass's logits and final states."""
    with torch.no_grad():
        full, full_state = model(ids)
        logits, state = model(ids[:, :prefill])
        steps = [logits]
        for t in range(prefill, ids.shape[1]):
            logits, state = model(ids[:, t:t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    for (c, s), (fc, fs) in zip(state, full_state):
        torch.testing.assert_close(c, fc)
        torch.testing.assert_close(s, fs, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory):
    """make(name) -> (transformers model, folder with its -hf checkpoint)."""
    cache = {}

    def make(name: str = "h96"):
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            cache[name] = (make_hf(name, folder), folder)
        return cache[name]
    return make


def to_state_spaces(hf_folder: Path, out: Path, vocab_size: int) -> None:
    """Rewrite an -hf checkpoint in the original state-spaces layout (config and keys)."""
    from safetensors.torch import load_file
    hf = json.loads((hf_folder / "config.json").read_text())
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v
          for k, v in load_file(hf_folder / "model.safetensors").items()}
    if hf.get("tie_word_embeddings", True):
        sd["lm_head.weight"] = sd["backbone.embedding.weight"]  # as mamba_ssm saves it
    out.mkdir(parents=True, exist_ok=True)
    torch.save(sd, out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps({
        "d_model": hf["hidden_size"], "n_layer": hf["num_hidden_layers"],
        "vocab_size": vocab_size, "ssm_cfg": {"d_state": hf["state_size"]},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 8, "tie_embeddings": True}))


@pytest.fixture(scope="session")
def calib_npy(tmp_path_factory):
    """4000 random token ids of the h96 vocabulary, a tokenized calibration file."""
    import numpy as np
    path = tmp_path_factory.mktemp("calib") / "ids.npy"
    np.save(path, np.random.default_rng(0).integers(0, 1001, 4000))
    return path


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """run_cli(*args) -> (exit code, stdout, stderr), through edgeq.cli.main like the console script."""
    from edgeq.cli import main

    def run(*args):
        capsys.readouterr()  # drop what fixtures printed
        monkeypatch.setattr(sys, "argv", ["edgeq", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err
    return run
