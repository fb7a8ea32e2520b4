"""One generation loop for every backend; greedy ids equal transformers' generate."""
import numpy as np
import pytest

from edgeq.export.onnx_export import to_onnx
from edgeq.models import load_model
from edgeq.runtime.backends import OrtBackend, TorchBackend
from edgeq.runtime.generate import Sampling, generate, pick

from conftest import hf_greedy


@pytest.fixture(scope="module")
def backends(hf_model):
    hf, folder = hf_model("h96")
    model, _ = load_model(str(folder))
    return hf, {"torch": TorchBackend(model), "ort": OrtBackend(to_onnx(model))}


@pytest.mark.parametrize("backend", ["torch", "ort"])
@pytest.mark.parametrize("prompt", [[5], [17, 3, 999, 42, 7, 7, 1]])
def test_greedy_equals_transformers(backends, backend, prompt):
    hf, be = backends
    want = hf_greedy(hf, prompt, 20)
    assert generate(be[backend], prompt, 20) == want


def test_eos_stops_and_counts(backends):
    _, be = backends
    ids = generate(be["torch"], [5, 6], 12)
    assert len(ids) == 12
    assert generate(be["torch"], [5, 6], 12, eos_id=ids[3]) == ids[:ids.index(ids[3]) + 1]


def test_sampling_is_seeded_and_filters():
    logits = np.array([0.0, 5.0, 4.9, -3.0, 1.0])
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    s = Sampling(greedy=False, temperature=0.8, top_k=3, seed=7)
    draws = [pick(logits, s, r) for r in [rng()] for _ in range(200)]
    assert set(draws) <= {1, 2, 4}
    assert draws == [pick(logits, s, r) for r in [rng()] for _ in range(200)]
    assert {pick(logits, Sampling(greedy=False, top_k=1), rng()) for _ in range(20)} == {1}
    # top_p 0.5: token 1 alone holds ~51 % of the mass
    assert {pick(logits, Sampling(greedy=False, top_p=0.5), np.random.default_rng(i)) for i in range(50)} == {1}
    assert pick(logits, Sampling(), rng()) == 1


def test_backends_sample_the_same_tokens(backends):
    _, be = backends
    s = Sampling(greedy=False, temperature=1.0, top_p=0.9, seed=3)
    assert generate(be["torch"], [9, 8, 7], 15, s) == generate(be["ort"], [9, 8, 7], 15, s)
