"""The CUDA and TensorRT libraries build with nvcc alone (no GPU, no libnvinfer), for Jetson Orin
(sm_87) and more, and export exactly their ABI; the emulated kernels on edge values. The kernel
cases on the emulation, the CPU library and the plugins: test_backend_ops.py (on a GPU: _gpu.py)."""
from __future__ import annotations

import ctypes
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import kernel_cases as kc
from conftest import ROOT
from edgeq.ops.table import CAUSAL_CONV1D, SELECTIVE_SCAN, SSD_SCAN
from edgeq.runtime import cuda_kernels
from edgeq.runtime.kernels import Scales
from native_build import NVCC, TRT_INCLUDE, SUPPORT, cmake_build, exported, run, undefined

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH: CUDA code not built")
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not on PATH")
needs_trt = pytest.mark.skipif(
    not TRT_INCLUDE, reason="EDGEQ_TRT_INCLUDE unset: set it to a TensorRT include/ folder "
    "(NvInferRuntime.h) to build the TensorRT plugins")
ARCHS = (87, 90)  # Jetson Orin, and a data-centre GPU
ABI = set(cuda_kernels.symbols())
OPS = cuda_kernels.OPS  # every op with a CUDA kernel has a TensorRT plugin
FP_OPS = (SELECTIVE_SCAN, CAUSAL_CONV1D, SSD_SCAN)


def test_trt_op_table_header_is_current():
    p = subprocess.run([sys.executable, ROOT / "tools" / "gen_op_table_h.py", "--check"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@needs_cmake
def test_default_configure_does_not_enable_cuda(tmp_path):
    # `pip install .` must keep working where there is no CUDA toolkit
    run(["cmake", "-S", ROOT, "-B", tmp_path])
    assert "CMAKE_CUDA_COMPILER" not in (tmp_path / "CMakeCache.txt").read_text()


@needs_cmake
@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH: CUDA code not built")
def test_tensorrt_root_enables_the_plugin_library(tmp_path):
    # a TensorRT release folder (or JetPack's /usr) names its headers as ROOT/include
    (tmp_path / "trt" / "include").mkdir(parents=True)
    (tmp_path / "trt" / "include" / "NvInferRuntime.h").touch()
    build = tmp_path / "build"
    run(["cmake", "-S", ROOT, "-B", build, "-DEDGEQ_CUDA=ON", f"-DTENSORRT_ROOT={tmp_path / 'trt'}"])
    assert "edgeq_trt_plugins" in run(["cmake", "--build", build, "--target", "help"])


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """One build of libedgeq_cuda (and of the TensorRT plugins when headers are given)."""
    if NVCC is None:
        pytest.skip("nvcc not on PATH: CUDA code not built")
    out = tmp_path_factory.mktemp("cuda-build")
    defines = ["-DEDGEQ_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(map(str, ARCHS))}"]
    targets = ("edgeq_cuda",)
    if TRT_INCLUDE:
        defines.append(f"-DTENSORRT_INCLUDE_DIR={TRT_INCLUDE}")
        targets += ("edgeq_trt_plugins",)
    seconds = cmake_build(out, *defines, targets=targets)
    print(f"CUDA build ({', '.join(targets)}, sm {ARCHS}): {seconds:.1f} s")
    return out


def fatbin_entries(lib: Path) -> set[tuple[str, int]]:
    """(kind, sm) of every entry of the CUDA fat binaries embedded in `lib`."""
    data, found, pos = lib.read_bytes(), set(), 0
    while (pos := data.find(struct.pack("<I", 0xBA55ED50), pos)) >= 0:
        _, _, header, size = struct.unpack_from("<IHHQ", data, pos)
        entry, end = pos + header, pos + header + size
        while entry < end:
            kind, _, entry_header, padded = struct.unpack_from("<HHII", data, entry)
            sm = struct.unpack_from("<I", data, entry + 28)[0]
            found.add(({1: "ptx", 2: "cubin"}.get(kind, str(kind)), sm))
            entry += entry_header + padded
        pos = end
    return found


def test_cuda_library_exports_the_abi(build):
    lib = build / "libedgeq_cuda.so"
    assert exported(lib) == ABI
    header = "".join(p.read_text() for p in (ROOT / "plugins").glob("*/*_abi.h"))  # the ABI's
    assert all(f"EDGEQ_API int {name}(" in header for name in ABI)
    needed = run(["readelf", "-d", lib])
    assert "libcudart" not in needed and "libcuda." not in needed  # cudart static, driver dlopened


def test_cuda_library_has_code_for_each_arch(build):
    entries = fatbin_entries(build / "libedgeq_cuda.so")
    assert {("cubin", sm) for sm in ARCHS} <= entries, entries


def test_cuda_library_rejects_bad_arguments(build):
    # checked before any CUDA call, so this needs no GPU
    lib = cuda_kernels.bind(ctypes.CDLL(str(build / "libedgeq_cuda.so")))
    p = ctypes.c_void_p(16)  # never dereferenced: every call below fails its checks first
    scan = lib.edgeq_selective_scan_f32
    conv = lib.edgeq_causal_conv1d_f16
    ok_scan = [p] * 11 + [1, 1, 8, 8, 1, 16, 1, None]  # ... batch, L, dim, heads, groups, dstate
    assert scan(*[None] + ok_scan[1:]) == 2  # EDGEQ_NULL_POINTER
    for i, bad in ((12, 0), (13, 6), (15, 3), (16, 257)):  # L, dim % heads, heads % groups, N
        assert scan(*ok_scan[:i], bad, *ok_scan[i + 1:]) == 1  # EDGEQ_BAD_SHAPE
    ok_conv = [p] * 6 + [1, 1, 8, 4, 1, None]  # ... batch, L, channels, width
    for width in (1, 33):
        assert conv(*ok_conv[:9], width, *ok_conv[10:]) == 1
    conv8 = lib.edgeq_causal_conv1d_int8
    ok_conv8 = ok_conv[:10] + [Scales(p, 1), Scales(p, 8), Scales(p, 1)] + ok_conv[10:]
    for i, bad in ((11, Scales(p, 2)), (12, Scales(p, 9)), (10, Scales(p, 0))):  # 1 or channels
        assert conv8(*ok_conv8[:i], bad, *ok_conv8[i + 1:]) == 1
    assert conv8(*ok_conv8[:12], Scales(None, 1), *ok_conv8[13:]) == 2
    ssd = lib.edgeq_ssd_scan_f32
    ok_ssd = [p] * 10 + [1, 1, 8, 4, 1, 16, 1, 256, None]  # ..., dstate, softplus, chunk
    assert ssd(*ok_ssd[:2], None, *ok_ssd[3:]) == 2  # A
    for i, bad in ((11, 0), (12, 6), (14, 3), (15, 257)):  # L, dim % heads, heads % groups, N
        assert ssd(*ok_ssd[:i], bad, *ok_ssd[i + 1:]) == 1
    scan8 = lib.edgeq_selective_scan_int8
    ok_scan8 = ok_scan[:17] + [0.5] * 5 + ok_scan[17:]
    assert scan8(*ok_scan8[:8], None, *ok_scan8[9:]) == 2  # the int8 op's gate is required
    ssd8 = lib.edgeq_ssd_scan_int8  # dim 8, heads 4, groups 1: x, dt, B, C scales 1 or those
    ok_ssd8 = ok_ssd[:16] + [Scales(p, 8), Scales(p, 4), Scales(p, 1), Scales(p, 1)] + ok_ssd[16:]
    for i, bad in ((16, Scales(p, 4)), (17, Scales(p, 8)), (18, Scales(p, 2)), (19, Scales(p, 0))):
        assert ssd8(*ok_ssd8[:i], bad, *ok_ssd8[i + 1:]) == 1
    assert ssd8(*ok_ssd8[:19], Scales(None, 1), *ok_ssd8[20:]) == 2
    hadamard, norm = lib.edgeq_hadamard_int8, lib.edgeq_add_rmsnorm_int8
    for n in (0, 100, 24 * 1024):  # not K * 2^m; above the shared-memory row limit
        assert hadamard(p, p, 1, n, 0.5, None) == 1
    assert hadamard(p, None, 1, 64, 0.5, None) == 2
    for rows, d in ((1, 0), (-1, 8)):
        assert norm(*[p] * 5, rows, d, 1e-5, 0.5, None) == 1
    assert hadamard(p, p, 0, 64, 0.5, None) == norm(*[p] * 5, 0, 8, 1e-5, 0.5, None) == 0  # no rows
    w4a8 = lib.edgeq_linear_w4a8
    ok_w4a8 = [p] * 4 + [1, 256, 8, 0.5, 128, None]  # ... rows, K, N, x_scale, group_size
    assert w4a8(*ok_w4a8[:3], None, *ok_w4a8[4:]) == 2
    for i, bad in ((4, -1), (5, 192), (6, -1), (8, 0), (8, 3), (8, 96)):  # K % group_size, odd
        assert w4a8(*ok_w4a8[:i], bad, *ok_w4a8[i + 1:]) == 1
    assert w4a8(*ok_w4a8[:4], 0, *ok_w4a8[5:]) == 0  # no rows
    if not Path("/dev/nvidiactl").exists():  # no driver: the checks pass, the launch fails
        assert scan(*ok_scan) == scan(*ok_scan[:8], None, *ok_scan[9:]) == 3  # EDGEQ_CUDA_ERROR
        assert conv(*ok_conv) == conv8(*ok_conv8) == scan8(*ok_scan8) == 3
        assert ssd(*ok_ssd) == ssd(*ok_ssd[:17], 0, None) == ssd8(*ok_ssd8) == 3  # chunk ignored
        assert hadamard(p, p, 1, 64, 0.5, None) == norm(*[p] * 5, 1, 8, 1e-5, 0.5, None) == 3
        assert w4a8(*ok_w4a8) == w4a8(*ok_w4a8[:8], 2, *ok_w4a8[9:]) == 3  # both chunk widths


def test_scan_kernel_code_on_edge_values(emulated_kernels):
    # an A of -inf (decay 0) where the time-parallel kernel pads its last chunk (L = 20: two
    # lanes, 16-token chunks); and a decay of e^6 per step (no softplus, dt < 0) with nothing
    # to grow: maps composed over 32 tokens overflow where the sequential scan stays at 0
    c = kc.Scan(1, 20, 8)
    x = kc.scan_inputs(c)
    x["A"][:, 0] = -math.inf
    kc.run_scan(emulated_kernels, kc.HostMem(), c, prefix="emu_", x=x)
    c = kc.Scan(1, 64, 8, softplus=0)
    x = kc.scan_inputs(c)
    x["A"].fill_(-1.0)
    x["delta"].fill_(-6.0)
    x["delta_bias"].zero_()
    x["u"].zero_()
    x["state"].zero_()
    kc.run_scan(emulated_kernels, kc.HostMem(), c, prefix="emu_", x=x)


def test_ssd_chunked_kernel_code_on_edge_values(emulated_kernels):
    # the tensor-core kernel's fp32 operands beyond fp16's range (a state of 1e6) or in its
    # subnormals (a state of 1e-6, inputs of 1e-4): its power-of-two row scales keep both; a
    # state of 1e-36 (below 2^-113, a row scale past fp32's range) stays finite
    c = kc.Ssd(1, 130, 2, 16, N=32, dtype="float16")
    for state, inputs in ((2e6, 1), (2e-6, 1e-4), (2e-36, 1)):
        x = kc.ssd_inputs(c)
        x["state"] *= state
        x["x"] *= inputs
        kc.run_ssd(emulated_kernels, kc.HostMem(), c, prefix="emu_", x=x)


@pytest.fixture(scope="module")
def probe(emulation_object, tmp_path_factory):
    """What tests/support/trt_probe.cpp sees when it loads the plugin library like TensorRT
    does: the adapters over the CPU emulation, whose cudaMalloc works without a GPU (the plugins
    copy their FLOATS fields to the device in onShapeChange at build time and in
    attachToContext)."""
    if not TRT_INCLUDE:
        pytest.skip("EDGEQ_TRT_INCLUDE unset")
    from plugin_harness import build_emulated_plugins
    out = tmp_path_factory.mktemp("probe")
    lib = build_emulated_plugins(NVCC, TRT_INCLUDE, emulation_object, out)
    exe = out / "trt_probe"
    run([NVCC, "-std=c++17", "-isystem", TRT_INCLUDE, SUPPORT / "trt_probe.cpp", "-o", exe,
         "-ldl"])
    return run([exe, lib]).splitlines()


@needs_trt
def test_trt_library_exports_only_the_loader_entry_points(build):
    lib = build / "libedgeq_trt_plugins.so"
    assert exported(lib) == {"getCreators", "setLoggerFinder"}
    assert not [s for s in undefined(lib) if "nvinfer" in s.lower()]
    assert "libnvinfer" not in run(["readelf", "-d", lib])


def by_plugin(probe: list[str]) -> dict[str, list[str]]:
    """The probe's lines, per plugin (from its `creator` line to the next)."""
    out, name = {}, None
    for line in probe:
        if line.startswith("creator "):
            name = line.split()[1]
        out.setdefault(name, []).append(line)
    return out


@needs_trt
def test_trt_plugins_match_the_op_table(probe):
    creators = [line.split()[1:] for line in probe if line.startswith("creator ")]
    plugins = [line.split()[1:4] for line in probe if line.startswith("plugin ")]
    assert creators == plugins == [[op.name, op.version, op.namespace] for op in OPS]
    interfaces = {line for line in probe if line.startswith("interface")}
    assert interfaces == {"interface PLUGIN CREATOR_V3ONE"}
    # fields: the attributes, INT as kINT32 (5) and FLOAT and FLOATS as kFLOAT32 (1), one value
    # each; they round-trip serialization (created with INT 0, group_size 64, FLOAT(S) 0.5),
    # followed by the input count (all inputs until configurePlugin says otherwise)
    lines = by_plugin(probe)
    for op in OPS:
        words = [line.split() for line in lines[op.name]]
        assert [(w[1], int(w[2]), int(w[3])) for w in words if w[0] == "field"] == \
            [(a.name, 5 if a.type == "INT" else 1, 1) for a in op.attrs]
        assert [(w[1], w[2]) for w in words if w[0] == "serialized"] == \
            [(a.name, "64" if a.name == "group_size" else "0" if a.type == "INT" else "0.5")
             for a in op.attrs] + [("nb_inputs", str(len(op.inputs)))]


@needs_trt
def test_trt_plugins_formats_shapes_and_checks(probe):
    text, lines = "\n".join(probe), by_plugin(probe)
    n = len(SELECTIVE_SCAN.inputs)
    # fp32 or fp16 activations, one type per op; A, D, delta_bias and the SSM state fp32; no int8
    assert f"combination {n} f16: f16 f16 f32 f16 f16 f32 f32 f32 f16 | f16 f32" in text
    assert f"combination {n - 1} f16: f16 f16 f32 f16 f16 f32 f32 f32 | f16 f32" in text  # no z
    assert "combination 4 f16: f16 f16 f16 f16 | f16 f16" in text  # conv: the state too
    ssd = {line for line in lines[SSD_SCAN.name] if line.startswith("combination")}
    assert ssd == {f"combination 8 {t}: {a} {a} f32 {a} {a} f32 f32 f32 | {a} f32"
                   for t, a in (("f32", "f32"), ("f16", "f16"), ("i8", "f32"), ("u8", "f32"))}
    for op in FP_OPS:
        chosen = [line.split(": ")[1] for line in lines[op.name] if line.startswith("combination")]
        assert chosen and not [c for c in chosen if "i8" in c or "u8" in c]
    # the int8 ops: one combination whatever comes first, int8 where docs/ops.md says int8
    int8 = {"EdgeqSelectiveScanInt8": {"i8 i8 f32 i8 i8 f32 f32 f32 i8 | f32 f32"},
            "EdgeqSSDScanInt8": {"i8 i8 f32 i8 i8 f32 f32 f16 | f32 f16"},
            "EdgeqCausalConv1dInt8": {"i8 i8 f32 i8 | i8 i8"},
            "EdgeqHadamardInt8": {"f32 | i8"},
            "EdgeqAddRMSNormInt8": {"f32 f32 f32 | i8 f32"},
            "EdgeqLinearW4A8": {"i8 i8 f32 | f32"},
            "EdgeqEmbeddingW4": {"i64 i4 f16 | f32"}}
    assert set(int8) == {op.name for op in OPS} - {op.name for op in FP_OPS}
    for name, want in int8.items():
        chosen = {line.split(": ")[1] for line in lines[name] if line.startswith("combination")}
        assert chosen == want, name
    assert "differs" not in text
    for op in OPS:  # outputs shaped like their table `like` input, the last dim maybe another's,
        names = [p.name for p in op.inputs]  # or with another's last dim appended
        for o, port in enumerate(op.outputs):
            like = names.index(port.like)
            last = f"{names.index(port.last_from)}.0" if port.last_from else f"{like}.1"
            more = f" {names.index(port.append_from)}.1" if port.append_from else ""
            assert f"shape {len(names)} {o} dims {like}.0 {last}{more}" in lines[op.name]
    assert text.count("bad_value rejected") == text.count("bad_type rejected") == len(OPS)
    input_counts = sum(1 + sum(p.optional for p in op.inputs) for op in OPS)
    assert text.count("bad_shapes -1") == text.count("good_shapes 0") == input_counts
    # the input count configurePlugin saw comes back from the serialized fields (z optional)
    assert text.count("round_trip") == input_counts and " -" not in " ".join(
        line for line in probe if line.startswith("round_trip"))
    assert f"round_trip {n - 1} 0" in lines[SELECTIVE_SCAN.name]
    assert text.count("bad_nb_inputs rejected") == len(OPS)
    assert "log EdgeqSelectiveScan: inconsistent input shapes" in text  # the logger is used
    assert text.count("attached yes") == len(OPS)


@needs_trt
def test_trt_floats_fields_run_along_their_axis(probe):
    """FLOATS scales (kFLOAT32 fields of length n): one value per channel, head or group is
    taken and serialized whole; a length that is neither 1 nor the size of the axis it runs
    along fails configurePlugin and onShapeChange; any bad value fails creation."""
    lines = by_plugin(probe)
    for op in OPS:
        floats = {a.name for a in op.attrs if a.type == "FLOATS"}
        text = lines[op.name]
        if not floats:
            assert not [line for line in text if line.startswith(("per_channel", "wrong_length"))]
            continue
        assert "per_channel configure 0 shapes 0" in text, op.name
        lengths = {w[1]: int(w[2]) for w in map(str.split, text)
                   if w[0] == "per_channel_serialized"}
        assert set(lengths) == {a.name for a in op.attrs} | {"nb_inputs"}
        assert all((lengths[name] > 1) == (name in floats) for name in lengths
                   if name != "nb_inputs"), lengths
        for name in floats:
            assert f"wrong_length {name} configure -1 shapes -1" in text, name
            assert f"bad_array_value {name} rejected" in text, name


@needs_trt
def test_every_custom_node_of_exported_graphs_has_a_creator(probe, tmp_path):
    """What TensorRT's ONNX parser will look up: for every custom node of the Mamba-1 fp and
    W8A8 graphs and the Mamba-2 fp and W4A8 graphs, a creator of that name, version and namespace whose fields cover the node's
    attributes (the parser forwards only attributes named in getFieldNames)."""
    import numpy as np

    from edgeq.export.onnx_export import to_onnx
    from edgeq.models import MambaConfig, MambaLM
    from edgeq.ops.table import DOMAIN
    from edgeq.quant import calib_data, pipeline, qmodel, recipe as R
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    fp = MambaLM(MambaConfig(d_model=48, n_layer=1, vocab_size=64)).eval()
    fp2 = MambaLM(MambaConfig(d_model=64, n_layer=1, vocab_size=64, arch="mamba2", d_state=16,
                              headdim=16, ngroups=2, chunk_size=8)).eval()
    windows = calib_data.windows(np.arange(256) % 64, 2, 16, 64)
    graphs = [to_onnx(fp), to_onnx(fp2)]
    for model, name in ((fp, "quamba-w8a8"), (fp2, "quamba2-w4a8")):
        rec = R.load(name)
        qfp, tensors, scales = pipeline.run(model, windows, rec)
        graphs.append(to_onnx(qmodel.load_model(qfp.cfg, tensors, scales, rec)))
    fields = {}
    for name, lines in by_plugin(probe).items():
        if name is None:  # the probe's lines before the first creator
            continue
        plugin = next(line.split() for line in lines if line.startswith("plugin "))
        fields[(name, plugin[2], plugin[3])] = {line.split()[1] for line in lines if line.startswith("field ")}
    seen = set()
    for proto in graphs:
        for node in proto.graph.node:
            if node.domain != DOMAIN:
                continue
            attrs = {a.name: a for a in node.attribute}
            key = (node.op_type, attrs["plugin_version"].s.decode(), attrs["plugin_namespace"].s.decode())
            assert key in fields, key
            assert set(attrs) - {"plugin_version", "plugin_namespace"} <= fields[key], node.op_type
            seen.add(node.op_type)
    assert {"EdgeqLinearW4A8", "EdgeqSSDScanInt8", "EdgeqSelectiveScanInt8"} <= seen
