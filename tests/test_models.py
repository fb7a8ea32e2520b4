"""edgeq's modules against transformers' MambaForCausalLM, checkpoint layouts, and load errors."""
import json
import shutil

import pytest
import torch

from edgeq.errors import EdgeqError
from edgeq.models import load_model

from conftest import CONFIGS, assert_decode_equals_full, to_state_spaces


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("L", [1, 7, 64])
def test_logits_equal_transformers(hf_model, name, L):
    hf, folder = hf_model(name)
    model, _ = load_model(str(folder))
    ids = torch.randint(0, CONFIGS[name]["vocab_size"], (2, L), generator=torch.Generator().manual_seed(L))
    with torch.no_grad():
        want = hf(ids, use_cache=False).logits
        got, _ = model(ids)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["h96", "h40-bias-untied"])
def test_prefill_then_decode_equals_full_pass(hf_model, name):
    _, folder = hf_model(name)
    model, _ = load_model(str(folder))
    ids = torch.randint(0, CONFIGS[name]["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))
    assert_decode_equals_full(model, ids, 5)


def test_state_spaces_layout_loads_with_padded_vocab(hf_model, tmp_path):
    hf, folder = hf_model("h96")  # vocab 1001 is padded to 1008 by the state-spaces config
    from transformers import MambaConfig, MambaForCausalLM
    cfg = dict(CONFIGS["h96"], vocab_size=1008)
    torch.manual_seed(3)
    hf = MambaForCausalLM(MambaConfig(**cfg)).eval()
    hf.save_pretrained(tmp_path / "hf")
    to_state_spaces(tmp_path / "hf", tmp_path / "ss", vocab_size=1001)
    model, _ = load_model(str(tmp_path / "ss"))
    assert model.cfg.layout == "state-spaces" and model.cfg.vocab_size == 1008
    ids = torch.randint(0, 1001, (1, 9))
    with torch.no_grad():
        assert (model(ids)[0] - hf(ids, use_cache=False).logits).abs().max() < 1e-4


def test_pytorch_model_bin_and_untied_head(hf_model, tmp_path):
    hf, folder = hf_model("h40-bias-untied")
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    from safetensors.torch import load_file
    torch.save(load_file(folder / "model.safetensors"), tmp_path / "pytorch_model.bin")
    model, _ = load_model(str(tmp_path))
    assert not model.cfg.tie_embeddings
    ids = torch.randint(0, 517, (1, 5))
    with torch.no_grad():
        assert (model(ids)[0] - hf(ids, use_cache=False).logits).abs().max() < 1e-4


def copy_model(folder, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(folder, dst)
    return dst


def expect_error(path, *fragments):
    with pytest.raises(EdgeqError) as e:
        load_model(str(path))
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


def test_errors_missing_and_corrupt_weights(hf_model, tmp_path):
    _, folder = hf_model("h96")
    m = copy_model(folder, tmp_path)
    (m / "model.safetensors").write_bytes(b"not a safetensors file")
    expect_error(m, "corrupt")
    (m / "model.safetensors").unlink()
    expect_error(m, "no weights")
    (m / "config.json").unlink()
    expect_error(m, "no config.json")
    expect_error(tmp_path / "nope", "no such folder")


def test_errors_shape_mismatch_and_missing_tensor(hf_model, tmp_path):
    _, folder = hf_model("h96")
    m = copy_model(folder, tmp_path)
    cfg = json.loads((m / "config.json").read_text())
    cfg["state_size"] = 8
    (m / "config.json").write_text(json.dumps(cfg))
    expect_error(m, "A_log", "shape")
    cfg["state_size"], cfg["num_hidden_layers"] = 16, 3
    (m / "config.json").write_text(json.dumps(cfg))
    expect_error(m, "lack", "layers.2")


@pytest.mark.parametrize("config,fragment", [
    ({"model_type": "falcon_mamba"}, "falcon_mamba"),
    ({"model_type": "jamba"}, "jamba"),
    ({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 10,
      "head_dim": 16, "n_groups": 1, "time_step_limit": [0.0, 0.1]}, "time_step_limit"),
    ({"model_type": "llama"}, "llama"),
    ({"d_model": 64, "n_layer": 2, "vocab_size": 10, "ssm_cfg": {"layer": "Mamba3"}}, "Mamba3"),
    ({"d_model": 64, "n_layer": 2, "vocab_size": 10,
      "ssm_cfg": {"layer": "Mamba2", "norm_before_gate": True}}, "norm_before_gate"),
    ({"d_model": 64, "n_layer": 2, "vocab_size": 10, "attn_layer_idx": [1]}, "hybrid"),
    ({"hello": 1}, "not a Mamba config"),
])
def test_unsupported_architectures_are_refused(tmp_path, config, fragment):
    (tmp_path / "config.json").write_text(json.dumps(config))
    expect_error(tmp_path, fragment)


@pytest.mark.parametrize("repo_files, fetched", [
    (["config.json", "model.safetensors", "pytorch_model.bin"], "safetensors only"),
    (["config.json", "pytorch_model.bin"], "the .bin"),
    (None, "all (listing failed: offline with a cached snapshot)"),
])
def test_hub_id_downloads_one_weight_format(hf_model, monkeypatch, repo_files, fetched):
    import huggingface_hub
    from edgeq.hub import HUB_FILES
    _, folder = hf_model("h96")
    asked = []

    class Api:
        def list_repo_files(self, repo):
            if repo_files is None:
                raise huggingface_hub.errors.OfflineModeIsEnabled("offline")
            return repo_files

    def snapshot(repo, allow_patterns):
        asked.append((repo, allow_patterns))
        return str(folder)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    model, got = load_model("state-spaces/mamba-130m-hf")
    assert got == folder and model.cfg.vocab_size == 1001
    patterns = asked[0][1]
    assert asked[0][0] == "state-spaces/mamba-130m-hf" and "config.json" in patterns
    has_bin = any(p.startswith("pytorch_model") for p in patterns)
    assert has_bin == (fetched != "safetensors only")
    assert patterns == HUB_FILES or fetched == "safetensors only"


def test_hub_download_failure_is_one_line(run_cli, monkeypatch):
    import huggingface_hub

    def snapshot(repo, allow_patterns):
        raise huggingface_hub.errors.RepositoryNotFoundError("404")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    code, _, err = run_cli("inspect", "nobody/no-such-model")
    assert code == 2 and err.count("\n") == 1
    assert "nobody/no-such-model: no local folder nobody/no-such-model and the hub download " \
        "failed" in err


@pytest.mark.parametrize("name", ["models/mamba", "./mamba", "a/b/c", "~/no-such-edgeq-model"])
def test_a_mistyped_local_path_is_not_a_hub_download(name, run_cli, monkeypatch, tmp_path):
    import huggingface_hub

    def snapshot(*args, **kwargs):
        raise AssertionError("tried the hub")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # an existing parent folder makes models/mamba a local path
    code, _, err = run_cli("inspect", name)
    assert code == 2 and err == f"edgeq: error: {name}: no such folder (a local path, so not " \
        "tried as a hub id); check the path\n"
