"""The bundled demo model: what the folder holds, that it is trained, and the W8A8 acceptance
check on its held-out text (int8 ONNX on ORT vs the fake-quant model, top-1 >= 99.5 %)."""

import numpy as np
import pytest

from edgeq.export.onnx_export import to_onnx
from edgeq.models import load_model
from edgeq.quant import calib, quantize as Q, recipe as R
from edgeq.runtime import text
from edgeq.runtime.backends import OrtBackend, TorchBackend
from edgeq.runtime.evaluate import perplexity, top1_agreement
from edgeq.runtime.generate import generate

from conftest import DEMO


@pytest.fixture(scope="module")
def demo():
    model, folder = load_model(str(DEMO))
    tok = text.from_folder(folder)
    held = np.array(tok.encode((DEMO / "heldout.txt").read_text()).ids)
    return model, tok, held


def test_folder_holds_a_small_trained_model(demo):
    model, tok, held = demo
    for name in ("config.json", "model.safetensors", "tokenizer.json", "train_log.txt",
                 "heldout.txt", "calib.txt"):
        assert (DEMO / name).is_file(), name
    assert (DEMO / "model.safetensors").stat().st_size <= 20 * 2**20
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 10_000_000
    log = (DEMO / "train_log.txt").read_text()
    logged = float(log.split("held-out perplexity (seq 128): ")[1].split()[0])
    ppl = perplexity(TorchBackend(model), held[:4097], seq_len=128)
    assert ppl < 100 < tok.get_vocab_size()  # far below a uniform guess: it is trained
    assert abs(ppl / logged - 1) < 0.25  # the same model the log describes (a held-out slice)
    calib_text = (DEMO / "calib.txt").read_text()
    assert calib_text[:2000] not in (DEMO / "heldout.txt").read_text()


def test_generates_english(demo):
    model, tok, _ = demo
    ids = generate(TorchBackend(model), tok.encode("And God said").ids, 20)
    words = tok.decode(ids).split()
    assert len(words) >= 5 and sum(w.strip(",.;:").isalpha() for w in words) >= 4


@pytest.fixture(scope="module")
def quantized(demo):
    model, tok, _ = demo
    windows = calib.windows(calib.load_tokens(str(DEMO / "calib.txt"), tok), 32, 256,
                            model.cfg.vocab_size)
    out = {}
    for name in ("naive-w8a8", "quamba-w8a8"):
        rec = R.load(name)
        qfp, tensors, scales = Q.run(model, windows, rec)
        out[name] = Q.load_model(qfp.cfg, tensors, scales, rec)
    return out


def test_w8a8_int8_graph_agrees_with_fake_quant_on_heldout(demo, quantized):
    _, _, held = demo
    qm = quantized["quamba-w8a8"]
    agree = top1_agreement(TorchBackend(qm), OrtBackend(to_onnx(qm)), held, seq_len=512)
    assert agree >= 0.995, agree


def test_quamba_is_within_2_percent_of_fp32_and_beats_naive(demo, quantized):
    model, _, held = demo
    part = held[:8193]
    fp = perplexity(TorchBackend(model), part, 512)
    quamba = perplexity(TorchBackend(quantized["quamba-w8a8"]), part, 512)
    naive = perplexity(TorchBackend(quantized["naive-w8a8"]), part, 512)
    assert quamba <= fp * 1.02 and quamba < naive, (fp, quamba, naive)
