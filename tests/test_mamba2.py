"""Mamba-2 (fp): edgeq's modules against transformers' Mamba2ForCausalLM (n_groups 1 and 2:
transformers normalises per group like mamba_ssm), the state-spaces layout, the stateful ONNX
graph on ORT, and generation."""
import json

import numpy as np
import pytest
import torch

from edgeq.errors import EdgeqError
from edgeq.export.onnx_export import to_onnx
from edgeq.models import load_model
from edgeq.runtime.backends import OrtBackend, TorchBackend
from edgeq.runtime.generate import generate

from conftest import assert_backends_agree, assert_decode_equals_full, hf_greedy

CONFIGS2 = {
    "g1": dict(vocab_size=1001, hidden_size=64, num_hidden_layers=2, state_size=16, head_dim=16,
               num_heads=8, n_groups=1, chunk_size=8),
    "g2-tied-bias": dict(vocab_size=517, hidden_size=96, num_hidden_layers=2, state_size=8,
                         head_dim=24, num_heads=8, n_groups=2, chunk_size=16,
                         tie_word_embeddings=True, use_bias=True, conv_kernel=3),
}


@pytest.fixture(scope="module")
def mamba2(tmp_path_factory):
    from transformers import Mamba2Config, Mamba2ForCausalLM
    cache = {}

    def make(name):
        if name not in cache:
            torch.manual_seed(1)
            hf = Mamba2ForCausalLM(Mamba2Config(**CONFIGS2[name])).eval()
            with torch.no_grad():  # lively dynamics: spread dt bias, D and the gated norm
                for layer in hf.backbone.layers:
                    m = layer.mixer
                    m.dt_bias.add_(torch.randn_like(m.dt_bias))
                    m.D.add_(torch.randn_like(m.D))
                    m.norm.weight.add_(0.1 * torch.randn_like(m.norm.weight))
            folder = tmp_path_factory.mktemp(name)
            hf.save_pretrained(folder)
            cache[name] = (hf, folder)
        return cache[name]
    return make


@pytest.mark.parametrize("name", CONFIGS2)
@pytest.mark.parametrize("L", [1, 7, 64])
def test_logits_equal_transformers(mamba2, name, L):
    hf, folder = mamba2(name)
    model, _ = load_model(str(folder))
    assert model.cfg.arch == "mamba2"
    ids = torch.randint(0, CONFIGS2[name]["vocab_size"], (2, L), generator=torch.Generator().manual_seed(L))
    with torch.no_grad():
        assert (model(ids)[0] - hf(ids, use_cache=False).logits).abs().max() < 1e-4


def test_prefill_then_decode_equals_full_pass(mamba2):
    model, _ = load_model(str(mamba2("g2-tied-bias")[1]))
    ids = torch.randint(0, 517, (2, 10), generator=torch.Generator().manual_seed(3))
    assert_decode_equals_full(model, ids, 4)


@pytest.mark.parametrize("name", CONFIGS2)
def test_ort_and_greedy_generation(mamba2, name):
    hf, folder = mamba2(name)
    model, _ = load_model(str(folder))
    proto = to_onnx(model)
    scans = [n for n in proto.graph.node if n.op_type == "EdgeqSSDScan"]
    assert len(scans) == model.cfg.n_layer
    for n in scans:
        attrs = {a.name: a.i for a in n.attribute if a.type == a.INT}
        assert attrs["chunk_size"] == CONFIGS2[name]["chunk_size"] and attrs["dt_softplus"] == 1
    ob, tb = OrtBackend(proto), TorchBackend(model)
    assert_backends_agree(tb, ob, CONFIGS2[name]["vocab_size"])
    want = hf_greedy(hf, [3, 4, 5], 12)
    assert generate(tb, [3, 4, 5], 12) == want == generate(ob, [3, 4, 5], 12)


def test_state_spaces_mamba2_layout(mamba2, tmp_path):
    hf, folder = mamba2("g1")
    from safetensors.torch import load_file
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v
          for k, v in load_file(folder / "model.safetensors").items()}
    torch.save(sd, tmp_path / "pytorch_model.bin")
    c = CONFIGS2["g1"]
    (tmp_path / "config.json").write_text(json.dumps({
        "d_model": c["hidden_size"], "n_layer": c["num_hidden_layers"], "vocab_size": c["vocab_size"],
        "ssm_cfg": {"layer": "Mamba2", "d_state": c["state_size"], "headdim": c["head_dim"],
                    "ngroups": 1, "chunk_size": 8},
        "rms_norm": True, "pad_vocab_size_multiple": 1, "tie_embeddings": False}))
    model, _ = load_model(str(tmp_path))
    assert model.cfg.layout == "state-spaces" and model.cfg.arch == "mamba2"
    ids = torch.randint(0, c["vocab_size"], (1, 9))
    with torch.no_grad():
        assert (model(ids)[0] - hf(ids, use_cache=False).logits).abs().max() < 1e-4


def test_quamba1_recipes_refuse_mamba2(mamba2):
    from edgeq.quant import calib_data, calib_stats, recipe as R
    model, _ = load_model(str(mamba2("g1")[1]))
    with pytest.raises(EdgeqError, match="does not quantize mamba2 models; use one of: quamba2"):
        calib_stats.calibrate(model, calib_data.windows(np.arange(100), 2, 8, 1001), R.load("quamba-w8a8"))


def test_save_model_writes_a_checkpoint_transformers_loads(tmp_path):
    from transformers import Mamba2ForCausalLM

    from edgeq.models import MambaConfig, MambaLM, save_model
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(d_model=64, n_layer=1, vocab_size=100, arch="mamba2", headdim=16,
                                d_state=8, ngroups=2)).eval()
    save_model(model, tmp_path)
    hf = Mamba2ForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 100, (1, 6))
    with torch.no_grad():
        assert (hf(ids, use_cache=False).logits - model(ids)[0]).abs().max() < 1e-4
        assert (load_model(str(tmp_path))[0](ids)[0] - model(ids)[0]).abs().max() == 0


def test_gated_norm_is_mamba_ssm_per_group_norm():
    # mamba_ssm's rms_norm_ref with group_size = d_inner / ngroups, norm_before_gate=False: each
    # group of y * silu(z) over its own RMS, then the weight (transformers before PR #40861
    # normalised over the whole width)
    from edgeq.models.mamba2 import GatedRMSNorm
    g = torch.Generator().manual_seed(0)
    y, z = torch.randn(2, 5, 96, generator=g), torch.randn(2, 5, 96, generator=g)
    y[..., :32] *= 10  # groups of very different scale
    norm = GatedRMSNorm(96, groups=3, eps=1e-5)
    norm.weight.data = 1 + 0.1 * torch.randn(96, generator=g)
    x = (y * torch.nn.functional.silu(z)).reshape(2, 5, 3, 32)
    want = (x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-5)).reshape(2, 5, 96)
    torch.testing.assert_close(norm(y, z), want * norm.weight, rtol=1e-6, atol=1e-6)
    whole = x.reshape(2, 5, 96) / torch.sqrt(x.square().mean((-2, -1)) + 1e-5)[..., None]
    assert not torch.allclose(norm(y, z), whole * norm.weight, rtol=1e-2)
