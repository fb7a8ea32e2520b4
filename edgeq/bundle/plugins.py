"""The bundle's plugin stage: build the TensorRT plugin library natively when this host is the
target, cross-compile it against a JetPack root given with --sysroot, or else ship its sources
with a CMake preset and a build script to run on the device."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from ..errors import EdgeqError
from ..runtime.cuda_kernels import gpu_sm

LIB = "libedgeq_trt_plugins.so"
SCRIPT = "plugins-src/build_plugins.sh"
# what a JetPack 6 root file system holds (CUDA 12.6 and TensorRT 10.3 packages)
SYSROOT_CUDA = "usr/local/cuda/targets/aarch64-linux/include/cuda_runtime.h"
SYSROOT_TRT = "usr/include/aarch64-linux-gnu/NvInfer.h"

BUILD_SCRIPT = """#!/bin/sh
# Build the edgeq TensorRT plugin library on the device ({target}: sm_{sm}, TensorRT {trt}) into
# the bundle's plugins/; `edgeq engine` runs this when the library is missing.
# Needs cmake, the CUDA toolkit and TensorRT's headers (JetPack installs them).
set -eu
cd "$(dirname "$0")"
build=$(mktemp -d)  # outside the bundle, whose files bundle.json lists
trap 'rm -rf "$build"' EXIT
trap 'exit 1' HUP INT TERM  # through the EXIT trap
PATH="$PATH:/usr/local/cuda/bin"  # JetPack's nvcc is often not on PATH
cmake --preset {target} -S src -B "$build"
cmake --build "$build" -j"$(nproc)" --target edgeq_trt_plugins
mkdir -p ../plugins && cp "$build/{lib}" ../plugins/.{lib} && mv ../plugins/.{lib} ../plugins/{lib}
echo "built plugins/{lib}"
"""


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
        (bundle / "plugins").mkdir()
        shutil.copy(build / LIB, bundle / "plugins" / LIB)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def stage(bundle: Path, target: dict, sysroot: Path | None, log) -> dict:
    """Adds plugins/ (a built library) or plugins-src/ (sources) to the bundle."""
    base = ["cmake", "-S", str(source_root()), "-DCMAKE_BUILD_TYPE=Release", "-DEDGEQ_CUDA=ON",
            f"-DCMAKE_CUDA_ARCHITECTURES={target['sm']}"]
    if sysroot is not None:
        check_sysroot(sysroot, target)
        sysroot = sysroot.resolve()  # CMake runs the compilers in its build folder
        _cmake(bundle, [*base, f"-DCMAKE_TOOLCHAIN_FILE={source_root() / 'targets' / target['toolchain']}",
                        f"-DEDGEQ_SYSROOT={sysroot}",
                        f"-DTENSORRT_INCLUDE_DIR={sysroot / 'usr/include/aarch64-linux-gnu'}"], log)
        return {"mode": "cross-compiled", "sysroot": str(sysroot), "library": f"plugins/{LIB}"}
    # TensorRT's headers: the deb packages' (JetPack's), or a tarball's include/ given in
    # EDGEQ_TRT_INCLUDE (pip's tensorrt has none)
    include = Path(os.environ.get("EDGEQ_TRT_INCLUDE") or
                   f"/usr/include/{platform.machine()}-linux-gnu").resolve()
    if platform.machine() == target["arch"] and gpu_sm() == target["sm"] and (include / "NvInfer.h").is_file():
        _cmake(bundle, [*base, f"-DTENSORRT_INCLUDE_DIR={include}"], log)
        return {"mode": "native", "library": f"plugins/{LIB}"}
    src = bundle / "plugins-src"
    _copy_sources(src / "src")
    (src / "src" / "CMakePresets.json").write_text(
        json.dumps(_preset(target, f"/usr/include/{target['arch']}-linux-gnu"), indent=1) + "\n")
    script = src / "build_plugins.sh"
    script.write_text(BUILD_SCRIPT.format(target=target["name"], sm=target["sm"],
                                          trt=target.get("tensorrt", "10.x"), lib=LIB))
    script.chmod(0o755)
    reason = (f"this host is {platform.machine()}, the target {target['arch']}"
              if platform.machine() != target["arch"] else
              f"no sm_{target['sm']} GPU with TensorRT headers ({include}) on this host")
    return {"mode": "sources", "reason": reason, "build_script": SCRIPT}


def build_from_sources(bundle: Path, log) -> dict:
    """On the device: build a sources bundle's plugin library with its script; always, since a
    library already there has no hash in bundle.json to trust it by. The plugin stage's record,
    now of a native build."""
    log("building the plugin library from plugins-src ...")
    r = subprocess.run(["sh", str(bundle / SCRIPT)], capture_output=True, text=True)
    log(r.stdout + r.stderr)
    if r.returncode or not (bundle / "plugins" / LIB).is_file():
        raise EdgeqError(f"building the plugin library with {SCRIPT} failed (its output is "
                         "above); it needs cmake, the CUDA toolkit and TensorRT's headers")
    return {"mode": "native", "built": "on the device from plugins-src", "build_script": SCRIPT,
            "library": f"plugins/{LIB}"}
