"""Which tokenizer a model gets: its own tokenizer.json, --tokenizer (file, folder or hub id), or
for a state-spaces checkpoint, which ships none, GPT-NeoX-20B's from the hub (replaced here by the
demo's tokenizer: nothing is downloaded in tests)."""
from __future__ import annotations

import json

import onnx
import pytest

from conftest import DEMO, to_state_spaces
from edgeq.errors import EdgeqError
from edgeq import tokenizer
from edgeq.models.loader import find_tokenizer

TOK = (DEMO / "tokenizer.json").read_text()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Stands in for hf_hub_download: serves the demo's tokenizer.json, records the repos asked."""
    asked = []

    def download(repo, filename):
        asked.append((repo, filename))
        if repo == "nobody/nothing":
            raise OSError("404")
        (tmp_path / "hub").mkdir(exist_ok=True)
        (tmp_path / "hub" / filename).write_text(TOK)
        return str(tmp_path / "hub" / filename)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    return asked


@pytest.fixture
def ss_demo(tmp_path):
    """The demo model in the state-spaces layout: pytorch_model.bin, no tokenizer, its own
    vocabulary of 4096."""
    to_state_spaces(DEMO, tmp_path / "ss", vocab_size=4096)
    return tmp_path / "ss"


@pytest.fixture
def ss_neox(hf_model, tmp_path):
    """A state-spaces checkpoint of GPT-NeoX's vocabulary (50277, padded to 50280), no tokenizer."""
    to_state_spaces(hf_model("mamba130m-dims")[1], tmp_path / "ssn", vocab_size=50277)
    return tmp_path / "ssn"


def test_own_tokenizer_wins_and_hf_layout_has_no_fallback(hub, hf_model):
    assert find_tokenizer(DEMO) == TOK
    assert find_tokenizer(hf_model("h96")[1]) is None  # an -hf folder without one: nothing guessed
    assert hub == []


def test_state_spaces_falls_back_to_gpt_neox(hub, ss_neox):
    assert find_tokenizer(ss_neox) == TOK
    assert hub == [(tokenizer.NEOX, "tokenizer.json")]


def test_no_fallback_for_another_vocabulary(hub, ss_demo):
    # another vocabulary (Mamba2-8B's 256k tokens, say): never guess
    assert find_tokenizer(ss_demo) is None and hub == []


def test_state_spaces_fallback_offline_is_none(ss_neox):
    # HF_HUB_OFFLINE (conftest): the callers say what to pass
    assert find_tokenizer(ss_neox) is None


@pytest.mark.parametrize("given", ["file", "folder", "hub id"])
def test_given_tokenizer(hub, ss_demo, given):
    name = {"file": str(DEMO / "tokenizer.json"), "folder": str(DEMO), "hub id": "owner/tok"}[given]
    assert find_tokenizer(ss_demo, name) == TOK
    assert hub == ([("owner/tok", "tokenizer.json")] if given == "hub id" else [])


@pytest.mark.parametrize("given, fragment", [
    ("{tmp}", "holds no tokenizer.json"),
    ("{tmp}/no/such.json", "no such file or folder, and not a hub id"),
    ("nobody/nothing", "nobody/nothing: could not download its tokenizer.json (OSError)"),
    ("{tmp}/bad.json", "unreadable tokenizer"),
])
def test_given_tokenizer_errors(hub, tmp_path, given, fragment):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EdgeqError, match=None) as e:
        find_tokenizer(DEMO, given.format(tmp=tmp_path))
    assert fragment in str(e.value)


def test_quantize_and_build_a_state_spaces_checkpoint_from_text(hub, ss_neox, tmp_path, run_cli):
    calib = str(DEMO / "calib.txt")
    code, _, err = run_cli("quantize", ss_neox, "--calib", calib, "--samples", "4", "--seq-len",
                           "64", "-o", tmp_path / "q")
    assert code == 0, err
    assert (tmp_path / "q" / "tokenizer.json").read_text() == TOK  # the quantized folder keeps it
    code, _, err = run_cli("build", ss_neox, "--target", "orin-nano", "--recipe", "fp16",
                           "--calib", calib, "-o", tmp_path / "b")
    assert code == 0, err
    assert (tmp_path / "b" / "tokenizer.json").read_text() == TOK
    meta = {p.key: p.value for p in onnx.load(tmp_path / "b" / "model.onnx").metadata_props}
    assert meta[tokenizer.META_KEY] == TOK
    code, out, err = run_cli("generate", tmp_path / "b" / "model.onnx", "--prompt", "And God said",
                             "--max-new-tokens", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["prompt_ids"] == tokenizer.from_json(TOK).encode("And God said").ids


def test_offline_state_spaces_text_needs_tokenizer(ss_neox, ss_demo, tmp_path, run_cli):
    code, _, err = run_cli("quantize", ss_neox, "--calib", DEMO / "calib.txt", "-o", tmp_path / "q")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "text needs the model's tokenizer; pass --tokenizer" in err
    code, _, err = run_cli("generate", ss_demo, "--prompt", "And", "--tokenizer", DEMO,
                           "--max-new-tokens", "2", "--json")
    assert code == 0, err
    code, _, err = run_cli("generate", ss_demo, "--prompt", "And")
    assert code == 2 and "--prompt-ids instead of --prompt" in err
    assert not (tmp_path / "q").exists()


def test_given_tokenizer_must_fit_the_vocabulary(hf_model, run_cli, tmp_path):
    _, folder = hf_model("h96")  # 1001 tokens; the demo's tokenizer has 4096
    for args in (["generate", folder, "--prompt", "And"],
                 ["quantize", folder, "--calib", DEMO / "calib.txt", "-o", tmp_path / "q"]):
        code, _, err = run_cli(*args, "--tokenizer", DEMO)
        assert code == 2 and err.count("\n") == 1
        assert f"--tokenizer {DEMO}: 4096 tokens, more than the model's 1001" in err
    assert not (tmp_path / "q").exists()
