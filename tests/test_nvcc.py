"""Which nvcc builds the plugin library (issue 22, item 4): found where JetPack puts it when it
is not on PATH (CUDACXX, CUDA_PATH, /usr/local/cuda/bin), of the target's CUDA major (targets/
*.toml `cuda`), else refused in one line that names what to install: by `edgeq build` before
any slow stage, and by a sources bundle's build_plugins.sh on the device. The nvcc executables
are stand-ins printing a release (fake_nvcc.py)."""
from __future__ import annotations

import os
import subprocess

import pytest

import fake_trt
from edgeq.bundle import plugins
from edgeq.bundle_files import SCRIPT
from edgeq.errors import EdgeqError
from edgeq.targets import all_targets, get
from fake_nvcc import nvcc

NANO = get("orin-nano")


@pytest.fixture
def bare(monkeypatch, tmp_path):
    """No nvcc on PATH, no CUDACXX or CUDA_PATH, and JetPack's place empty."""
    monkeypatch.delenv("CUDACXX", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(plugins, "JETPACK_NVCC", str(tmp_path / "none/nvcc"))
    monkeypatch.setattr(plugins.glob, "glob", lambda pattern: [])
    return tmp_path


def test_every_target_names_its_cuda():
    for t in all_targets().values():
        assert int(t["cuda"].split(".")[0]) >= 12, t["name"]  # TensorRT 10, sm_87/89/90
    assert NANO["cuda"] == "12.6"  # JetPack 6.1/6.2


def test_found_where_jetpack_puts_it_when_not_on_path(bare, monkeypatch):
    jetpack = nvcc(bare / "cuda/bin", "12.6")
    monkeypatch.setattr(plugins, "JETPACK_NVCC", str(jetpack))
    assert plugins.find_nvcc(NANO) == (str(jetpack), "12.6")


def test_on_path_but_of_another_major_a_versioned_toolkit_is_taken(bare, monkeypatch):
    monkeypatch.setenv("PATH", f"{nvcc(bare / 'path', '13.0').parent}:/usr/bin")
    monkeypatch.setattr(plugins, "JETPACK_NVCC", str(nvcc(bare / "cuda/bin", "13.0")))
    v12 = nvcc(bare / "cuda-12.6/bin", "12.6")
    monkeypatch.setattr(plugins.glob, "glob", lambda pattern: [str(v12)] if "cuda-12" in pattern else [])
    assert plugins.find_nvcc(NANO) == (str(v12), "12.6")


@pytest.mark.parametrize("var", ["CUDACXX", "CUDA_PATH"])
def test_a_named_toolkit_is_the_one_used(bare, monkeypatch, var):
    path = nvcc(bare / "cuda-12.2/bin", "12.2")
    monkeypatch.setenv(var, str(path) if var == "CUDACXX" else str(path.parent.parent))
    monkeypatch.setenv("PATH", f"{nvcc(bare / 'path', '12.6').parent}:/usr/bin")
    assert plugins.find_nvcc(NANO) == (str(path), "12.2")


def test_a_named_toolkit_of_another_major_is_refused(bare, monkeypatch):
    monkeypatch.setenv("CUDACXX", str(nvcc(bare / "cuda-13/bin", "13.0")))
    monkeypatch.setenv("PATH", f"{nvcc(bare / 'path', '12.6').parent}:/usr/bin")  # not taken
    with pytest.raises(EdgeqError) as e:
        plugins.find_nvcc(NANO, cross=True)
    msg = str(e.value)
    assert "(CUDA 13.0)" in msg and "runs CUDA 12.6 (12.x) code" in msg, msg
    assert "cuda-toolkit-12-6 and cuda-cross-aarch64-12-6" in msg and "\n" not in msg, msg


def test_none_found(bare):
    with pytest.raises(EdgeqError, match="no nvcc found .*install JetPack's CUDA"):
        plugins.find_nvcc(NANO)
    with pytest.raises(EdgeqError, match=r"install a CUDA 12\.x toolkit"):
        plugins.find_nvcc(get("h100"))


@pytest.mark.parametrize("release,driver,ok", [("13.0", "13.0", True), ("12.4", "13.0", True),
                                               ("13.0", "12.8", False), ("11.8", None, False),
                                               ("13.0", None, True)])
def test_a_workstation_takes_cuda_12_up_to_its_driver(bare, monkeypatch, release, driver, ok):
    # the lent H100: nvcc 13.0 and a CUDA 13 driver (580); a JetPack target would refuse 13
    monkeypatch.setenv("CUDACXX", str(nvcc(bare / "cuda/bin", release)))
    monkeypatch.setattr(plugins, "driver_cuda", lambda: driver)
    if ok:
        assert plugins.find_nvcc(get("h100")) == (str(bare / "cuda/bin/nvcc"), release)
    else:
        with pytest.raises(EdgeqError, match=rf"\(CUDA {release}\): h100's driver runs code of CUDA "
                                             rf"12\.x up to this host's driver's CUDA {driver or '[?]'}"):
            plugins.find_nvcc(get("h100"))
    if not release.startswith("12."):  # the same nvcc for a Jetson: JetPack 6's major only
        with pytest.raises(EdgeqError, match="runs CUDA 12.6 \\(12.x\\) code, not newer"):
            plugins.find_nvcc(NANO)


def test_an_nvcc_without_a_release_is_refused(bare, monkeypatch):
    broken = bare / "nvcc"
    broken.write_text("#!/bin/sh\necho hello\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CUDACXX", str(broken))
    with pytest.raises(EdgeqError, match="names no release"):
        plugins.find_nvcc(NANO)


def _jetpack_root(root):
    for rel in (plugins.SYSROOT_CUDA, plugins.SYSROOT_TRT):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    return root


def test_build_refuses_before_any_slow_stage(bare, monkeypatch, run_cli, tmp_path):
    # this machine's case: nvcc 13 against JetPack 6; the model is never loaded (it is no model)
    monkeypatch.setenv("CUDACXX", str(nvcc(bare / "cuda-13.0/bin", "13.0")))
    (tmp_path / "model").mkdir()
    (tmp_path / "calib.txt").write_text("text\n")
    code, out, err = run_cli("build", tmp_path / "model", "--target", "orin-nano", "--calib",
                             tmp_path / "calib.txt", "--sysroot", _jetpack_root(tmp_path / "jp"),
                             "-o", tmp_path / "b")
    assert code == 2 and err.count("\n") == 1 and "CUDA 13.0" in err and "12.6" in err, err
    assert "[" not in err and not (tmp_path / "b").exists(), err  # no stage ran


def _script(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    plugins.stage(bundle, NANO, {"mode": "sources", "reason": "test"}, print)
    return bundle / SCRIPT


def _run(script, path, **env):
    env = {"PATH": f"{path}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), **env}
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env)


def test_build_script_checks_the_device_nvcc(tmp_path):
    script = _script(tmp_path)
    bin_ = fake_trt.cmake(tmp_path / "bin", cuda="13.0")
    r = _run(script, bin_)
    assert r.returncode == 2 and not (bin_ / "log").exists(), r.stderr  # cmake never ran
    assert f"{bin_ / 'nvcc'} is CUDA 13.0, but orin-nano's driver runs CUDA 12.6" in r.stderr, r.stderr
    assert "sudo apt install nvidia-jetpack" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    # the toolkit named in CUDA_PATH (JetPack's place when it is not on PATH): that nvcc, to CMake
    v12 = nvcc(tmp_path / "cuda-12.6/bin", "12.6")
    r = _run(script, bin_, CUDA_PATH=str(v12.parent.parent))
    assert r.returncode == 0, r.stderr
    configure = (bin_ / "log").read_text().splitlines()[0]
    assert configure.startswith("--preset orin-nano ") and f"-DCMAKE_CUDA_COMPILER={v12}" in configure


def test_build_script_looks_where_jetpack_puts_nvcc(tmp_path):
    # PATH without nvcc: the script takes /usr/local/cuda/bin/nvcc (this machine's is CUDA 13,
    # so refused by name; on a machine without one, "no nvcc")
    bin_ = fake_trt.cmake(tmp_path / "bin", cuda=None)
    r = _run(_script(tmp_path), bin_)
    if not os.access(plugins.JETPACK_NVCC, os.X_OK):
        assert r.returncode == 2 and "no nvcc (CUDACXX, CUDA_PATH, PATH, /usr/local/cuda/bin)" in r.stderr
    elif plugins.nvcc_version(plugins.JETPACK_NVCC).startswith("12."):
        assert r.returncode == 0 and "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc" in (bin_ / "log").read_text()
    else:
        assert r.returncode == 2 and f"{plugins.JETPACK_NVCC} is CUDA" in r.stderr, r.stderr
