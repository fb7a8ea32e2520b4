"""The projected peak memory of building and loading a TensorRT engine on a target
(edgeq/trt/memory.py, docs/engine.md): its terms, the graph's weight bytes, Mamba2-8B W4A8 on the
8 GB Orin Nano, and `edgeq build` / `estimate` printing it and refusing early."""
import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgeq import targets
from edgeq.errors import EdgeqError
from edgeq.models import MambaConfig
from edgeq.trt import memory

GIB = 2**30
# NVIDIA's mamba2-8b-3t-4k (tools/estimate_table.py): untied 256k-token head
MAMBA2_8B = MambaConfig(d_model=4096, n_layer=56, vocab_size=256000, arch="mamba2", d_state=128,
                        headdim=64, ngroups=8, tie_embeddings=False)


def test_graph_weight_bytes_counts_initializers_int4_two_to_a_byte(tmp_path):
    inits = [numpy_helper.from_array(np.zeros((3, 5), np.float16), "h"),
             numpy_helper.from_array(np.zeros(7, np.int8), "q"),
             numpy_helper.from_array(np.zeros((2, 2), np.float32), "f"),
             helper.make_tensor("w4", onnx.TensorProto.INT4, [3, 3], bytes(5), raw=True)]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
                              inits)
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    assert memory.graph_weight_bytes(tmp_path / "m.onnx") == 15 * 2 + 7 + 4 * 4 + 5  # 9 INT4: 5 B


def test_projection_terms_on_shared_and_discrete_memory():
    cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=301)
    W, S = GIB // 2, 10 * 2**20
    act = memory.activation_bytes(cfg, 1, 2048)
    assert act == 4 * 2048 * (2 * 128 + 2 * 128)  # in_proj out (2 d_inner), scan out and gate
    nano = targets.get("orin-nano")
    p = memory.project(W, nano, cfg, S)
    # a Jetson: host and GPU one DRAM, against what the OS leaves (5.2 GB)
    assert p["build_peak_bytes"] == 3 * W + memory.workspace_bytes(nano) + memory.FIXED_BUILD
    assert p["load_peak_bytes"] == W + act + 2 * S + memory.FIXED_LOAD
    assert p["available_bytes"] == int(5.2 * GIB) and p["shared_memory"]
    assert p["loads"] and p["builds"]
    assert memory.workspace_bytes(nano) == int(5.2 * GIB) // 4  # the pool build_engine sets
    # a discrete GPU: its memory holds the builder's weights and workspace, then the engine
    h100 = targets.get("h100")
    d = memory.project(W, h100, cfg, S, max_batch=4)
    assert d["build_peak_bytes"] == W + memory.workspace_bytes(h100)
    assert d["load_peak_bytes"] == W + memory.activation_bytes(cfg, 4, 2048) + 2 * 4 * S
    assert d["build_host_bytes"] == 2 * W + memory.FIXED_BUILD and not d["shared_memory"]
    assert "and 2.00 GiB of host memory to build" in memory.describe(d, h100)
    # the build's limit: one byte more than the DRAM left is a warning (its fixed cost is
    # assumed, swap holds the host side), not a refusal
    edge = (p["available_bytes"] - memory.workspace_bytes(nano) - memory.FIXED_BUILD) // 3
    assert memory.check(memory.project(edge, nano, cfg, S), nano) is None
    over = memory.project(edge + 1, nano, cfg, S)
    assert over["loads"] and not over["builds"]
    assert "the build is projected over" in memory.describe(over, nano)
    assert "give it swap" in memory.check(over, nano)
    # the load's limit: one byte more cannot run there, and is refused in one line
    edge = p["available_bytes"] - act - 2 * S - memory.FIXED_LOAD
    assert memory.project(edge, nano, cfg, S)["loads"]
    too_big = memory.project(edge + 1, nano, cfg, S)
    assert not too_big["loads"]
    with pytest.raises(EdgeqError, match=r"engine on orin-nano: build needs .* does not fit.*"
                                         r"4-bit weights"):
        memory.check(too_big, nano)


def test_mamba2_8b_w4a8_on_the_8gb_nano():
    """The figure the README shows: Mamba2-8B W4A8 loads within the Nano's DRAM only with the
    4-bit head and embedding, and its engine build is projected over the Nano's DRAM either way."""
    nano = targets.get("orin-nano")
    w4a8 = memory.from_config(MAMBA2_8B, nano, "quamba2-w4a8")
    h2t = memory.from_config(MAMBA2_8B, nano, "quamba2-w4a8", h2t=True)
    # the untied fp16 embedding counts once more than the roofline's weights (read per token)
    fp16_table = 256000 * 4096 * 2
    assert w4a8["weights_bytes"] - targets.estimate(MAMBA2_8B, nano, "quamba2-w4a8")[
        "weights_bytes"] == fp16_table
    assert not w4a8["loads"] and w4a8["load_peak_bytes"] > w4a8["available_bytes"]
    assert h2t["load_peak_bytes"] <= h2t["available_bytes"] < h2t["build_peak_bytes"]
    assert h2t["loads"] and not h2t["builds"]
    assert 14 * GIB < h2t["build_peak_bytes"] < 15 * GIB  # 3 x 4.1 GiB of weights, and the rest


def test_estimate_prints_the_engine_memory(tmp_path, run_cli):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "d_model": 4096, "n_layer": 56, "vocab_size": 256000, "tie_embeddings": False,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 128, "headdim": 64, "ngroups": 8}}))
    code, out, err = run_cli("estimate", folder, "--target", "orin-nano", "--recipe",
                             "quamba2-w4a8", "--h2t")
    assert code == 0, err
    want = memory.describe(memory.from_config(MAMBA2_8B, targets.get("orin-nano"), "quamba2-w4a8",
                                              h2t=True), targets.get("orin-nano"))
    assert want in out and "loads; the build is projected over" in want
    code, out, _ = run_cli("estimate", folder, "--target", "orin-nano", "--recipe",
                           "quamba2-w4a8", "--h2t", "--json")
    assert json.loads(out)["engine_memory"]["builds"] is False


def test_build_records_the_engine_memory_and_refuses_early(hf_model, tmp_path, run_cli,
                                                             monkeypatch):
    model = hf_model("h96")[1]
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).integers(0, 1001, 2000))
    args = ["build", model, "--target", "orin-nano", "--calib", tmp_path / "ids.npy",
            "--samples", "2", "--seq-len", "32"]
    code, out, err = run_cli(*args, "--recipe", "fp16", "-o", tmp_path / "b")
    assert code == 0, err
    m = json.loads((tmp_path / "b" / "bundle.json").read_text())
    e = m["engine_memory"]
    assert e["basis"] == "graph" and e["loads"] and e["builds"]
    assert e["weights_bytes"] == memory.graph_weight_bytes(tmp_path / "b" / "model.onnx")
    assert memory.describe(e, m["target"]) in out
    # a target that could load but is projected short for the build: a warning, and a bundle
    small = {**targets.get("orin-nano"), "usable_memory_gb": 1.0}
    monkeypatch.setattr(targets, "get", lambda name: small)
    code, _, err = run_cli(*args, "--recipe", "fp16", "-o", tmp_path / "w")
    assert code == 0 and err.count("warning: the engine build is projected") == 1, err
    # a target that cannot load the engine: refused in one line before the slow stages
    small["usable_memory_gb"] = 0.4
    from edgeq.quant import pipeline
    monkeypatch.setattr(pipeline, "calibrate_all", lambda *a: pytest.fail("calibrated"))
    code, _, err = run_cli(*args, "--recipe", "quamba-w8a8", "-o", tmp_path / "c")
    last = err.strip().splitlines()[-1]  # after the load stage's progress
    assert code == 2 and err.count("error") == 1 and "does not fit" in last, err
    assert not (tmp_path / "c").exists()
