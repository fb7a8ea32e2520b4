"""Quamba W8A8 and its naive baseline: recipes, calibration, the fake-quant model, the int8
ONNX graph on ORT with the int8 kernels, the quantized folder and its errors."""
import json
import math
import shutil

import numpy as np
import onnx
import pytest
import torch

from edgeq.errors import EdgeqError
from edgeq.export.onnx_export import to_onnx
from edgeq.models import load_model
from edgeq.ops import hadamard
from edgeq.quant import calib_data, calib_stats, folder as quant_folder, quantize as Q, recipe as R
from edgeq.runtime.backends import OrtBackend, TorchBackend
from edgeq.runtime.evaluate import perplexity, top1_agreement


@pytest.fixture(scope="module")
def fp(hf_model):
    return load_model(str(hf_model("h96")[1]))[0]


def tokens(n=6000, vocab=1001, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, n)


@pytest.fixture(scope="module")
def quantized(fp, tmp_path_factory):
    out = {}
    for name in ("naive-w8a8", "quamba-w8a8"):
        rec = R.load(name)
        ranges = calib_stats.calibrate(fp, calib_data.windows(tokens(), 16, 64, 1001), rec)
        t, s = Q.quantize_model(fp, ranges, rec)
        folder = tmp_path_factory.mktemp("q") / name
        quant_folder.save(folder, fp, t, s, rec, {"samples": 16}, None)
        out[name] = folder
    return out


def test_recipes_are_data():
    assert {"quamba-w8a8", "naive-w8a8"} <= set(R.names())
    q = R.load("quamba-w8a8")
    assert q.observer_of("u") == R.Observer("percentile", 99.999)
    assert q.observer_of("x") == R.Observer("absmax") and q.hadamard_out_proj
    n = R.load("naive-w8a8")
    assert n.observer_of("u") == R.Observer("absmax") and not n.hadamard_out_proj
    assert R.load("quamba-w8a8", percentile=99.9, per_channel=True).weights.granularity == "per-channel"
    with pytest.raises(EdgeqError, match="unknown recipe"):
        R.load("quamba-w3a3")


def test_recipes_are_typed():
    fp16 = R.load("fp16")
    assert not fp16.quantizes and all(R.load(n).quantizes for n in R.names() if n != "fp16")
    assert "fp16" not in R.for_arch("mamba1") + R.for_arch("mamba2")
    for name in R.names():  # what quant.json holds reads back as the same recipe
        assert R.from_dict(R.to_dict(R.load(name)), name) == R.load(name)
    bad = R.to_dict(R.load("quamba-w8a8"))
    with pytest.raises(EdgeqError, match=r"^q: recipe.weights.bits: unknown recipe field"):
        R.from_dict({**bad, "weights": {**bad["weights"], "bits": 8}}, "q: recipe")
    with pytest.raises(EdgeqError, match=r"^q: recipe.archs: missing"):
        R.from_dict({k: v for k, v in bad.items() if k != "archs"}, "q: recipe")
    with pytest.raises(EdgeqError, match=r"^q: recipe.h2t: 'yes' is not a bool"):
        R.from_dict({**bad, "h2t": "yes"}, "q: recipe")
    with pytest.raises(EdgeqError, match="--h2t: fp16 quantizes nothing"):
        R.load("fp16", h2t=True)


def test_calibration_is_deterministic(fp, tmp_path):
    rec = R.load("quamba-w8a8")
    for run in ("a", "b"):
        ranges = calib_stats.calibrate(fp, calib_data.windows(tokens(), 12, 32, 1001, seed=5), rec, batch=5 if run == "a" else 3)
        quant_folder.save(tmp_path / run, fp, *Q.quantize_model(fp, ranges, rec), rec, {}, None)
    assert (tmp_path / "a" / "quant.json").read_bytes() == (tmp_path / "b" / "quant.json").read_bytes()
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_percentile_clips_below_absmax(fp):
    w = calib_data.windows(tokens(), 8, 64, 1001)
    q = calib_stats.calibrate(fp, w, R.load("quamba-w8a8", percentile=99.0))
    n = calib_stats.calibrate(fp, w, R.load("naive-w8a8"))
    for a, b in zip(q.ranges, n.ranges):
        assert a["u"] < b["u"] and a["x"] == b["x"]


def test_calibration_data_forms(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "t.txt").write_text("a b a b c")
    assert calib_data.load_tokens(str(tmp_path / "t.txt"), tok).tolist() == [0, 1, 0, 1, 2]
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "1.txt").write_text("a")
    (tmp_path / "dir" / "2.txt").write_text("b b")
    assert calib_data.load_tokens(str(tmp_path / "dir"), tok).tolist() == [0, 1, 1]
    np.save(tmp_path / "ids.npy", np.arange(10, dtype=np.int32))
    assert calib_data.load_tokens(str(tmp_path / "ids.npy"), None).tolist() == list(range(10))
    with pytest.raises(EdgeqError, match="fewer than one window"):
        calib_data.windows(np.arange(10), 4, 64, 100)
    with pytest.raises(EdgeqError, match="outside the vocabulary"):
        calib_data.windows(np.arange(100), 4, 8, 50)
    with pytest.raises(EdgeqError, match="tokenizer"):
        calib_data.load_tokens(str(tmp_path / "t.txt"), None)
    with pytest.raises(EdgeqError, match="no such file"):
        calib_data.load_tokens(str(tmp_path / "nope.txt"), tok)


@pytest.mark.parametrize("data, name, subset", [
    ("monology/pile-uncopyrighted", "monology/pile-uncopyrighted", None),
    ("wikitext:wikitext-2-raw-v1", "wikitext", "wikitext-2-raw-v1"),
])
def test_calibration_from_a_hub_data_set(monkeypatch, data, name, subset):
    """`datasets` replaced: the id and subset it is asked for, its rows' text joined; a failure
    is one line."""
    import sys
    import types
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    asked = []

    def load_dataset(path, config, split, streaming):
        asked.append((path, config, split, streaming))
        if path == "nobody/nothing":
            raise FileNotFoundError(path)
        return iter([{"text": "a b"}, {"text": "b"}])
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert calib_data.load_tokens(data, tok).tolist() == [0, 1, 1]
    assert asked == [(name, subset, "train", True)]
    with pytest.raises(EdgeqError, match="nobody/nothing: cannot load the data set"):
        calib_data.load_tokens("nobody/nothing", tok)


def test_nan_activations_are_refused(fp):
    import copy
    m = copy.deepcopy(fp)
    with torch.no_grad():
        m.backbone.layers[1].mixer.x_proj.weight[0, 0] = float("nan")
    with pytest.raises(EdgeqError, match="NaN/inf"):
        calib_stats.calibrate(m, calib_data.windows(tokens(), 2, 16, 1001), R.load("naive-w8a8"))


def test_hadamard_is_folded_into_out_proj(fp):
    rec = R.load("quamba-w8a8")
    ranges = calib_stats.calibrate(fp, calib_data.windows(tokens(), 4, 32, 1001), rec)
    t, _ = Q.quantize_model(fp, ranges, rec)
    key = "backbone.layers.0.mixer.out_proj.weight"
    w = t[key].float() * t[key + "_scale"]
    want = fp.backbone.layers[0].mixer.out_proj.weight.double() @ hadamard.matrix(192).T
    assert (w - want.float()).abs().max() <= t[key + "_scale"] / 2 + 1e-7


@pytest.mark.parametrize("name", ["naive-w8a8", "quamba-w8a8"])
def test_fake_quant_tracks_fp_and_ort_tracks_fake_quant(fp, quantized, name):
    qm = quant_folder.load(quantized[name])
    ids = tokens(2049, seed=9)
    fq, fpb = TorchBackend(qm), TorchBackend(fp)
    assert top1_agreement(fpb, fq, ids, seq_len=256) > 0.8
    proto = to_onnx(qm)
    assert top1_agreement(fq, OrtBackend(proto), ids, seq_len=256) >= 0.995
    # state carried across calls on ORT equals one pass
    ob = OrtBackend(proto)
    a, _ = ob.forward(ids[None, :40], ob.new_state(1))
    b1, st = ob.forward(ids[None, :25], ob.new_state(1))
    b2, _ = ob.forward(ids[None, 25:40], st)
    np.testing.assert_allclose(np.concatenate([b1, b2], 1), a, atol=1e-4)


def test_int8_graph_follows_explicit_quantization_rules(quantized):
    proto = to_onnx(quant_folder.load(quantized["quamba-w8a8"]))
    onnx.checker.check_model(proto, full_check=True)
    consts = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant"}
    inits = {i.name: i for i in proto.graph.initializer}
    types = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "EdgeqAddRMSNormInt8", "EdgeqCausalConv1dInt8",
            "EdgeqSelectiveScanInt8", "EdgeqHadamardInt8"} <= types
    for n in proto.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            for name in n.input[1:]:  # scales and zero points are build-time constants
                assert name in consts or name in inits
            if len(n.input) > 2:
                zp = onnx.numpy_helper.to_array(consts[n.input[2]].attribute[0].t) if n.input[2] in consts \
                    else onnx.numpy_helper.to_array(inits[n.input[2]])
                assert zp.dtype == np.int8 and not zp.any()  # symmetric
    conv_in = [i for i in proto.graph.input if i.name.startswith("conv_state")]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT8 for i in conv_in)


def test_quant_folder_from_another_model_is_refused(quantized, hf_model, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(quantized["naive-w8a8"], bad)
    shutil.copy(hf_model("h40-bias-untied")[1] / "config.json", bad / "config.json")
    with pytest.raises(EdgeqError, match="another model"):
        quant_folder.load(bad)
    meta = json.loads((quantized["naive-w8a8"] / "quant.json").read_text())
    meta["format"] = "something/0"
    shutil.copy(quantized["naive-w8a8"] / "config.json", bad / "config.json")
    (bad / "quant.json").write_text(json.dumps(meta))
    with pytest.raises(EdgeqError, match="is not edgeq-quant"):
        quant_folder.load(bad)
    # /1: before the typed recipe; /2: before one key layout for every recipe
    for old in ("edgeq-quant/1", "edgeq-quant/2"):
        (bad / "quant.json").write_text(json.dumps({**meta, "format": old}))
        with pytest.raises(EdgeqError, match=f"is {old}, an older format .*quantize the model again"):
            quant_folder.load(bad)
    meta["format"] = quant_folder.FORMAT
    for damaged, fragment in (([], "is not edgeq-quant"), ({**meta, "scales": None}, "damaged")):
        (bad / "quant.json").write_text(json.dumps(damaged))
        with pytest.raises(EdgeqError, match=fragment):
            quant_folder.load(bad)
    # a tensor missing or misshapen: the load's one-token run finds it
    from safetensors.torch import load_file, save_file
    shutil.copy(quantized["naive-w8a8"] / "quant.json", bad / "quant.json")
    t = load_file(str(quantized["naive-w8a8"] / "model.safetensors"))
    out_proj = "backbone.layers.1.mixer.out_proj.weight"
    for k, v in (("backbone.layers.1.mixer.A_log", None), (out_proj, t[out_proj][:, :-1])):
        save_file({**{n: w for n, w in t.items() if n != k}, **({k: v.contiguous()} if v is not None else {})},
                  str(bad / "model.safetensors"))
        with pytest.raises(EdgeqError, match="weights are damaged"):
            quant_folder.load(bad)


def test_perplexity_backends_agree(fp):
    ids = tokens(1025, seed=4)
    a = perplexity(TorchBackend(fp), ids, seq_len=128)
    b = perplexity(OrtBackend(to_onnx(fp)), ids, seq_len=128)
    assert abs(a - b) / a < 1e-5
    uniform = perplexity(type("U", (), {"new_state": lambda s, b: None,
                                        "forward": lambda s, x, st: (np.zeros((*x.shape, 1001)), None)})(),
                         ids, seq_len=128)
    assert abs(uniform - 1001) < 1e-6
    # a model that puts every target 1000 nats down (a random init): infinite, not a crash
    sure = np.where(np.arange(1001) == 0, 1000.0, 0.0)
    wrong = perplexity(type("W", (), {"new_state": lambda s, b: None,
                                      "forward": lambda s, x, st: (np.broadcast_to(sure, (*x.shape, 1001)), None)})(),
                       ids[ids != 0], seq_len=128)
    assert wrong == math.inf


def test_perplexity_token_by_token_is_decode_steps(fp):
    """step=True feeds each window one token at a time, the state carried: for a model whose
    state is never rounded, the same perplexity as one call per window."""
    ids = tokens(257, seed=5)
    calls = []

    class Counting(TorchBackend):
        def forward(self, x, state):
            calls.append(x.shape)
            return super().forward(x, state)
    a = perplexity(TorchBackend(fp), ids, seq_len=64)
    b = perplexity(Counting(fp), ids, seq_len=64, batch=4, step=True)
    assert calls == [(4, 1)] * 64 and abs(a - b) / a < 1e-5
