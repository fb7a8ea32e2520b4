"""The bundle's plugin stage: build the TensorRT plugin library natively when this host is the
target, cross-compile it against a JetPack root given with --sysroot, or else ship its sources
with a CMake preset and a build script to run on the device."""
from __future__ import annotations

import glob
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from ..bundle_files import PLUGIN_LIB, PLUGIN_LIBRARY, PLUGINS, SCRIPT, SOURCES
from ..errors import EdgeqError
from ..gpu import gpu_sm

# what a JetPack 6 root file system holds (CUDA 12.6 and TensorRT 10.3 packages)
SYSROOT_CUDA = "usr/local/cuda/targets/aarch64-linux/include/cuda_runtime.h"
SYSROOT_TRT = "usr/include/aarch64-linux-gnu/NvInfer.h"

BUILD_SCRIPT = """#!/bin/sh
# Build the edgeq TensorRT plugin library on the device ({target}: sm_{sm}, TensorRT {trt},
# CUDA {cuda}) into the bundle's plugins/; `edgeq engine` runs this when the library is missing.
# Needs cmake, the CUDA {major} toolkit and TensorRT's headers (JetPack installs them).
set -eu
cd "$(dirname "$0")"
# nvcc as edgeq/bundle/plugins.py finds it: CUDACXX, CUDA_PATH, PATH, then where the toolkit
# installs it (JetPack's is often not on PATH); the first of CUDA {major} among them
nvcc=
for c in "${{CUDACXX:-}}" "${{CUDA_PATH:+$CUDA_PATH/bin/nvcc}}" "$(command -v nvcc || true)" \\
         /usr/local/cuda/bin/nvcc /usr/local/cuda-{major}*/bin/nvcc; do
  [ -n "$c" ] && [ -x "$c" ] || continue
  v=$("$c" --version | sed -n 's/.*release \\([0-9][0-9]*\\)\\.\\([0-9][0-9]*\\).*/\\1.\\2/p')
  [ -n "${{first:-}}" ] || {{ first=$c; first_v=$v; }}
  [ "${{v%%.*}}" = {major} ] && {{ nvcc=$c; break; }}
  [ -z "${{CUDACXX:-}}${{CUDA_PATH:-}}" ] || break  # a toolkit named by the user: that one
done
if [ -z "$nvcc" ]; then
  if [ -n "${{first:-}}" ]; then
    echo "build_plugins.sh: $first is CUDA ${{first_v:-of unknown version}}, but {target}'s driver runs CUDA {cuda} ({major}.x) code; {install}" >&2
  else
    echo "build_plugins.sh: no nvcc (CUDACXX, CUDA_PATH, PATH, /usr/local/cuda/bin); {install}" >&2
  fi
  exit 2
fi
build=$(mktemp -d)  # outside the bundle, whose files bundle.json lists
trap 'rm -rf "$build"' EXIT
trap 'exit 1' HUP INT TERM  # through the EXIT trap
cmake --preset {target} -S src -B "$build" -DCMAKE_CUDA_COMPILER="$nvcc"
cmake --build "$build" -j"$(nproc)" --target edgeq_trt_plugins
mkdir -p ../plugins && cp "$build/{lib}" ../plugins/.{lib} && mv ../plugins/.{lib} ../plugins/{lib}
echo "built plugins/{lib}"
"""

# The CUDA toolkit: nvcc's version must be of the target's CUDA major (targets/*.toml `cuda`).
# Code from a newer major needs that major's driver (CUDA's compatibility rule: a driver runs
# code of its own major and older), which JetPack 6's (CUDA 12.6) is not.
JETPACK_NVCC = "/usr/local/cuda/bin/nvcc"  # JetPack's, and the toolkits' default, often off PATH


def _nvcc_candidates(major: int) -> tuple[list[str], bool]:
    """nvcc paths in the order they are taken, and whether the user named one (CUDACXX or
    CUDA_PATH: then only that one)."""
    named = [p for p in (os.environ.get("CUDACXX"),
                         os.environ.get("CUDA_PATH") and
                         str(Path(os.environ["CUDA_PATH"]) / "bin" / "nvcc")) if p]
    if named:
        return named[:1], True
    found = [shutil.which("nvcc"), JETPACK_NVCC, *sorted(glob.glob(f"/usr/local/cuda-{major}*/bin/nvcc"))]
    return [p for p in dict.fromkeys(found) if p], False


def nvcc_version(nvcc: str) -> str:
    """`nvcc --version`'s release, as "12.6"."""
    try:
        r = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EdgeqError(f"{nvcc}: cannot run it ({e}); point CUDACXX at a working nvcc") from None
    m = re.search(r"release (\d+)\.(\d+)", r.stdout)
    if r.returncode or not m:
        raise EdgeqError(f"{nvcc}: `nvcc --version` names no release (exit {r.returncode}); "
                         "point CUDACXX at a working nvcc")
    return f"{m[1]}.{m[2]}"


def _install_hint(target: dict, cross: bool) -> str:
    v = target["cuda"].replace(".", "-")
    if target.get("kind") == "jetson" and cross:
        return (f"install NVIDIA's cuda-toolkit-{v} and cuda-cross-aarch64-{v} on this host and "
                f"point CUDACXX or CUDA_PATH at them")
    if target.get("kind") == "jetson":
        return f"install JetPack's CUDA (sudo apt install nvidia-jetpack, or cuda-toolkit-{v})"
    return (f"install a CUDA {target['cuda'].split('.')[0]}.x toolkit (NVIDIA's cuda-toolkit-"
            f"{v}-x packages) and point CUDACXX or CUDA_PATH at it")


def driver_cuda() -> str | None:
    """The CUDA version this host's driver runs ("13.0"), None without one (libcuda's
    cuDriverGetVersion)."""
    import ctypes
    try:
        v = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{v.value // 1000}.{v.value % 1000 // 10}"


def _runs(target: dict, nvcc: str, cross: bool) -> bool:
    """Whether the target runs code of CUDA `nvcc`: a Jetson's JetPack driver only its own major;
    a workstation's driver (this host's, when building natively) any major from the target's
    `cuda` up to its own."""
    major, want = int(nvcc.split(".")[0]), int(target["cuda"].split(".")[0])
    if target.get("kind") == "jetson":
        return major == want
    driver = None if cross else driver_cuda()
    return want <= major and (driver is None or major <= int(driver.split(".")[0]))


def find_nvcc(target: dict, cross: bool = False) -> tuple[str, str]:
    """The nvcc to build the target's plugin library with, and its version: the first whose
    code the target runs (_runs); refuses (one line) when there is none."""
    want = target["cuda"]
    major = int(want.split(".")[0])
    paths, named = _nvcc_candidates(major)
    paths = [p for p in paths if os.access(p, os.X_OK)] if not named else paths
    if not paths:
        raise EdgeqError(f"no nvcc found (CUDACXX, CUDA_PATH, PATH, {JETPACK_NVCC}) to build the "
                         f"plugin library for {target['name']}; {_install_hint(target, cross)}")
    seen = []
    for p in paths:
        v = nvcc_version(p)
        if _runs(target, v, cross):
            return p, v
        seen.append(f"{p} (CUDA {v})")
    if target.get("kind") == "jetson":
        runs = f"CUDA {want} ({major}.x) code, not newer"
    else:
        runs = f"code of CUDA {major}.x up to this host's driver's CUDA {driver_cuda() or '?'}"
    raise EdgeqError(f"{', '.join(seen)}: {target['name']}'s driver runs {runs}; "
                     f"{_install_hint(target, cross)}")


def source_root() -> Path:
    """The native sources: the repository, or their copy inside the installed package."""
    for root in (Path(__file__).resolve().parents[2], Path(__file__).resolve().parents[1] / "native"):
        if (root / "CMakeLists.txt").is_file() and (root / "plugins").is_dir():
            return root
    raise EdgeqError("the plugin sources are missing from this installation; reinstall edgeq")


def _copy_sources(dst: Path) -> None:
    root = source_root()
    dst.mkdir(parents=True)
    shutil.copy(root / "CMakeLists.txt", dst / "CMakeLists.txt")
    shutil.copytree(root / "plugins", dst / "plugins")
    shutil.copytree(root / "targets", dst / "targets")


def _preset(target: dict, include: str) -> dict:
    return {"version": 3, "configurePresets": [{
        "name": target["name"], "binaryDir": "${sourceDir}/../build",
        "cacheVariables": {"CMAKE_BUILD_TYPE": "Release", "EDGEQ_CUDA": "ON",
                           "CMAKE_CUDA_ARCHITECTURES": str(target["sm"]),
                           "TENSORRT_INCLUDE_DIR": include}}]}


def check_sysroot(sysroot: Path, target: dict) -> None:
    if "toolchain" not in target:  # a workstation: built natively on its own host
        from ..targets import all_targets
        takers = [t["name"] for t in all_targets().values() if "toolchain" in t]
        raise EdgeqError(f"target {target['name']} takes no --sysroot (build on a host with its "
                         f"GPU); --sysroot cross-compiles for {', '.join(takers)}")
    for rel, what in ((SYSROOT_CUDA, "CUDA"), (SYSROOT_TRT, "TensorRT")):
        if not (sysroot / rel).is_file():
            raise EdgeqError(f"{sysroot}: no {what} in the sysroot (no {rel}); point --sysroot at a "
                             "JetPack root file system with CUDA and TensorRT installed")


def _cmake(bundle: Path, args: list[str], log) -> None:
    build = bundle.parent / (bundle.name + ".plugin-build")
    try:
        for cmd in ([*args, "-B", str(build)],
                    ["cmake", "--build", str(build), "--target", "edgeq_trt_plugins"]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            log(r.stdout + r.stderr)
            if r.returncode:
                raise EdgeqError(f"building the plugin library failed ({' '.join(cmd[:2])}); "
                                 "see the log above")
        (bundle / PLUGINS).mkdir()
        shutil.copy(build / PLUGIN_LIB, bundle / PLUGIN_LIBRARY)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _trt_include() -> Path:
    # TensorRT's headers: the deb packages' (JetPack's), or a tarball's include/ given in
    # EDGEQ_TRT_INCLUDE (pip's tensorrt has none)
    return Path(os.environ.get("EDGEQ_TRT_INCLUDE") or
                f"/usr/include/{platform.machine()}-linux-gnu").resolve()


def plan(target: dict, sysroot: Path | None) -> dict:
    """How the plugin stage will go (cross-compiled, native or sources), checked before any
    slow stage: the sysroot, and the nvcc a build would use (find_nvcc)."""
    if sysroot is not None:
        check_sysroot(sysroot, target)
        nvcc, version = find_nvcc(target, cross=True)
        return {"mode": "cross-compiled", "sysroot": sysroot.resolve(), "nvcc": nvcc, "cuda": version}
    include = _trt_include()
    if platform.machine() == target["arch"] and gpu_sm() == target["sm"] and (include / "NvInfer.h").is_file():
        nvcc, version = find_nvcc(target)
        return {"mode": "native", "include": include, "nvcc": nvcc, "cuda": version}
    reason = (f"this host is {platform.machine()}, the target {target['arch']}"
              if platform.machine() != target["arch"] else
              f"no sm_{target['sm']} GPU with TensorRT headers ({include}) on this host")
    return {"mode": "sources", "reason": reason}


def stage(bundle: Path, target: dict, how: dict, log) -> dict:
    """Adds plugins/ (a built library) or plugins-src/ (sources) to the bundle, as plan() chose."""
    base = ["cmake", "-S", str(source_root()), "-DCMAKE_BUILD_TYPE=Release", "-DEDGEQ_CUDA=ON",
            f"-DCMAKE_CUDA_ARCHITECTURES={target['sm']}"]
    if how["mode"] != "sources":
        base.append(f"-DCMAKE_CUDA_COMPILER={how['nvcc']}")
        built = {"mode": how["mode"], "library": PLUGIN_LIBRARY, "cuda": how["cuda"]}
    if how["mode"] == "cross-compiled":
        sysroot = how["sysroot"]  # resolved: CMake runs the compilers in its build folder
        _cmake(bundle, [*base, f"-DCMAKE_TOOLCHAIN_FILE={source_root() / 'targets' / target['toolchain']}",
                        f"-DEDGEQ_SYSROOT={sysroot}",
                        f"-DTENSORRT_INCLUDE_DIR={sysroot / 'usr/include/aarch64-linux-gnu'}"], log)
        return {**built, "sysroot": str(sysroot)}
    if how["mode"] == "native":
        _cmake(bundle, [*base, f"-DTENSORRT_INCLUDE_DIR={how['include']}"], log)
        return built
    src = bundle / SOURCES
    _copy_sources(src / "src")
    (src / "src" / "CMakePresets.json").write_text(
        json.dumps(_preset(target, f"/usr/include/{target['arch']}-linux-gnu"), indent=1) + "\n")
    script = bundle / SCRIPT
    major = target["cuda"].split(".")[0]
    script.write_text(BUILD_SCRIPT.format(target=target["name"], sm=target["sm"],
                                          trt=target.get("tensorrt", "10.x"), cuda=target["cuda"],
                                          major=major, install=_install_hint(target, False),
                                          lib=PLUGIN_LIB))
    script.chmod(0o755)
    return {"mode": "sources", "reason": how["reason"], "build_script": SCRIPT}


def build_from_sources(bundle: Path, log) -> dict:
    """On the device: build a sources bundle's plugin library with its script; always, since a
    library already there has no hash in bundle.json to trust it by. The plugin stage's record,
    now of a native build."""
    log("building the plugin library from plugins-src ...")
    r = subprocess.run(["sh", str(bundle / SCRIPT)], capture_output=True, text=True)
    log(r.stdout + r.stderr)
    if r.returncode or not (bundle / PLUGIN_LIBRARY).is_file():
        raise EdgeqError(f"building the plugin library with {SCRIPT} failed (its output is "
                         "above); it needs cmake, the target's CUDA toolkit and TensorRT's headers")
    return {"mode": "native", "built": "on the device from plugins-src", "build_script": SCRIPT,
            "library": PLUGIN_LIBRARY}
