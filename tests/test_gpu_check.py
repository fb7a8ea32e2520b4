"""tools/gpu_check.sh without a GPU (issue 22, item 8): it says so and stops, writing nothing;
and with a stand-in nvidia-smi (an H100's answers) and cmake, its steps are wired as on the lent
GPU: the build for the GPU's sm, pytest -m gpu over the files with GPU tests, the benchmark
into the folder given (which, with no GPU really there, fails: the summary says so), and
compute-sanitizer reported as missing when it is."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "tools" / "gpu_check.sh"


def _tool(folder, name, body):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + body)
    (folder / name).chmod(0o755)
    return folder


def _run(out, path, **env):
    env = {"PATH": f"{path}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"),
           "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env,
                          timeout=600)


def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    # nvidia-smi as it answers on a host without the driver
    bin_ = _tool(tmp_path / "bin", "nvidia-smi", "echo 'NVIDIA-SMI has failed because it "
                 "couldn'\"'\"'t communicate with the NVIDIA driver.'; exit 9\n")
    for path in (bin_, tmp_path / "empty"):
        r = _run(tmp_path / "out", path)
        assert r.returncode == 2 and r.stderr == ("gpu_check: no NVIDIA GPU here (nvidia-smi is "
                                                  "missing or lists none): nothing checked\n"), r.stderr
        assert not (tmp_path / "out").exists()
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage: bash tools/gpu_check.sh OUT_DIR")


def test_steps_are_wired_for_the_gpu_it_finds(tmp_path):
    bin_ = _tool(tmp_path / "bin", "nvidia-smi", 'echo "NVIDIA H100 80GB HBM3, 9.0, 580.159.04"\n')
    # cmake: logs its arguments; a build makes the libraries it is asked for (empty files)
    _tool(bin_, "cmake", f"""echo "$@" >> {tmp_path}/cmake.log
if [ "$1" = --build ]; then
  dir=$2; shift 2
  mkdir -p "$dir"
  for a; do case $a in edgeq_*) : > "$dir/lib$a.so";; esac; done
fi
""")
    assert not shutil.which("compute-sanitizer", path=f"{bin_}:/usr/bin:/bin")
    r = _run(tmp_path / "out", bin_)
    out = tmp_path / "out"
    summary = (out / "gpu-check.md").read_text()
    assert r.returncode == 1, r.stdout + r.stderr  # the benchmark finds no GPU
    assert summary.startswith("# edgeq GPU check on NVIDIA H100 80GB HBM3 (sm_90)"), summary
    configure, build = (tmp_path / "cmake.log").read_text().splitlines()
    assert "-DEDGEQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER=" in configure
    assert build.endswith("--target edgeq_cpu edgeq_cuda")
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| build (sm_90: edgeq_cpu edgeq_cuda)", "passed"],
        ["| pytest -m gpu (tests/test_backend_ops_gpu.py )",
         "no tests ran (all skipped or deselected: see the log)"],  # no GPU: every one skips
        ["| tools/bench_kernels.py --quick", "failed (exit 2)"],
        ["| compute-sanitizer", "not installed: not run"]], summary
    log = (out / "gpu-check.log").read_text()
    build_dir = configure.split(" -B ")[1].split()[0]
    assert f"tools/bench_kernels.py --quick --lib {build_dir}/libedgeq_cuda.so --out {out}" in log
    assert "no CUDA GPU" in log and "skipped" in summary, log[-3000:]  # pytest's reasons, bench's
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.log", "gpu-check.md"]
    assert not os.path.exists(build_dir)  # the build folder is temporary
