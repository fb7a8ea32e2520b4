"""Ctrl-C and SIGTERM at every stage of build, generate and eval (inside ONNX Runtime's custom
ops too) exit 130/143 with one line and leave nothing; a kernel's argument error inside ORT is
one line and exit 2; a SIGKILLed build's temp folder is removed by the next build."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeq.errors import EdgeqError
from edgeq.ops.table import CAUSAL_CONV1D_INT8, LINEAR_W4A8
from edgeq.runtime import kernels, ort_ops

from test_ort_ops import one_node, q8

STALL = Path(__file__).parent / "support" / "stall.py"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.fixture(scope="module")
def graph(hf_model, calib_npy, tmp_path_factory):
    """An int8 graph (quamba-w8a8: the int8 conv, scan, Hadamard and add+RMSNorm PyOps)."""
    from edgeq.bundle.build import build
    out = tmp_path_factory.mktemp("g") / "bundle"
    build(str(hf_model("h96")[1]), "orin-nano", out, "quamba-w8a8", str(calib_npy), 4, 32)
    return out / "model.onnx"


def start(where: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(STALL), where, *map(str, args)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)


def stop(p: subprocess.Popen, where: str, sig: int) -> tuple[int, str]:
    """Send SIG once the process stalls at WHERE; its exit code and the stderr after that."""
    seen = []
    for line in p.stderr:
        seen.append(line)
        if line.startswith("stalled at"):
            break
    else:
        pytest.fail(f"never stalled at {where}: {''.join(seen)}")
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p.returncode, err


def assert_stopped(code: int, err: str, sig: int) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 128 + sig, err
    assert lines == [f"edgeq: stopped by {signal.Signals(sig).name}; nothing half-written "
                     "was left"], err


# validate is `pyop`: inside a PyOp. The stages after quantize on fp16 builds, which skip
# calibration, on 64 calibration tokens: a short validation
STAGES = ["load", "calibrate", "quantize", "export", "pyop", "plugins", "engine"]


@pytest.mark.parametrize("where,sig", [
    *((w, (signal.SIGINT, signal.SIGTERM)[i % 2]) for i, w in enumerate(STAGES)),
    ("pyop", signal.SIGTERM)])
def test_build_stopped_at_each_stage_leaves_nothing(where, sig, hf_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).integers(0, 1001, 64))
    recipe = "quamba-w8a8" if where in STAGES[:3] else "fp16"
    p = start(where, "build", hf_model("h96")[1], "--target", "orin-nano", "--recipe", recipe,
              "--calib", tmp_path / "ids.npy", "--samples", "4", "--seq-len", "32",
              "-o", out / "b")
    code, err = stop(p, where, sig)
    assert_stopped(code, err, sig)
    assert not list(out.iterdir())


@pytest.mark.parametrize("where,sig", [("open", signal.SIGTERM), ("pyop", signal.SIGINT),
                                       ("pyop", signal.SIGTERM)])
def test_generate_stopped(where, sig, graph):
    p = start(where, "generate", graph, "--prompt-ids", "1,2,3", "--max-new-tokens", "4")
    assert_stopped(*stop(p, where, sig), sig)


@pytest.mark.parametrize("where,sig", [("open", signal.SIGINT), ("pyop", signal.SIGTERM)])
def test_eval_stopped(where, sig, graph, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    words = "[UNK] and god said let there be light".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    text = tmp_path / "held-out.txt"
    text.write_text("and god said let there be light " * 20)
    p = start(where, "eval", graph, "--ppl", text, "--seq-len", "16", "--tokenizer",
              tmp_path / "tokenizer.json")
    assert_stopped(*stop(p, where, sig), sig)


@pytest.mark.parametrize("command,where,sig", [
    ("quantize", "edgeq.quant.folder:write_config", signal.SIGINT),  # in its temp folder
    ("export", "onnx:save_model", signal.SIGTERM)])
def test_quantize_and_export_stopped_while_writing(command, where, sig, hf_model, calib_npy,
                                                   tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = {"quantize": ["--calib", calib_npy, "--samples", "4", "--seq-len", "32", "-o",
                         out / "q"], "export": ["-o", out / "m.onnx"]}[command]
    p = start(where, command, hf_model("h96")[1], *args)
    assert_stopped(*stop(p, where, sig), sig)
    assert not list(out.iterdir())


def _session(model):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(ort_ops.register())
    return ort.InferenceSession(ort_ops.for_ort(model).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _w4a8(group_size):
    g = torch.Generator().manual_seed(0)
    K, N = 16, 8
    feed = dict(x=q8(g, 1, 3, K).numpy(), weight=q8(g, N, K // 2).numpy(),
                weight_scale=np.ones((N, 1), np.float32))
    return one_node(LINEAR_W4A8, feed, x_scale=0.1, group_size=group_size), feed


def _conv(x_scale):
    g = torch.Generator().manual_seed(0)
    C, W = 40, 4
    feed = dict(x=q8(g, 2, 9, C), weight=q8(g, C, W), bias=torch.randn(C, generator=g),
                state=q8(g, 2, W - 1, C))
    feed = {k: v.numpy() for k, v in feed.items()}
    return one_node(CAUSAL_CONV1D_INT8, feed, x_scale=x_scale, weight_scale=[0.01],
                    y_scale=[0.02]), feed


@pytest.mark.parametrize("make,bad,good,fragment", [
    (_w4a8, 0, 16, "EdgeqLinearW4A8: linear_w4a8: inconsistent shapes"),
    (_conv, [0.1] * 3, [0.1] * 40, "EdgeqCausalConv1dInt8: edgeq_causal_conv1d_int8 rejected")])
def test_kernel_argument_error_in_ort_is_an_edgeq_error(make, bad, good, fragment):
    model, feed = make(bad)
    with pytest.raises(EdgeqError, match=fragment):
        ort_ops.run(_session(model), None, feed)
    ort_ops.run(_session(make(good)[0]), None, feed)  # the next run is not affected


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_exception_in_a_pyop_is_raised_after_the_run(exc, monkeypatch):
    model, feed = _w4a8(16)
    session = _session(model)
    want = ort_ops.run(session, None, feed)

    def interrupted(*args, **kwargs):
        raise exc
    monkeypatch.setattr(kernels, "linear_w4a8", interrupted)
    with pytest.raises(exc):
        ort_ops.run(session, None, feed)
    monkeypatch.undo()
    np.testing.assert_array_equal(ort_ops.run(session, None, feed)[0], want[0])


def test_generate_on_a_crafted_graph_is_one_line_and_exit_2(graph, tmp_path):
    # a conv node with 3 x scales for its channels: the C++ kernel refuses it
    model = onnx.load(str(graph))
    node = next(n for n in model.graph.node if n.op_type == CAUSAL_CONV1D_INT8.name)
    attr = next(a for a in node.attribute if a.name == "x_scale")
    attr.CopyFrom(onnx.helper.make_attribute("x_scale", [0.1, 0.2, 0.3]))
    onnx.save(model, tmp_path / "crafted.onnx")
    p = subprocess.run([sys.executable, "-m", "edgeq.cli", "generate", tmp_path / "crafted.onnx",
                        "--prompt-ids", "1,2", "--max-new-tokens", "2"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("edgeq: error: EdgeqCausalConv1dInt8: ") and \
        len(p.stderr.splitlines()) == 1, p.stderr


def test_sigkilled_build_leftovers_are_removed_by_the_next(hf_model, calib_npy, tmp_path,
                                                           run_cli):
    p = start("calibrate", "build", hf_model("h96")[1], "--target", "orin-nano", "--calib",
              calib_npy, "--samples", "8", "--seq-len", "32", "-o", tmp_path / "b")
    code, _ = stop(p, "calibrate", signal.SIGKILL)
    assert code == -signal.SIGKILL
    left = [x.name for x in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".b.{p.pid}."), left
    code, _, err = run_cli("build", hf_model("h96")[1], "--target", "orin-nano", "--recipe",
                           "fp16", "--calib", calib_npy, "-o", tmp_path / "b")
    assert code == 0, err
    assert f"removed {tmp_path / left[0]}, the temp folder of a write of {tmp_path / 'b'} " \
           f"that was killed (pid {p.pid})" in err
    assert [x.name for x in tmp_path.iterdir()] == ["b"]
