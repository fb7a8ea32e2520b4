"""Hostile and careless input (issue 23, items 6 and 7): each case ends with one line on stderr
and exit code 2, never a traceback, and never as a result that looks right."""
from __future__ import annotations

import errno
import json
import math
import shutil

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import DEMO

DEEP = "[" * 100_000 + "]" * 100_000


def refused(result, *fragments):
    """Exit 2, one error line on stderr (after a build's progress lines) holding every
    fragment, no traceback."""
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1].startswith("edgeq: error: ") and err.count("edgeq: error: ") == 1, err
    assert all(line.startswith(("[", "    ", "calibrating", "quantizing")) for line in lines[:-1]), err
    err = lines[-1]
    for f in fragments:
        assert f in err, err
    return err


def config_only(tmp_path, **changes):
    """A folder with the demo's config.json, changed, and no weights (dims are checked first)."""
    folder = tmp_path / "m"
    folder.mkdir()
    cfg = json.loads((DEMO / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **changes}))
    return folder


@pytest.fixture
def h96(hf_model, tmp_path):
    """A copy of the tiny -hf checkpoint (vocab 1001, no tokenizer) to damage."""
    shutil.copytree(hf_model("h96")[1], tmp_path / "h96")
    return tmp_path / "h96"


def set_tensor(folder, key, fn):
    sd = load_file(folder / "model.safetensors")
    sd[key] = fn(sd[key])
    save_file(sd, folder / "model.safetensors")


# ---- item 6: dims that overflow, JSON too deep, a hostile index

@pytest.mark.parametrize("command", [["inspect"], ["estimate", "--target", "orin-nano"],
                                     ["build", "--target", "orin-nano", "--calib", DEMO / "calib.txt"]])
@pytest.mark.parametrize("change, says", [
    ({"hidden_size": 10 ** 12}, "d_model 1000000000000 is more than edgeq's limit of 65536"),
    ({"vocab_size": 2 ** 62}, f"vocab_size {2 ** 62} is more than edgeq's limit"),
    ({"hidden_size": 1e12}, "is not a positive integer"),
    ({"num_hidden_layers": 10 ** 9}, "n_layer 1000000000 is more than"),
])
def test_overflowing_dims_are_bounded(run_cli, tmp_path, command, change, says):
    folder = config_only(tmp_path, **change)
    refused(run_cli(command[0], folder, *command[1:], *(["-o", tmp_path / "b"] if command[0] == "build" else [])),
            "config.json", says)
    assert not (tmp_path / "b").exists()


def test_time_step_rank_infinity_is_one_line(run_cli, tmp_path):
    refused(run_cli("inspect", config_only(tmp_path, time_step_rank=1e999)), "config.json")


def test_deep_config_json(run_cli, tmp_path):
    (tmp_path / "config.json").write_text(DEEP)
    refused(run_cli("inspect", tmp_path), "config.json", "nested too deep")


def test_deep_quant_json(run_cli, tmp_path):
    folder = config_only(tmp_path)
    (folder / "quant.json").write_text(DEEP)
    refused(run_cli("inspect", folder), "quant.json", "nested too deep")


@pytest.mark.parametrize("index, says", [
    (DEEP, "nested too deep"),
    ('{"weight_map": ["model.safetensors"]}', "weight_map is not an object"),
    ('{"weight_map": {"a.weight": 3}}', "weight_map is not an object"),
    ('{"weight_map": {"a.weight": null}}', "weight_map is not an object"),
    ('["weight_map"]', "weight_map is not an object"),
    ('{"weight_map": {"a.weight": "../h96/model.safetensors"}}', "outside the model folder"),
    ('{"weight_map": {"a.weight": "/etc/passwd"}}', "outside the model folder"),
    ('{"weight_map": {"a.weight": "shards/../../x.safetensors"}}', "outside the model folder"),
])
def test_hostile_safetensors_index(run_cli, h96, tmp_path, index, says):
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(h96 / "config.json", folder)
    (folder / "model.safetensors.index.json").write_text(index)
    refused(run_cli("inspect", folder), "model.safetensors.index.json", says)


def test_index_inside_the_folder_still_loads(run_cli, h96):
    sd = load_file(h96 / "model.safetensors")
    (h96 / "model.safetensors").unlink()
    (h96 / "shards").mkdir()
    keys = sorted(sd)
    save_file({k: sd[k] for k in keys[:5]}, h96 / "shards/a.safetensors")
    save_file({k: sd[k] for k in keys[5:]}, h96 / "shards/b.safetensors")
    (h96 / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: f"shards/{'a' if i < 5 else 'b'}.safetensors" for i, k in enumerate(keys)}}))
    code, out, err = run_cli("inspect", h96, "--json")
    assert code == 0, err
    assert json.loads(out)["vocab_size"] == 1001


# ---- item 6: the metadata of an ONNX graph

@pytest.fixture(scope="module")
def graph(hf_model, tmp_path_factory):
    from edgeq.export.onnx_export import to_onnx
    from edgeq.models import load_model
    return to_onnx(load_model(str(hf_model("h96")[1]))[0])


def with_meta(graph, tmp_path, **meta):
    proto = onnx.ModelProto()
    proto.CopyFrom(graph)
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(meta)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    path = tmp_path / "g.onnx"
    onnx.save_model(proto, path)
    return path


def generate(run_cli, source, *extra):
    return run_cli("generate", source, "--prompt-ids", "1,2", "--max-new-tokens", "2", *extra)


def edited_config(graph, **changes):
    cfg = json.loads({p.key: p.value for p in graph.metadata_props}["edgeq.config"])
    return json.dumps({**cfg, **changes})


@pytest.mark.parametrize("meta, says", [
    ({"edgeq.config": "{not json"}, "metadata edgeq.config: not valid JSON"),
    ({"edgeq.config": DEEP}, "metadata edgeq.config: JSON nested too deep"),
    ({"edgeq.config": "[1, 2]"}, "is not an edgeq config"),
    ("unknown", "unexpected keyword argument 'rope_theta'"),
    ("vocab", "vocab_size 5000 but the graph's embedding/logits have 1001"),
    ("huge", "vocab_size 9223372036854775807 is not"),
    ({"edgeq.tokenizer": "{not a tokenizer"}, "metadata edgeq.tokenizer: unreadable tokenizer"),
    ({"edgeq.tokenizer": (DEMO / "tokenizer.json").read_text()},
     "metadata edgeq.tokenizer: 4096 tokens, more than the model's 1001"),
])
def test_bad_onnx_metadata(run_cli, graph, tmp_path, meta, says):
    if meta == "unknown":
        meta = {"edgeq.config": edited_config(graph, rope_theta=10000)}
    elif meta == "vocab":
        meta = {"edgeq.config": edited_config(graph, vocab_size=5000)}
    elif meta == "huge":
        meta = {"edgeq.config": edited_config(graph, vocab_size=2 ** 63 - 1)}
        says = "vocab_size 9223372036854775807 is more than edgeq's limit"
    refused(generate(run_cli, with_meta(graph, tmp_path, **meta)), "g.onnx", says)


def test_graph_with_nan_weight(run_cli, graph, tmp_path):
    proto = onnx.ModelProto()
    proto.CopyFrom(graph)
    t = next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
             and len(t.dims) == 2)
    a = onnx.numpy_helper.to_array(t).copy()
    a.flat[3] = np.nan
    t.CopyFrom(onnx.numpy_helper.from_array(a, t.name))
    onnx.save_model(proto, tmp_path / "g.onnx")
    refused(generate(run_cli, tmp_path / "g.onnx"), f"weight {t.name} holds NaN or infinite")


def test_own_tokenizer_larger_than_the_embedding(run_cli, h96):
    shutil.copy(DEMO / "tokenizer.json", h96)
    refused(generate(run_cli, h96), "tokenizer.json: 4096 tokens, more than the model's 1001")


def test_own_tokenizer_that_does_not_parse(run_cli, h96):
    (h96 / "tokenizer.json").write_text('{"model": 3}')
    refused(generate(run_cli, h96), "tokenizer.json: unreadable tokenizer")


# ---- item 6: a full disk while writing

def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def safetensors_full(*args, **kwargs):
    from safetensors import SafetensorError
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("writer", [safetensors_full, disk_full])
def test_full_disk_while_quantizing(run_cli, monkeypatch, tmp_path, writer):
    np.save(tmp_path / "ids.npy", np.arange(64) % 1000)
    monkeypatch.setattr("safetensors.torch.save_file", writer)
    out = tmp_path / "q"
    err = refused(run_cli("quantize", DEMO, "--calib", tmp_path / "ids.npy", "--samples", "1",
                          "--seq-len", "16", "-o", out),
                  f"{out}: ", "No space left on device", "free some space")
    assert ".edgeq-" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.npy"]


def test_full_disk_while_exporting(run_cli, monkeypatch, h96, tmp_path):
    monkeypatch.setattr("onnx.save_model", disk_full)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    refused(run_cli("export", h96, "-o", out), f"{out}: No space left on device")
    assert list(out.parent.iterdir()) == []


def test_full_disk_while_building(run_cli, monkeypatch, tmp_path):
    monkeypatch.setattr("onnx.save_model", disk_full)
    out = tmp_path / "out" / "b"
    out.parent.mkdir()
    refused(run_cli("build", DEMO, "--target", "orin-nano", "--recipe", "fp16", "-o", out),
            f"{out}/model.onnx: No space left on device")
    assert list(out.parent.iterdir()) == []



# ---- item 7: wrong data is refused, not reported as a result

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused_at_load(run_cli, h96, tmp_path, bad):
    key = "backbone.layers.1.mixer.x_proj.weight"
    set_tensor(h96, key, lambda t: t.index_put_((torch.tensor([2]), torch.tensor([5])),
                                                torch.tensor(bad)))
    (tmp_path / "text.txt").write_text("x")
    refused(generate(run_cli, h96), f"{key} holds NaN or infinite values")
    refused(run_cli("eval", h96, "--ppl", tmp_path / "text.txt", "--tokenizer", DEMO),
            f"{key} holds NaN or infinite")


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.int64])
def test_integer_weights_are_refused(run_cli, h96, dtype):
    key = "backbone.layers.0.mixer.in_proj.weight"
    set_tensor(h96, key, lambda t: t.to(dtype))
    refused(generate(run_cli, h96), f"{key} is {str(dtype)[6:]}, not floating point")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """The demo model quantized (quamba-w8a8) on a little calibration data."""
    from edgeq.models import load_model
    from edgeq.quant import recipe as recipes
    from edgeq.quant.pipeline import quantize_to
    lm = load_model(str(DEMO))[0]
    rec = recipes.load("quamba-w8a8")
    windows = torch.arange(64).reshape(2, 32) % 4096
    out = tmp_path_factory.mktemp("q") / "q"
    quantize_to(out, lm, windows, rec, {}, None)
    return out


@pytest.mark.parametrize("value, says", [(0, "0"), (-0.5, "-0.5"), (math.nan, "nan"),
                                         (math.inf, "inf"), ("1", "1"), (True, "True")])
def test_bad_quant_json_scales(run_cli, quantized, tmp_path, value, says):
    folder = tmp_path / "q"
    shutil.copytree(quantized, folder)
    meta = json.loads((folder / "quant.json").read_text())
    name = sorted(meta["scales"][1])[0]
    meta["scales"][1][name] = value
    (folder / "quant.json").write_text(json.dumps(meta))
    refused(generate(run_cli, folder), f"layer 1 scale {name} is {says}, not a finite number above 0")


@pytest.mark.parametrize("key, fn, says", [
    ("backbone.layers.0.mixer.in_proj.weight_scale", lambda t: t * 0, "non-positive scales"),
    ("backbone.layers.0.mixer.in_proj.weight_scale", lambda t: t * math.nan,
     "NaN, infinite or non-positive"),
    ("backbone.layers.0.mixer.A_log", lambda t: t.fill_(math.inf), "holds NaN or infinite values"),
    ("backbone.layers.0.mixer.A_log", lambda t: t.to(torch.int8), "is int8, not floating point"),
    ("backbone.layers.0.mixer.in_proj.weight", lambda t: t.to(torch.bool), "is bool, not int8"),
])
def test_damaged_quantized_tensors(run_cli, quantized, tmp_path, key, fn, says):
    folder = tmp_path / "q"
    shutil.copytree(quantized, folder)
    set_tensor(folder, key, fn)
    refused(generate(run_cli, folder), f"tensor {key}", says)


@pytest.mark.parametrize("old", ["edgeq-quant/1", "edgeq-quant/2"])
def test_quant_folder_of_an_older_format(run_cli, quantized, tmp_path, old):
    # /2's tensors had other names (int8 recipes: layers.{i}.*, embedding.weight): not read
    folder = tmp_path / "q"
    shutil.copytree(quantized, folder)
    meta = json.loads((folder / "quant.json").read_text())
    (folder / "quant.json").write_text(json.dumps({**meta, "format": old}))
    for command in (generate(run_cli, folder), run_cli("export", folder, "-o", tmp_path / "m.onnx")):
        refused(command, f"quant.json is {old}, an older format than this edgeq's edgeq-quant/3",
                "quantize the model again")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("data, says", [
    (b"caf\xe9 latin-1 text " * 100, "not UTF-8 text (byte 3)"),
    (b"\x00" * 4000, "100 % of its characters are control characters"),
    (bytes(range(32)) * 100 + b"some words " * 10, "control characters"),
])
def test_calibration_that_is_not_text(run_cli, tmp_path, data, says):
    (tmp_path / "calib.txt").write_bytes(data)
    refused(run_cli("quantize", DEMO, "--calib", tmp_path / "calib.txt", "--samples", "1",
                    "--seq-len", "16", "-o", tmp_path / "q"), "calib.txt", says)
    (tmp_path / "dir").mkdir()
    shutil.copy(tmp_path / "calib.txt", tmp_path / "dir" / "b.txt")
    (tmp_path / "dir" / "a.txt").write_text("plain text " * 20)
    refused(run_cli("quantize", DEMO, "--calib", tmp_path / "dir", "--samples", "1",
                    "--seq-len", "16", "-o", tmp_path / "q"), "b.txt", says)
    assert not (tmp_path / "q").exists()


def test_text_with_a_few_control_characters_calibrates(run_cli, tmp_path):
    from edgeq.quant.calib_data import load_tokens
    from edgeq.tokenizer import from_json
    tok = from_json((DEMO / "tokenizer.json").read_text())
    (tmp_path / "c.txt").write_text("And God said\x0c let there be light.\t\x1b[0m\n" * 20)
    assert len(load_tokens(str(tmp_path / "c.txt"), tok)) > 100


@pytest.mark.parametrize("n", [2, 16])
def test_build_on_too_few_validation_tokens(run_cli, tmp_path, n):
    np.save(tmp_path / "ids.npy", np.arange(n))
    refused(run_cli("build", DEMO, "--target", "orin-nano", "--recipe", "fp16", "--calib",
                    tmp_path / "ids.npy", "-o", tmp_path / "b"),
            f"ids.npy: {n} tokens; validation needs at least 17")
    assert not (tmp_path / "b").exists()
