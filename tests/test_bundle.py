"""edgeq build -> bundle -> verify -> bench on ORT, its errors, and remote runs over a real sshd
on 127.0.0.1."""
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fake_trt
from fake_nvcc import nvcc
from edgeq.errors import EdgeqError


@pytest.fixture(scope="module")
def bundle(hf_model, calib_npy, tmp_path_factory):
    from edgeq.bundle.build import build
    out = tmp_path_factory.mktemp("b") / "bundle"
    build(str(hf_model("h96")[1]), "orin-nano", out, "quamba-w8a8", str(calib_npy), 8, 64)
    return out


def test_bundle_contents_and_manifest(bundle):
    m = json.loads((bundle / "bundle.json").read_text())
    assert m["target"]["name"] == "orin-nano" and m["recipe"]["name"] == "quamba-w8a8"
    assert m["validation"]["top1_agreement"] >= 0.99
    assert m["plugins"]["mode"] == "sources" and (bundle / "plugins-src/build_plugins.sh").is_file()
    assert (bundle / "plugins-src/src/CMakeLists.txt").is_file()
    presets = json.loads((bundle / "plugins-src/src/CMakePresets.json").read_text())
    assert presets["configurePresets"][0]["cacheVariables"]["CMAKE_CUDA_ARCHITECTURES"] == "87"
    assert m["engine"]["built"] is False and "device" in m["engine"]["reason"]
    assert m["projected"]["decode_ms_per_token"] > 0 and set(m["timings"]) >= {"load", "calibrate", "export", "validate"}
    stages = ["load", "calibrate", "quantize", "export", "validate", "plugins", "engine"]
    assert set(m["peak_rss_mib"]) == set(m["timings"]) == set(stages)
    peaks = [m["peak_rss_mib"][s] for s in stages]  # the running peak, stage by stage
    assert 0 < peaks[0] and peaks == sorted(peaks)
    assert {"torch", "onnx", "onnxruntime"} <= set(m["versions"])
    assert "model.onnx" in m["files"] and "quant.json" in m["files"]
    assert not (bundle / "quantized").exists() and not (bundle / ".quantized").exists()  # one copy of the weights
    # the fp16 parts are fp16 in the graph: the tied embedding / lm_head table, once
    import onnx
    vocab = m["model"]["config"]["vocab_size"]
    tables = [i.data_type for i in onnx.load(str(bundle / "model.onnx")).graph.initializer
              if vocab in i.dims]
    assert tables == [onnx.TensorProto.FLOAT16]


@pytest.mark.parametrize("recipe,extra", [("quamba2-w4a8", []),
                                           ("quamba2-w4ax", ["--a16-fraction", "0.5"])])
def test_quamba2_4bit_bundle_of_a_mamba2_model(calib_npy, tmp_path, run_cli, recipe, extra):
    import onnx
    import torch

    from edgeq.models import MambaConfig, MambaLM, save_model
    torch.manual_seed(0)
    save_model(MambaLM(MambaConfig(d_model=64, n_layer=2, vocab_size=1001, arch="mamba2",
                                   d_state=16, headdim=16, ngroups=2, chunk_size=8)), tmp_path / "m2")
    code, out, err = run_cli("build", str(tmp_path / "m2"), "--target", "orin-nano", "--recipe",
                             recipe, "--h2t", *extra, "--calib", str(calib_npy), "--samples", "8",
                             "--seq-len", "64", "-o", str(tmp_path / "b"))
    assert code == 0, err
    m = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert m["recipe"]["name"] == recipe and m["recipe"]["h2t"]
    assert m["validation"]["top1_agreement"] >= 0.99
    assert m["projected"]["recipe"] == recipe + " h2t" + (" a16-fraction 0.5" if extra else "")
    types = {n.op_type for n in onnx.load(str(tmp_path / "b" / "model.onnx")).graph.node}
    assert {"EdgeqLinearW4A8", "EdgeqSSDScanInt8", "EdgeqCausalConv1dInt8"} <= types
    scales = json.loads((tmp_path / "b" / "quant.json").read_text())["scales"]
    assert sorted(map(bool, scales)) == ([False, True] if extra else [True, True])  # W4A16: {}
    code, out, _ = run_cli("verify", str(tmp_path / "b"))
    assert code == 0


def test_fp16_bundle_is_the_unquantized_baseline(hf_model, calib_npy, tmp_path, run_cli):
    import onnx
    b = tmp_path / "b"
    code, _, err = run_cli("build", str(hf_model("h96")[1]), "--target", "orin-nano", "--recipe",
                           "fp16", "--calib", str(calib_npy), "-o", str(b))
    assert code == 0, err
    m = json.loads((b / "bundle.json").read_text())
    assert m["recipe"]["name"] == m["projected"]["recipe"] == "fp16"
    assert "quant.json" not in m["files"] and "calibrate" not in m["timings"]
    # ORT (the C++ kernels on fp32 casts of the fp16 tensors) against torch in fp16
    assert m["validation"]["top1_agreement"] >= 0.99 and m["validation"]["max_abs_logit_diff"] < 0.02
    g = onnx.load(str(b / "model.onnx")).graph
    F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    elem = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output)}
    assert (elem["logits"], elem["conv_state.0"], elem["ssm_state.0"]) == (F16, F16, F32)
    sizes = {t: sum(np.prod(i.dims) for i in g.initializer if i.data_type == t) for t in (F16, F32)}
    assert sizes[F16] > 20 * sizes[F32]  # fp32: only A, D and the like (docs/ops.md)
    code, out, err = run_cli("bench", str(b), "--backend", "ort", "--prompt-len", "8", "--gen-len",
                             "4", "--iters", "1", "--warmup", "0", "--json")
    assert code == 0 and json.loads(out)["tpot_ms"] > 0, err
    code, _, err = run_cli("bench", str(b), "--backend", "torch")
    assert code == 2 and "not a torch model" in err


def test_bundle_size_tool_counts_every_file_once(bundle):
    sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
    import bundle_size
    parts = bundle_size.parts(bundle)
    assert parts["graph"] == (bundle / "model.onnx").stat().st_size
    assert {"bundle.json", "plugins-src", "quant.json"} <= set(parts)
    assert sum(parts.values()) == sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())


def test_same_inputs_give_identical_onnx_and_scales(bundle, hf_model, calib_npy, tmp_path):
    from edgeq.bundle.build import build
    build(str(hf_model("h96")[1]), "orin-nano", tmp_path / "again", "quamba-w8a8", str(calib_npy), 8, 64)
    for f in ("model.onnx", "quant.json"):
        assert (tmp_path / "again" / f).read_bytes() == (bundle / f).read_bytes(), f


def test_verify_catches_changes(bundle, run_cli, tmp_path):
    code, out, _ = run_cli("verify", bundle)
    assert code == 0 and "match" in out
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    code, _, err = run_cli("verify", copy)
    assert code == 2 and "model.onnx does not match" in err
    (copy / "model.onnx").unlink()
    code, _, err = run_cli("verify", copy)
    assert code == 2 and "missing" in err
    # bundle.json itself: edited, or not a manifest
    m = json.loads((bundle / "bundle.json").read_text())
    m["target"]["name"] = "h100"
    for text, fragment in ((json.dumps(m), "edited or damaged"), ("[1]", "not an edgeq-bundle")):
        (copy / "bundle.json").write_text(text)
        code, _, err = run_cli("verify", copy)
        assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_build_script_adds_only_the_library(bundle, tmp_path, monkeypatch, run_cli):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    bin_ = fake_trt.cmake(tmp_path / "bin")  # with JetPack 6's nvcc (test_nvcc.py: the check)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    r = subprocess.run(["sh", str(copy / "plugins-src/build_plugins.sh")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    configure, build = (bin_ / "log").read_text().splitlines()
    assert configure.startswith("--preset orin-nano -S src -B /") and build.startswith("--build /")
    build_dir = Path(configure.split(" -B ")[1])
    assert not build_dir.exists() and copy not in build_dir.parents  # a temp folder, removed
    assert (copy / "plugins/libedgeq_trt_plugins.so").read_text() == "built\n"
    # the library the script adds is the one file a sources bundle may gain
    code, out, err = run_cli("verify", copy)
    assert code == 0, err
    (copy / "plugins/notes.txt").write_text("")
    code, _, err = run_cli("verify", copy)
    assert code == 2 and "plugins/notes.txt is not part of the bundle" in err


def test_bench_ort_json_and_report(bundle, run_cli, tmp_path):
    code, out, err = run_cli("bench", bundle, "--backend", "ort", "--prompt-len", "16", "--gen-len", "6",
                             "--iters", "2", "--json", "--report-dir", tmp_path / "r")
    assert code == 0, err
    r = json.loads(out)
    assert r["ttft_ms"] > 0 and r["tpot_ms"] > 0 and r["tokens_per_s"] > 0
    assert r["tpot_p50_ms"] <= r["tpot_p90_ms"] and len(r["tpot_series_ms"]) == 5
    assert {p.name for p in (tmp_path / "r").iterdir()} >= {"bench.json", "bench.md"}
    pytest.importorskip("matplotlib", reason="matplotlib not installed: no PNG plot")
    assert (tmp_path / "r" / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_refuses_a_prompt_beyond_memory(bundle, run_cli):
    code, _, err = run_cli("bench", bundle, "--prompt-len", str(10**12))
    assert code == 2 and err.count("\n") == 1 and "lower --batch or --prompt-len" in err, err
    # what it counts: tests/test_bundle_closed.py


def test_bench_torch_backend_on_a_model(hf_model, run_cli):
    code, out, err = run_cli("bench", hf_model("h96")[1], "--backend", "torch", "--prompt-len", "8",
                             "--gen-len", "3", "--iters", "1", "--warmup", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["backend"] == "torch"


@pytest.mark.parametrize("args,fragment", [
    (["build", "{m}", "--target", "orin-pico", "-o", "{tmp}/b"], "unknown target"),
    (["build", "{m}", "--target", "orin-nano", "--calib", "{c}", "--sysroot", "{tmp}", "-o", "{tmp}/b"], "no CUDA"),
    (["build", "{m}", "--target", "h100", "--calib", "{c}", "--sysroot", "{tmp}", "-o", "{tmp}/b"],
     "h100 takes no --sysroot (build on a host with its GPU); --sysroot cross-compiles for agx-orin-64gb"),
    (["build", "{m}", "--target", "orin-nano", "-o", "{tmp}/b"], "--calib"),
    (["build", "{m}", "--target", "orin-nano", "--recipe", "w1a1", "--calib", "{c}", "-o", "{tmp}/b"], "unknown recipe"),
    (["build", "{m}", "--target", "orin-nano", "--recipe", "fp16", "--a16-fraction", "0.5",
      "--calib", "{c}", "-o", "{tmp}/b"], "quantizes nothing"),
    (["bench", "{m}", "--backend", "trt"], "needs a bundle"),
    (["engine", "{tmp}"], "no bundle.json"),
])
def test_build_errors(run_cli, hf_model, calib_npy, tmp_path, args, fragment):
    code, _, err = run_cli(*[a.format(m=hf_model("h96")[1], c=calib_npy, tmp=tmp_path) for a in args])
    # the stages before the failure print their progress; the error is the one last line
    *progress, last = err.splitlines()
    assert code == 2 and last.startswith("edgeq: error:") and fragment in last, err
    assert all(line.startswith(("[", "    ")) for line in progress), err
    assert not list(tmp_path.iterdir())  # a failed build leaves nothing


def test_terminated_build_leaves_nothing(hf_model, calib_npy, tmp_path):
    # SIGTERM (a closed terminal's SIGHUP alike) unwinds the build: its temp folder goes too
    import signal
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-m", "edgeq.cli", "build", str(hf_model("h96")[1]),
                          "--target", "orin-nano", "--calib", str(calib_npy), "--samples", "64",
                          "--seq-len", "64", "-o", str(out / "b")],
                         stderr=subprocess.PIPE, text=True, env=env)
    for line in p.stderr:  # stop it once it has its temp folder, 4 stages before the end
        if "calibrate ..." in line:
            break
    assert list(out.iterdir()), "the build has no temp folder yet"
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM and not list(out.iterdir())


def test_sysroot_without_tensorrt(run_cli, hf_model, calib_npy, tmp_path):
    root = tmp_path / "jetpack"
    cuda = root / "usr/local/cuda/targets/aarch64-linux/include"
    cuda.mkdir(parents=True)
    (cuda / "cuda_runtime.h").write_text("")
    code, _, err = run_cli("build", hf_model("h96")[1], "--target", "orin-nano", "--calib", calib_npy,
                           "--sysroot", root, "-o", tmp_path / "b")
    assert code == 2 and "no TensorRT" in err and not (tmp_path / "b").exists()


def _jetpack_root(root: Path) -> Path:
    """A root file system with the CUDA and TensorRT headers check_sysroot looks for."""
    from edgeq.bundle.plugins import SYSROOT_CUDA, SYSROOT_TRT
    for rel in (SYSROOT_CUDA, SYSROOT_TRT):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    return root


def _fp16_build(run_cli, hf_model, calib_npy, out, *extra):
    return run_cli("build", hf_model("h96")[1], "--target", "orin-nano", "--recipe", "fp16",
                   "--calib", calib_npy, *extra, "-o", out)


@pytest.mark.parametrize("mode", ["cross-compiled", "native"])
def test_plugin_library_built_into_the_bundle(mode, run_cli, hf_model, calib_npy, tmp_path,
                                              monkeypatch):
    bin_ = fake_trt.cmake(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setenv("CUDACXX", str(nvcc(tmp_path / "cuda-12.6/bin", "12.6")))
    monkeypatch.chdir(tmp_path)  # a relative --sysroot reaches CMake absolute
    if mode == "cross-compiled":
        from edgeq.bundle.plugins import source_root  # the repository, or the installed copy
        toolchain = source_root() / "targets/toolchains/aarch64-jetpack6.cmake"
        assert toolchain.is_file()
        root = _jetpack_root(tmp_path / "jetpack")
        extra, record, want = ["--sysroot", "jetpack"], {"sysroot": str(root)}, [
            f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
            f"-DEDGEQ_SYSROOT={root}", f"-DTENSORRT_INCLUDE_DIR={root}/usr/include/aarch64-linux-gnu"]
    else:  # on the Orin itself, with a tarball's TensorRT headers
        include = tmp_path / "TensorRT-10.3/include"
        include.mkdir(parents=True)
        (include / "NvInfer.h").write_text("")
        monkeypatch.setenv("EDGEQ_TRT_INCLUDE", str(include))
        monkeypatch.setattr("platform.machine", lambda: "aarch64")
        monkeypatch.setattr("edgeq.bundle.plugins.gpu_sm", lambda: 87)
        extra, record, want = [], {}, [f"-DTENSORRT_INCLUDE_DIR={include}"]
    code, _, err = _fp16_build(run_cli, hf_model, calib_npy, tmp_path / "b", *extra)
    assert code == 0, err
    configure, build = (bin_ / "log").read_text().splitlines()
    assert set(want + ["-DEDGEQ_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=87",
                       f"-DCMAKE_CUDA_COMPILER={tmp_path}/cuda-12.6/bin/nvcc"]) <= set(configure.split())
    assert ("TOOLCHAIN" in configure) == (mode == "cross-compiled")
    assert build.startswith("--build ") and build.endswith("--target edgeq_trt_plugins")
    m = json.loads((tmp_path / "b/bundle.json").read_text())
    assert m["plugins"] == {"mode": mode, "library": "plugins/libedgeq_trt_plugins.so", "cuda": "12.6",
                            **record}
    assert (tmp_path / "b/plugins/libedgeq_trt_plugins.so").read_text() == "built\n"
    assert "plugins/libedgeq_trt_plugins.so" in m["files"] and not (tmp_path / "b/plugins-src").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the build folder went
    assert run_cli("verify", tmp_path / "b")[0] == 0


def test_failed_plugin_build_leaves_nothing(run_cli, hf_model, calib_npy, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_trt.cmake(tmp_path / 'bin', fail=True)}:{os.environ['PATH']}")
    monkeypatch.setenv("CUDACXX", str(nvcc(tmp_path / "bin", "12.6")))
    code, _, err = _fp16_build(run_cli, hf_model, calib_npy, tmp_path / "b", "--sysroot",
                               _jetpack_root(tmp_path / "jetpack"))
    *progress, last = err.splitlines()
    assert code == 2 and last.startswith("edgeq: error: building the plugin library failed"), err
    assert all(line.startswith(("[", "    ")) for line in progress), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "jetpack"]  # nor a temp folder


def test_engine_needs_tensorrt_or_refuses_other_targets(bundle, run_cli):
    code, _, err = run_cli("engine", bundle)
    assert code == 2
    try:
        import tensorrt  # noqa: F401
        assert "sm_87" in err or "TensorRT" in err  # a non-Orin host: another target
    except ImportError:
        assert "tensorrt is not installed" in err


# ---- remote runs over SSH, against a real sshd on 127.0.0.1 ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    exe = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if exe is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("no OpenSSH server/client here (apt-get install openssh-server openssh-client)")
    d = tmp_path / "ssh"
    d.mkdir(mode=0o700)
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    port = _free_port()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host.pub').read_text()}")
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
        f"SetEnv PATH={Path(sys.executable).parent}:/usr/bin:/bin\n")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([exe, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "log", "w"))
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip(f"sshd did not start: {(d / 'log').read_text()[-300:]}")
    yield {"port": port, "key": d / "user", "known_hosts": d / "known_hosts", "dir": d}
    proc.terminate()
    proc.wait(timeout=5)


def _remote(sshd, **kw):
    from edgeq.bench.remote import Remote
    import getpass
    return Remote(f"{getpass.getuser()}@127.0.0.1", sshd["port"], sshd["key"],
                  [f"UserKnownHostsFile={sshd['known_hosts']}"], **kw)


def test_remote_bench_over_ssh(bundle, sshd, tmp_path):
    from edgeq.bench.remote import bench_remote
    remote = _remote(sshd, log=lambda m: None)
    r = bench_remote(bundle, remote, ["--backend", "ort", "--prompt-len", "8", "--gen-len", "3",
                                      "--iters", "1", "--json"], tmp_path / "report",
                     edgeq=str(Path(sys.executable).parent / "edgeq"),
                     remote_dir=str(tmp_path / "remote-bundle"))
    assert r["backend"] == "ort" and r["ttft_ms"] > 0
    assert (tmp_path / "remote-bundle" / "bundle.json").is_file()  # it was copied over
    # again: the earlier copy verifies (the report is beside it, not in it) and is reused
    logged = []
    remote.log = logged.append
    r = bench_remote(bundle, remote, ["--backend", "ort", "--prompt-len", "8", "--gen-len", "3",
                                      "--iters", "1", "--json"], tmp_path / "report2",
                     edgeq=str(Path(sys.executable).parent / "edgeq"),
                     remote_dir=str(tmp_path / "remote-bundle"))
    assert r["ttft_ms"] > 0 and f"reusing {remote.host}:{tmp_path / 'remote-bundle'}" in logged
    assert not any(line.startswith("$ scp") and "report" not in line for line in logged)
    # an unknown host key is refused, not accepted
    (sshd["known_hosts"]).write_text(f"[127.0.0.1]:{sshd['port']} ssh-ed25519 "
                                     "AAAAC3NzaC1lZDI1NTE5AAAAIEGdummykeydummykeydummykeydummykeydummykey0\n")
    with pytest.raises(EdgeqError, match="127.0.0.1"):
        bench_remote(bundle, remote, ["--backend", "ort", "--json"], tmp_path / "r2",
                     remote_dir=str(tmp_path / "remote-2"))


def test_remote_arguments_arrive_intact_and_trt_builds_the_engine_there(bundle, sshd, tmp_path):
    """Every remote word is quoted (a command of two words, paths, and an argument for the stub
    with spaces and shell metacharacters), and a bundle without an engine gets one before a trt
    bench."""
    from edgeq.bench.remote import bench_remote
    odd = tmp_path / "a b $HOME;`x`"
    odd.mkdir()
    shutil.copytree(bundle, odd / "my bundle")
    log, stub = odd / "argv.log", odd / "edgeq stub.py"
    # the device's edgeq: records its words; verifies for real, fakes the engine and the bench
    stub.write_text(f"""import json, os, sys
with open({str(log)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "verify":
    os.execv({str(Path(sys.executable).parent / "edgeq")!r}, ["edgeq", *sys.argv[1:]])
if sys.argv[1] == "bench":
    report = sys.argv[sys.argv.index("--report-dir") + 1]
    os.makedirs(report)
    with open(os.path.join(report, "bench.json"), "w") as f:
        json.dump({{"backend": "trt"}}, f)
""")
    weird = f"it's \"$(touch {tmp_path}/pwned)\"; $USER `id` \\ *"
    args = ["--backend", "trt", "--prompt-len", "8", "--note", weird]
    rdir = str(tmp_path / "remote")
    r = bench_remote(odd / "my bundle", _remote(sshd, log=lambda m: None), args, odd / "re port",
                     f"{shlex.quote(sys.executable)} {shlex.quote(str(stub))}", rdir)
    assert r == {"backend": "trt"} and (odd / "re port/bench.json").is_file()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [["verify", rdir], ["verify", rdir], ["engine", rdir],  # no copy yet, then one
                     ["bench", rdir, *args, "--report-dir", rdir + ".report"]]
    assert not (tmp_path / "pwned").exists()


def test_bench_host_command_end_to_end_logs_no_secret(bundle, sshd, tmp_path, run_cli,
                                                      monkeypatch):
    """`edgeq bench --host` with a device edgeq of several words; what it prints holds no
    key material."""
    from edgeq.bench import remote
    import functools
    import getpass
    # the test's known_hosts and a folder under tmp_path on the "device" (the CLI has no options
    # for them)
    monkeypatch.setattr(remote, "Remote", functools.partial(
        remote.Remote, ssh_options=[f"UserKnownHostsFile={sshd['known_hosts']}"]))
    monkeypatch.setattr(remote, "bench_remote", functools.partial(
        remote.bench_remote, remote_dir=str(tmp_path / "remote")))
    local = tmp_path / "my bundle $x;y"
    shutil.copytree(bundle, local)
    code, out, err = run_cli(
        "bench", local, "--host", f"{getpass.getuser()}@127.0.0.1", "--port", sshd["port"],
        "--identity", sshd["key"], "--remote-edgeq", f"{shlex.quote(sys.executable)} -m edgeq.cli",
        "--prompt-len", "8", "--gen-len", "3", "--iters", "1", "--warmup", "0",
        "--report-dir", tmp_path / "re port;$z", "--json")
    assert code == 0, err
    assert json.loads(out)["backend"] == "ort" and (tmp_path / "re port;$z/bench.md").is_file()
    assert f"$ ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -i {sshd['key']}" in err
    key = [line for line in sshd["key"].read_text().splitlines() if "PRIVATE KEY" not in line]
    printed = out + err
    assert key and not any(line in printed for line in key) and "PRIVATE KEY" not in printed
    assert not re.search(r"passw|passphrase|secret|token=", printed, re.I), printed
