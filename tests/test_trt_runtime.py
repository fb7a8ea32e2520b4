"""edgeq.trt's logic on a simulated TensorRT and CUDA (tests/support/fake_trt.py; the real ones are
not here): engines from edgeq.trt.engine's network and profiles; generation equals ONNX Runtime's,
decode steps replay CUDA graphs with no allocation, the two state sets take turns, one activation
block serves every context, bench times on CUDA events; `edgeq engine` as on the device, and both it
and bench refusing another GPU or TensorRT."""
import gc
import itertools
import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import fake_trt
from edgeq import targets
from edgeq.errors import EdgeqError
from edgeq.export.onnx_export import save, to_onnx
from edgeq.models import MambaConfig, MambaLM
from edgeq.quant import calib_data, folder as quant_folder, pipeline, recipe as R
from edgeq.runtime.backends import OrtBackend
from edgeq.runtime.generate import generate


def _bundle_files(out, model, cfg):
    """A bundle's files as TrtBackend reads them: the graph, the manifest's config, a plugin
    library file and an engine that edgeq.trt.engine built on the simulated TensorRT."""
    save(to_onnx(model), out / "model.onnx")
    (out / "bundle.json").write_text(json.dumps({"model": {"config": cfg.to_dict()}}))
    (out / "plugins").mkdir()
    (out / "plugins" / "libedgeq_trt_plugins.so").write_bytes(fake_trt.LIBRARY)
    _build_engine(out)


def _build_engine(bundle, max_batch=4, max_seq=2048, timing_cache=b""):
    from edgeq.trt.engine import build_engine
    with pytest.MonkeyPatch.context() as m:
        m.setitem(sys.modules, "tensorrt", fake_trt.modules(fake_trt.Cuda()))
        return build_engine(bundle, targets.get("orin-nano"), lambda line: None, max_batch,
                            max_seq, timing_cache)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A Mamba-2 W8A8 bundle (int8 conv states)."""
    cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=301, arch="mamba2", d_state=16,
                      headdim=16, ngroups=2, chunk_size=8)
    torch.manual_seed(0)
    fp = MambaLM(cfg).eval()
    rec = R.load("quamba2-w8a8")
    ids = np.random.default_rng(0).integers(0, 301, 2000)
    qfp, t, s = pipeline.run(fp, calib_data.windows(ids, 8, 64, 301), rec)
    folder = tmp_path_factory.mktemp("quantized") / "m"
    quant_folder.save(folder, qfp, t, s, rec, {}, None)
    out = tmp_path_factory.mktemp("bundle")
    _bundle_files(out, quant_folder.load(folder), cfg)
    return out


@pytest.fixture(scope="module")
def fp16_bundle(tmp_path_factory):
    """A Mamba-1 fp16 bundle (fp16 logits and conv states, fp32 SSM states)."""
    cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=301)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("fp16-bundle")
    _bundle_files(out, MambaLM(cfg).eval().half(), cfg)
    return out


@pytest.fixture
def fake(monkeypatch):
    cuda = fake_trt.Cuda()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cuda
    package = types.ModuleType("cuda")
    package.bindings = bindings
    for name, module in (("cuda", package), ("cuda.bindings", bindings),
                         ("cuda.bindings.runtime", cuda), ("tensorrt", fake_trt.modules(cuda))):
        monkeypatch.setitem(sys.modules, name, module)
    yield cuda
    gc.collect()  # free the fake device buffers while the fake is installed


def backends(bundle, **kw):
    from edgeq.trt.runtime import TrtBackend
    return TrtBackend(bundle, **kw), OrtBackend(bundle / "model.onnx")


@pytest.mark.parametrize("cuda_graph", [True, False])
def test_generation_equals_ort_and_decode_replays_graphs(bundle, fake, cuda_graph):
    trt_be, ort_be = backends(bundle, cuda_graph=cuda_graph)
    prompt, n = [5, 17, 99, 3, 250, 7, 42], 12
    assert generate(trt_be, prompt, n) == generate(ort_be, prompt, n)
    engine = trt_be.engine
    assert engine.runs == 1 + (n - 1)  # prefill, then one run per decode step
    # per parity: one eager run, then (with graphs) replays of the captured step
    launches = fake.calls.get("cudaGraphLaunch", 0)
    assert launches == (n - 1 - 2 if cuda_graph else 0)
    # one activation block, the prefill context and a decode context per parity
    assert engine.contexts == 3
    assert len(fake.graph_execs) == (2 if cuda_graph else 0) and fake.open_streams
    del trt_be
    gc.collect()
    assert not fake.graph_execs and not fake.open_streams and not fake.memory  # all given back


def test_fp16_engine_generation_equals_ort(fp16_bundle, fake):
    trt_be, ort_be = backends(fp16_bundle)
    prompt, n = [5, 17, 99, 3], 8
    assert generate(trt_be, prompt, n) == generate(ort_be, prompt, n)
    logits, states = trt_be.forward(np.array([prompt]), trt_be.new_state(1), last=True)
    assert logits.dtype == np.float32  # as every backend returns them
    assert [s.dtype for s in states[:2]] == [np.float16, np.float32]  # conv, SSM (docs/ops.md)
    del trt_be
    gc.collect()


def test_steps_allocate_nothing_and_states_ping_pong(bundle, fake):
    trt_be, ort_be = backends(bundle)
    ids = np.random.default_rng(1).integers(0, 301, (2, 9))
    state = trt_be.new_state(2)
    ref_state = ort_be.new_state(2)
    logits, state1 = trt_be.forward(ids[:, :6], state, last=True)
    ref, ref_state = ort_be.forward(ids[:, :6], ref_state, last=True)
    assert logits.shape == (2, 1, 301)  # the last position's only
    np.testing.assert_array_equal(logits, ref)
    assert state1 is not state
    mallocs = fake.calls["cudaMalloc"]
    seen = []
    for k in range(6, 9):
        logits, state1 = trt_be.forward(ids[:, k:k + 1], state1)
        ref, ref_state = ort_be.forward(ids[:, k:k + 1], ref_state)
        np.testing.assert_array_equal(logits, ref)
        seen.append(id(state1))
    assert fake.calls["cudaMalloc"] == mallocs  # decode: no allocation
    assert seen[0] == seen[2] != seen[1]  # two state sets, taking turns
    # the states on the device equal ORT's
    from fake_trt import _array
    for t, r in zip(state1, ref_state):
        np.testing.assert_array_equal(_array(t.ptr, t.shape, t.dtype), r)
    # a fresh sequence starts from zeros again (the device memory is not zeroed by cudaMalloc)
    first, _ = trt_be.forward(ids[:, :6], trt_be.new_state(2), last=True)
    np.testing.assert_array_equal(first, ort_be.forward(ids[:, :6], ort_be.new_state(2), last=True)[0])
    with pytest.raises(EdgeqError, match="new_state"):
        trt_be.forward(ids[:, :1], ort_be.new_state(2))
    del trt_be
    gc.collect()


def test_a_step_from_states_on_the_host_and_back(bundle, fake):
    """As --compare's polygraphy runner runs the engine: from ORT's states, read back."""
    trt_be, ort_be = backends(bundle)
    ids = np.random.default_rng(2).integers(0, 301, (2, 7))
    _, ref_state = ort_be.forward(ids[:, :6], ort_be.new_state(2), last=True)
    logits, state = trt_be.forward(ids[:, 6:], trt_be.state_from_host(ref_state))
    ref, ref_state = ort_be.forward(ids[:, 6:], ref_state)
    np.testing.assert_array_equal(logits, ref)
    for a, r in zip(trt_be.state_to_host(state), ref_state):
        assert a.dtype == r.dtype
        np.testing.assert_array_equal(a, r)
    with pytest.raises(EdgeqError, match=r"a state of shape \(2, 1, "):
        trt_be.state_from_host([s[:, :1] for s in ref_state])
    del trt_be
    gc.collect()


def test_engine_gives_the_last_logits_and_compares_by_steps(bundle, fake):
    """The engine's profiles hold logits_at at one position: a prompt's every logit is refused
    with the way out, and `edgeq engine --compare` compares decode steps with ORT."""
    from edgeq.runtime.evaluate import top1_agreement
    trt_be, ort_be = backends(bundle)
    ids = np.random.default_rng(3).integers(0, 301, 17)
    with pytest.raises(EdgeqError, match="last=True"):
        trt_be.forward(ids[None, :6], trt_be.new_state(1))
    assert top1_agreement(trt_be, ort_be, ids, 16, batch=1, step=True) == 1.0
    del trt_be
    gc.collect()


def test_bench_on_trt_times_with_cuda_events_and_reports_device_memory(bundle, fake,
                                                                         monkeypatch):
    from edgeq.bench import run
    from edgeq.bench.run import bench
    # the engine's memory is held already: a host with little left over does not stop it
    monkeypatch.setattr(run, "available_memory", lambda: 1)
    ticks = itertools.count()
    fake.clock = lambda: next(ticks) ** 2 / 1e3  # the k-th event recorded at k * k ms
    trt_be, _ = backends(bundle)
    r = bench(trt_be, prompt_len=5, gen_len=4, batch=2, warmup=1, iters=2)
    # 5 events a run; the timed runs' at 25, 36, 49, 64, 81 and 100, 121, 144, 169, 196 ms
    assert r["backend"] == "trt" and r["ttft_ms"] == pytest.approx((11 + 21) / 2)
    assert r["tpot_series_ms"] == pytest.approx([13, 15, 17])
    assert r["tpot_ms"] == pytest.approx(20) and r["decode_tokens_per_s"] == pytest.approx(100)
    assert r["tokens_per_s"] == pytest.approx(1e3 * 2 * 4 / ((56 + 96) / 2))
    assert not fake.events  # given back
    held = sum(b.nbytes for b in fake.memory.values())
    assert r["device_used_decode_mib"] == pytest.approx(held / 2**20) and held > 0
    del trt_be
    gc.collect()


def test_event_timer_reads_synchronized_events_of_the_backend_stream(bundle, fake, monkeypatch):
    from edgeq.trt.runtime import EventTimer
    trt_be, _ = backends(bundle)
    timer = trt_be.timer(3)
    for _ in range(3):
        timer.mark()
    assert len(timer.read()) == 2
    timer.mark()
    timer.mark()
    monkeypatch.setattr(fake, "cudaEventSynchronize", lambda event: (fake_trt.Error.cudaSuccess,))
    with pytest.raises(EdgeqError, match="cudaErrorNotReady"):
        timer.read()  # not waited for: not done
    with pytest.raises(AssertionError, match="the backend did not make"):
        EventTimer(0, 1).mark()  # the default stream
    del trt_be, timer
    gc.collect()
    assert not fake.events


def test_out_of_device_memory_is_one_error(bundle, fake, monkeypatch):
    from edgeq.trt.runtime import TrtBackend
    monkeypatch.setattr(fake, "cudaMalloc", lambda n: (fake_trt.Error.cudaErrorMemoryAllocation, 0))
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)  # an error inside __del__
    with pytest.raises(EdgeqError, match="cudaErrorMemoryAllocation"):
        TrtBackend(bundle)
    gc.collect()
    assert not ignored


def test_timing_cache_reused_or_started_anew(bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    for old, new in ((b"fake timing cache of earlier builds", b"fake timing cache of earlier builds"),
                     (b"another device's cache", b"fake timing cache")):
        _build_engine(copy, timing_cache=old)
        assert (copy / "timing.cache").read_bytes() == new


def test_a_prompt_beyond_the_engine_profile_is_refused(bundle, fake, tmp_path):
    small = tmp_path / "small"
    shutil.copytree(bundle, small)
    _build_engine(small, max_batch=2, max_seq=8)
    trt_be, _ = backends(small)
    trt_be.forward(np.zeros((2, 8), np.int64), trt_be.new_state(2), last=True)
    with pytest.raises(EdgeqError, match="--max-batch/--max-seq"):
        trt_be.forward(np.zeros((1, 9), np.int64), trt_be.new_state(1), last=True)
    with pytest.raises(EdgeqError, match="--max-batch/--max-seq"):
        trt_be.forward(np.zeros((3, 1), np.int64), trt_be.new_state(3))
    del trt_be
    gc.collect()


def test_without_tensorrt_one_clear_error(bundle, monkeypatch):
    from edgeq.trt.runtime import TrtBackend
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(EdgeqError, match="tensorrt is not installed.*--backend ort"):
        TrtBackend(bundle)


def test_tensorrt_before_10_1_is_refused(bundle, fake, monkeypatch):
    from edgeq.trt.runtime import TrtBackend
    monkeypatch.setattr(sys.modules["tensorrt"], "__version__", "8.6.2")  # JetPack 6.0's
    with pytest.raises(EdgeqError, match=r"TensorRT 8.6.2 is older than edgeq needs \(10.1\)"):
        TrtBackend(bundle)
    monkeypatch.setattr(sys.modules["tensorrt"], "__version__", "10.1.0")
    TrtBackend(bundle)


@pytest.mark.parametrize("change,fragment", [
    (lambda e: e.inputs.reverse(), None),  # any binding order: matched by name
    (lambda e: e.outputs.reverse(), None),
    (lambda e: e.inputs.remove("logits_at"), "no logits_at input.*build the bundle again"),  # older
    (lambda e: e.outputs.remove("conv_state_out.1"), "not an edgeq graph's"),
    (lambda e: setattr(e, "get_tensor_dtype", lambda n, f=e.get_tensor_dtype:
                       types.SimpleNamespace(name="BF16") if n == "logits" else f(n)),
     "logits is BF16"),
])
def test_engine_io_is_matched_by_name_or_refused(bundle, fake, monkeypatch, change, fragment):
    from edgeq.trt.runtime import TrtBackend
    init = fake_trt.Engine.__init__

    def changed(self, *args):
        init(self, *args)
        change(self)
        self.num_io_tensors = len(self.inputs) + len(self.outputs)
    monkeypatch.setattr(fake_trt.Engine, "__init__", changed)
    if fragment:
        with pytest.raises(EdgeqError, match=fragment):
            TrtBackend(bundle)
        return
    trt_be, ort_be = backends(bundle)
    prompt, n = [5, 17, 99, 3], 6
    assert generate(trt_be, prompt, n) == generate(ort_be, prompt, n)
    del trt_be
    gc.collect()


# ---- `edgeq engine` on the device: plugin library, engine, comparison ----

@pytest.fixture(scope="module")
def built(hf_model, tmp_path_factory):
    """A bundle from `edgeq build` for orin-nano: plugin sources only, no engine."""
    from edgeq.bundle.build import build
    d = tmp_path_factory.mktemp("built")
    np.save(d / "ids.npy", np.random.default_rng(0).integers(0, 1001, 4000))
    build(str(hf_model("h96")[1]), "orin-nano", d / "bundle", "quamba-w8a8", str(d / "ids.npy"),
          8, 64)
    return d / "bundle"


@pytest.fixture
def device(built, fake, tmp_path, monkeypatch):
    """A copy of the bundle on a simulated Orin: sm_87, TensorRT 10.3, a cmake that builds."""
    monkeypatch.setattr("edgeq.gpu.gpu_sm", lambda: 87)
    bundle = tmp_path / "bundle"
    shutil.copytree(built, bundle)
    return bundle


def test_engine_command_builds_plugins_engine_and_compares(device, run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin')}:{os.environ['PATH']}")
    (device / "plugins").mkdir()
    (device / "plugins/libedgeq_trt_plugins.so").write_text("stale")  # no hash: rebuilt
    code, out, err = run_cli("engine", device, "--max-batch", "2", "--compare")
    assert code == 0, err
    assert (device / "plugins/libedgeq_trt_plugins.so").read_text() == "built\n"
    m = json.loads((device / "bundle.json").read_text())
    assert m["plugins"]["mode"] == "native" and m["engine"]["built"] is True
    assert m["engine"]["compare_ort"]["top1_agreement"] == 1.0
    # polygraphy compared every output of a prefill and a step, each within the tolerance
    assert "Accuracy Summary | tensorrt vs. onnxruntime | Passed: 2/2 iterations" in out
    assert out.count("PASSED | Output: 'logits'") == 2 and "PASSED | Output: 'ssm_state_out.0'" in out
    assert run_cli("verify", device)[0] == 0  # library, engine, cache and log now listed
    log = (device / "engine_build.log").read_text()
    assert "[INFO] engine built" in log and "VERBOSE" not in log
    code, out, err = run_cli("bench", device, "--backend", "trt", "--prompt-len", "8", "--gen-len",
                             "4", "--batch", "2", "--iters", "1", "--warmup", "0", "--json")
    assert code == 0 and json.loads(out)["backend"] == "trt", err
    gc.collect()


def test_engine_command_failures_are_one_line_and_leave_the_bundle(device, run_cli, tmp_path,
                                                                   monkeypatch):
    files = sorted(str(p.relative_to(device)) for p in device.rglob("*") if p.is_file())
    with monkeypatch.context() as m:  # no polygraphy: refused before building anything
        for name in ["polygraphy", *(n for n in sys.modules if n.startswith("polygraphy."))]:
            m.setitem(sys.modules, name, None)
        m.delitem(sys.modules, "edgeq.trt.compare", raising=False)
        code, _, err = run_cli("engine", device, "--compare")
    assert code == 2 and err.count("\n") == 1 and "needs polygraphy 0.53 or later: pip install" in err
    assert sorted(str(p.relative_to(device)) for p in device.rglob("*") if p.is_file()) == files
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bad', fail=True)}:{os.environ['PATH']}")
    code, _, err = run_cli("engine", device)
    assert code == 2 and err.count("\n") == 1 and "building the plugin library with plugins-src" in err
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin')}:{os.environ['PATH']}")
    registry = sys.modules["tensorrt"].get_plugin_registry()
    used = sorted(op for op in registry.provides if op[0].startswith("EdgeqSelectiveScan"))[-1]
    registry.provides.discard(used)  # a library without it
    code, _, err = run_cli("engine", device)
    assert code == 2 and err.count("\n") == 1 and f"lacks edgeq::{used[0]} v1" in err
    registry.creators.add(used)  # the library stays loaded in this process: add it there

    def refuse(self, network, config):
        self.logger.log(fake_trt.Severity.ERROR, "out of memory\n in tactic 7")  # the cause
        self.logger.log(fake_trt.Severity.ERROR, "Assertion engine != nullptr failed.")
        return None
    monkeypatch.setattr(fake_trt.Builder, "build_serialized_network", refuse)
    code, _, err = run_cli("engine", device)
    line = err.strip()
    assert code == 2 and err.count("\n") == 1 and "[ERROR] out of memory in tactic 7 (the whole log: /" in line
    log = Path(line.split("the whole log: ")[1].rstrip(")"))
    assert "out of memory" in log.read_text()
    log.unlink()
    assert run_cli("verify", device)[0] == 0  # nothing half-made left in it
    assert sorted(str(p.relative_to(device)) for p in device.rglob("*") if p.is_file()) == \
        sorted([*files, "plugins/libedgeq_trt_plugins.so"])


def test_engine_command_failing_after_the_engine_puts_the_bundle_back(device, run_cli, tmp_path,
                                                                      monkeypatch):
    """An engine whose outputs polygraphy finds beyond the tolerance (logits 1 above ORT's,
    which top-1 agreement would not see) fails --compare in one line once the engine's files
    are written, and the bundle is left as it was: without an engine, or with its earlier one."""
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin')}:{os.environ['PATH']}")
    init = fake_trt.Engine.__init__

    def perturbed(self, *args, **kw):
        init(self, *args, **kw)
        run = self.ort.session.run
        self.ort.session = types.SimpleNamespace(run=lambda names, feed: [
            v + 1 if n == "logits" else v for n, v in zip(names, run(names, feed))])

    def snapshot():
        return {str(p.relative_to(device)): p.read_bytes() for p in device.rglob("*") if p.is_file()}
    for earlier in (False, True):
        if earlier:
            assert run_cli("engine", device)[0] == 0
        before = snapshot()
        with monkeypatch.context() as m:
            m.setattr(fake_trt.Engine, "__init__", perturbed)
            code, out, err = run_cli("engine", device, "--max-seq", "64", "--compare")
        assert code == 2 and err.count("\n") == 1, err
        assert "the engine's output logits differs from ORT's at the prefill by 1 at most " \
            "(tolerance 0.05, relative 0.05; polygraphy's report above)" in err
        assert "FAILED | Output: 'logits'" in out and "Passed: 0/2 iterations" in out
        after = snapshot()
        after.pop("plugins/libedgeq_trt_plugins.so")  # built before the engine, may stay
        before.pop("plugins/libedgeq_trt_plugins.so", None)
        assert after == before and ("model.engine" in after) == earlier
        assert run_cli("verify", device)[0] == 0


@pytest.mark.parametrize("sm,version,fragment", [
    (90, "10.3.0.30", "the bundle targets sm_87, this GPU is sm_90"),
    (87, "10.4.0.26", "the bundle targets TensorRT 10.3, this device has 10.4"),
])
def test_engine_and_bench_refuse_another_gpu_or_tensorrt(device, run_cli, tmp_path, monkeypatch,
                                                         sm, version, fragment):
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin')}:{os.environ['PATH']}")
    assert run_cli("engine", device)[0] == 0
    monkeypatch.setattr("edgeq.gpu.gpu_sm", lambda: sm)
    monkeypatch.setattr(sys.modules["tensorrt"], "__version__", version)
    for args in (["engine", device], ["bench", device, "--backend", "trt", "--gen-len", "2"]):
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_bench_refuses_an_engine_of_another_tensorrt_until_rebuilt(device, run_cli, tmp_path,
                                                                     monkeypatch):
    """The target's TensorRT (10.3) but not the engine's build: TensorRT would not load it."""
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin')}:{os.environ['PATH']}")
    assert run_cli("engine", device)[0] == 0
    monkeypatch.setattr(sys.modules["tensorrt"], "__version__", "10.3.0.26")
    bench = ["bench", device, "--backend", "trt", "--prompt-len", "4", "--gen-len", "2", "--json"]
    code, _, err = run_cli(*bench)
    assert code == 2 and err.count("\n") == 1, err
    assert "the engine was built by TensorRT 10.3.0.30, this device has 10.3.0.26" in err
    assert run_cli("engine", device)[0] == 0  # the way out the error names
    assert json.loads((device / "bundle.json").read_text())["engine"]["tensorrt"] == "10.3.0.26"
    code, out, err = run_cli(*bench)
    assert code == 0 and json.loads(out)["backend"] == "trt", err
    gc.collect()


def test_a_workstation_bundle_checks_the_gpu_and_the_engine_tensorrt(fake, monkeypatch):
    """A workstation target names no TensorRT: any builds its engine, which then runs only on
    the TensorRT that built it."""
    from edgeq.trt.engine import check_compatible, check_engine
    monkeypatch.setattr("edgeq.gpu.gpu_sm", lambda: 90)
    m = {"target": targets.get("h100"), "engine": {"built": True, "tensorrt": "10.3.0.30"}}
    check_engine(m)
    monkeypatch.setattr(sys.modules["tensorrt"], "__version__", "10.8.0.43")
    check_compatible(m)
    with pytest.raises(EdgeqError, match=r"built by TensorRT 10.3.0.30, this device has 10.8.0.43"):
        check_engine(m)
    check_engine({**m, "engine": {"built": False}})  # none yet: the backend says to build one
    monkeypatch.setattr("edgeq.gpu.gpu_sm", lambda: 89)
    with pytest.raises(EdgeqError, match="the bundle targets sm_90, this GPU is sm_89"):
        check_compatible(m)


# ---- memory: the engine written and read without copies; the plugin library loaded once ----

def test_engine_written_after_the_parser_goes_and_read_from_a_map(bundle, fake, tmp_path,
                                                                 monkeypatch):
    """build_engine releases the parser and network (the graph's weights) before writing the
    engine, writes the IHostMemory through its buffer (fake_trt refuses bytes() of it) and the
    runtime deserializes a memory map of the file."""
    import mmap

    from edgeq.trt import engine
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    write, written = engine.write_inside, []

    def checked(root, name, data):
        assert not list(fake_trt.LIVE), "the parser or network is alive while writing"
        written.append(name)
        return write(root, name, data)
    monkeypatch.setattr(engine, "write_inside", checked)
    _build_engine(copy)
    assert written == ["model.engine", "timing.cache", "engine_build.log"]
    trt_be, ort_be = backends(copy)
    assert sys.modules["tensorrt"].deserialized_from == [mmap.mmap]
    assert generate(trt_be, [5, 17, 99], 4) == generate(ort_be, [5, 17, 99], 4)
    del trt_be
    gc.collect()


def test_plugin_library_loaded_once_and_its_loader_error(bundle, fake, tmp_path, monkeypatch):
    """IPluginRegistry::loadLibrary once per process (a second call returns nullptr when the
    plugins are registered, NvInferRuntimeCommon.h), its result checked, and a library that
    does not load reported with the dynamic loader's own error."""
    from edgeq.trt import load_plugins
    from edgeq.trt.runtime import TrtBackend
    trt = sys.modules["tensorrt"]
    registry = trt.get_plugin_registry()
    first, second = TrtBackend(bundle), TrtBackend(bundle)
    assert registry.loads == 1
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    with pytest.raises(EdgeqError, match=r"registered the plugins of .*/plugins/"
                                         r"libedgeq_trt_plugins.so already.*in a new one"):
        TrtBackend(other)
    del first, second
    gc.collect()
    # in a new process (a new module): a library the loader refuses, then none at all
    fresh = fake_trt.modules(fake)
    (other / "plugins/libedgeq_trt_plugins.so").write_text("a text file, not an ELF\n" * 8)
    with pytest.raises(EdgeqError, match=r"TensorRT could not load the plugin library .*: "
                                         r".*invalid ELF header; rebuild it"):
        load_plugins(fresh, other)
    assert fresh.get_plugin_registry().loads == 1
    (other / "plugins/libedgeq_trt_plugins.so").unlink()
    with pytest.raises(EdgeqError, match="no built plugin library"):
        load_plugins(fresh, other)


# ---- what TensorRT did with the int8 graph: layer information and precision summary ----

def _layers_json(engine):
    return json.loads(engine.create_engine_inspector().get_engine_information(
        fake_trt.LayerInformationFormat.JSON))


def test_engine_layers_and_precision_summary(device, run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin')}:{os.environ['PATH']}")
    code, out, err = run_cli("engine", device, "--expect-int8")
    assert code == 0, err
    m = json.loads((device / "bundle.json").read_text())
    assert "engine_layers.json" in m["files"] and m["engine"]["layers"] == "engine_layers.json"
    info = json.loads((device / "engine_layers.json").read_text())
    assert isinstance(info["Layers"][0], dict) and info["Bindings"]  # DETAILED verbosity
    n = m["model"]["config"]["n_layer"]
    # Mamba-1 quamba-w8a8: in_proj, x_proj, dt_proj and out_proj int8 per layer, the head fp16
    assert m["engine"]["precision"]["linears"] == {"W8A8 INT8": 4 * n, "float FP16": 1}
    assert f"W8A8 linears on INT8 ({4 * n}): model.layers.0.in_proj.w" in out
    assert f"EdgeqAddRMSNormInt8 x{n}: FP32 FP32 FP32 -> INT8 FP32" in out
    assert f"EdgeqSelectiveScanInt8 x{n}: INT8 INT8 FP32 INT8 INT8 FP32 FP32 FP32 INT8 -> " \
           "FP32 FP32" in out
    assert run_cli("verify", device)[0] == 0
    # TensorRT dequantizing the int8 linears to a float GEMM: --expect-int8 fails in one line
    # and the bundle keeps its engine
    before = {p.name: p.read_bytes() for p in device.iterdir() if p.is_file()}
    monkeypatch.setattr(fake_trt.Builder, "int8_gemm", False)
    code, out, err = run_cli("engine", device, "--expect-int8")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{4 * n} W8A8 linears do not run on INT8 in the engine: model.layers.0.in_proj.w " \
           "(FP32)" in err
    assert f"W8A8 linears on FP32 ({4 * n})" in out
    assert {p.name: p.read_bytes() for p in device.iterdir() if p.is_file()} == before
    code, out, err = run_cli("engine", device)  # without the flag: built, and summarized
    assert code == 0 and json.loads((device / "bundle.json").read_text())["engine"][
        "precision"]["linears"]["W8A8 FP32"] == 4 * n
    gc.collect()


def test_engine_command_refuses_an_engine_the_target_cannot_load(device, run_cli, tmp_path,
                                                                 monkeypatch):
    """Before building the plugin library or the engine: the projected load peak against the
    target's memory (edgeq/trt/memory.py), in one line, the bundle untouched."""
    from edgeq.trt import memory
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin')}:{os.environ['PATH']}")
    files = sorted(str(p.relative_to(device)) for p in device.rglob("*") if p.is_file())
    monkeypatch.setattr(memory, "FIXED_LOAD", 6 * 2**30)  # more than the Nano's 5.2 GiB
    code, out, err = run_cli("engine", device)
    assert code == 2 and err.count("\n") == 1, err
    assert "edgeq: error: engine on orin-nano: build needs" in err and "load 6." in err
    assert "does not fit" in err
    assert "engine on orin-nano: build needs" in out  # printed before the refusal
    assert not (tmp_path / "bin" / "log").exists()  # cmake never ran
    assert sorted(str(p.relative_to(device)) for p in device.rglob("*") if p.is_file()) == files
