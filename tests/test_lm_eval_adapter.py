"""The lm-evaluation-harness adapter's arithmetic, with lm_eval's base class stubbed (the real
harness and its data sets are not installed in CI)."""
import sys
import types

import pytest
import torch

from edgeq.models import load_model
from edgeq.runtime.backends import TorchBackend

from conftest import DEMO


@pytest.fixture
def lm(monkeypatch):
    if "lm_eval" not in sys.modules:
        api = types.ModuleType("lm_eval.api")
        model = types.ModuleType("lm_eval.api.model")
        model.LM = type("LM", (), {})
        monkeypatch.setitem(sys.modules, "lm_eval", types.ModuleType("lm_eval"))
        monkeypatch.setitem(sys.modules, "lm_eval.api", api)
        monkeypatch.setitem(sys.modules, "lm_eval.api.model", model)
    from edgeq import tokenizer
    from edgeq.models.loader import find_tokenizer
    from edgeq.runtime import lm_eval_adapter
    m, folder = load_model(str(DEMO))
    tok = tokenizer.from_json(find_tokenizer(folder))
    return lm_eval_adapter.make_lm(TorchBackend(m), tok), m, tok


def req(*args):
    return types.SimpleNamespace(args=args)


def test_loglikelihood_is_the_sum_of_continuation_logprobs(lm):
    adapter, model, tok = lm
    ctx, cont = "And God said", " unto Moses"
    (ll, greedy), = adapter.loglikelihood([req(ctx, cont)])
    ids = [tok.token_to_id("<|endoftext|>")] + tok.encode(ctx).ids
    c = tok.encode(cont).ids
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids + c]))[0][0].double(), -1)
    want = sum(logp[len(ids) - 1 + i, t].item() for i, t in enumerate(c))
    assert ll == pytest.approx(want, abs=1e-4) and isinstance(greedy, bool)
    # a likelier continuation scores higher
    (other, _), = adapter.loglikelihood([req(ctx, " zebra quantum")])
    assert ll > other


def test_rolling_and_generate(lm):
    adapter, _, tok = lm
    text = "In the beginning God created the heaven and the earth."
    (roll,) = adapter.loglikelihood_rolling([req(text)])
    n = len(tok.encode(text).ids)
    assert -20 * n < roll < 0
    (out,) = adapter.generate_until([req("And God said", {"until": ["\n"], "max_gen_toks": 12})])
    assert isinstance(out, str) and "\n" not in out and out.strip()
