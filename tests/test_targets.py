"""Targets as data, the roofline estimate, and the aarch64 cross build of the CPU kernels."""
import json
import re
import shutil
import subprocess
import tomllib

import pytest

from edgeq import targets as T
from edgeq.errors import EdgeqError
from edgeq.models import MambaConfig

from conftest import ROOT

REQUIRED = {"name", "description", "kind", "arch", "sm", "memory_gb", "bandwidth_gbs",
            "int8_tops_dense", "fp16_tflops_dense"}
SETTINGS = {"name", "description", "kind", "toolchain"}  # names and paths: every other key is a fact
LISTED = re.compile(r"^# \[([\w-]+)\] \S")  # a source in the file's header: "# [name] title, address"
CITED = re.compile(r"\[([\w-]+)\]")


def unsourced(text: str) -> list[str]:
    """What a target file lacks: each fact's comment gives "source: [name]..." (a source listed in
    the header), "derived: how" or "chosen: why"; every listed source is cited."""
    listed = {m.group(1) for line in text.splitlines() if (m := LISTED.match(line))}
    comments = {line.partition("=")[0].strip(): line.partition("#")[2]
                for line in text.splitlines() if not line.startswith("#") and "=" in line}
    problems, cited = [], set()
    for key in sorted(set(tomllib.loads(text)) - SETTINGS):
        comment = comments[key]
        names = set(CITED.findall(comment))
        cited |= names
        if not re.search(r"source: \[|derived: \S|chosen: \S", comment):
            problems.append(f"{key}: no source")
        problems += [f"{key}: [{n}] is not listed" for n in sorted(names - listed)]
    return problems + [f"[{n}] is cited by no fact" for n in sorted(listed - cited)]


def target_files():
    return sorted((ROOT / "targets").glob("*.toml"))


def test_targets_are_complete():
    ts = T.all_targets()
    assert {"orin-nano", "orin-nano-super", "orin-nx-16gb", "agx-orin-64gb", "rtx-a5000",
            "rtx-4090", "h100"} <= set(ts)
    for name, t in ts.items():
        assert REQUIRED <= set(t), name
    nano, super_ = ts["orin-nano"], ts["orin-nano-super"]
    assert (nano["sm"], nano["arch"], nano["memory_gb"], nano["bandwidth_gbs"],
            nano["int8_tops_dense"], nano["jetpack"], nano["tensorrt"], nano["cuda"]) == \
        (87, "aarch64", 8, 68, 20, ["6.1", "6.2"], "10.3", "12.6")
    assert nano["power_modes"] == ["7W", "15W"]  # 25W and MAXN_SUPER are Super mode's
    assert (super_["bandwidth_gbs"], super_["int8_tops_dense"], super_["power_modes"][2:]) == \
        (102, 33, ["25W", "MAXN_SUPER"])
    assert {n: t["sm"] for n, t in ts.items()} == {
        "orin-nano": 87, "orin-nano-super": 87, "orin-nx-16gb": 87, "agx-orin-64gb": 87,
        "rtx-a5000": 86, "rtx-4090": 89, "h100": 90}


@pytest.mark.parametrize("path", target_files(), ids=lambda p: p.stem)
def test_every_fact_has_its_source(path):
    assert unsourced(path.read_text()) == []


def test_a_fact_without_its_source_is_found():
    # take each fact's comment away in turn: the check names that fact
    for path in target_files():
        text = path.read_text()
        for line in text.splitlines():
            key = line.partition("=")[0].strip()
            if "#" in line and not line.startswith("#") and key not in SETTINGS:
                bare = text.replace(line, line.partition("#")[0].rstrip())
                assert f"{key}: no source" in unsourced(bare), (path.name, key)
    text = (ROOT / "targets" / "orin-nano.toml").read_text()
    assert unsourced(text.replace("source: [cc]", "source: [nowhere]")) == \
        ["sm: [nowhere] is not listed", "[cc] is cited by no fact"]


def test_unknown_target_lists_the_valid_ones(run_cli):
    code, _, err = run_cli("estimate", "x", "--target", "orin-pico")
    assert code == 2 and "orin-nano" in err and "h100" in err and err.count("\n") == 1


def test_estimate_is_bytes_over_bandwidth():
    cfg = MambaConfig(d_model=2560, n_layer=64, vocab_size=50280)  # Mamba-2.8B
    nano = T.get("orin-nano")
    fp16 = T.estimate(cfg, nano, "fp16")
    w8 = T.estimate(cfg, nano, "quamba-w8a8")
    assert fp16["decode_ms_per_token"] == pytest.approx(fp16["decode_bytes_per_token"] / 68e9 * 1e3)
    # ~2.8 B parameters: about 5.5 GB at fp16, the int8 layers roughly halve it
    assert 5.0e9 < fp16["weights_bytes"] < 6.0e9 and 0.45 < w8["weights_bytes"] / fp16["weights_bytes"] < 0.6
    # lower bounds must stay below Quamba's measured Orin Nano latencies (103.56 / 60.17 ms)
    assert fp16["decode_ms_per_token"] < 103.56 and w8["decode_ms_per_token"] < 60.17
    # prefill: every prompt token through the layers, lm_head once (the last position's logits)
    twice = T.estimate(cfg, nano, "fp16", prompt_len=2048)["prefill_flops"]
    assert twice - 2 * fp16["prefill_flops"] == -2 * 50280 * 2560
    super_ = T.estimate(cfg, T.get("orin-nano-super"), "quamba-w8a8")
    assert super_["decode_ms_per_token"] == pytest.approx(w8["decode_ms_per_token"] * 68 / 102)


def test_estimate_4bit_sizes():
    # Mamba2-8B (NVIDIA's mamba2-8b-3t-4k, untied head), where Quamba2 runs W4A8 on Orin Nano
    cfg = MambaConfig(d_model=4096, n_layer=56, vocab_size=256000, arch="mamba2", d_state=128,
                      headdim=64, ngroups=8, tie_embeddings=False)
    nano = T.get("orin-nano")
    fp16 = T.estimate(cfg, nano, "fp16")["weights_bytes"]
    ratio = {(r, h): T.estimate(cfg, nano, r, h2t=h)["weights_bytes"] / fp16
             for r in ("quamba2-w8a8", "quamba2-w4a8", "quamba2-w4a16") for h in (False, True)
             if not (h and r == "quamba2-w8a8")}
    # 4 bits + one fp32 scale per 128 weights in in_proj/out_proj; the 2 x 1 B-parameter fp16
    # head keeps W4A8 at ~0.37; head-to-toe takes it under 0.3 (Quamba2's 8B checkpoints: 0.27)
    assert 0.5 < ratio["quamba2-w8a8", False] < 0.6 and 0.33 < ratio["quamba2-w4a8", False] < 0.4
    assert ratio["quamba2-w4a8", True] < 0.3 and ratio["quamba2-w4a16", True] < 0.3
    w4a8 = T.estimate(cfg, nano, "quamba2-w4a8", h2t=True)
    assert w4a8["decode_ms_per_token"] < 79.91  # a lower bound under Quamba2's measured latency
    # the fp16 SSM state cache (and int8 conv state) of Mamba-2's int8 recipes; fp32 otherwise
    conv = 3 * cfg.conv_dim
    assert w4a8["state_bytes"] == 56 * (8192 * 128 * 2 + conv)
    assert T.estimate(cfg, nano, "quamba2-w4a16")["state_bytes"] == 56 * (8192 * 128 * 4 + conv * 2)
    # W4AX: 14 of the 56 layers with W4A16's fp32 SSM and fp16 conv states, fp16 compute
    w4ax = T.estimate(cfg, nano, "quamba2-w4ax", h2t=True)
    assert w4ax["state_bytes"] == 42 * (8192 * 128 * 2 + conv) + 14 * (8192 * 128 * 4 + conv * 2)
    w4a16 = T.estimate(cfg, nano, "quamba2-w4a16", h2t=True)
    for k in ("weights_bytes", "prefill_ms"):
        assert w4ax[k] == pytest.approx(0.75 * w4a8[k] + 0.25 * w4a16[k], rel=1e-6)
    mamba1 = MambaConfig(d_model=2560, n_layer=64, vocab_size=50280)
    # Mamba-2.8B's 4-bit head-to-toe model under 0.3 too (0.28; the demo's width: 0.32)
    m1_fp16 = T.estimate(mamba1, nano, "fp16")["weights_bytes"]
    assert T.estimate(mamba1, nano, "quamba2-w4a8", h2t=True)["weights_bytes"] / m1_fp16 < 0.3
    assert T.estimate(mamba1, nano, "quamba2-w4a8")["state_bytes"] == 64 * (5120 * 16 * 4 + 3 * 5120)
    # Mamba-1's x_proj and dt_proj: int8 in W4A8 layers, fp16 in W4A16 ones (16 of 64)
    small = {r: T.estimate(mamba1, nano, r)["weights_bytes"]
             for r in ("quamba2-w4a8", "quamba2-w4a16", "quamba2-w4ax")}
    other = 64 * (5120 * (160 + 2 * 16) + 160 * 5120)  # x_proj and dt_proj weights
    assert small["quamba2-w4a16"] - small["quamba2-w4a8"] == other
    assert small["quamba2-w4ax"] - small["quamba2-w4a8"] == other / 4
    with pytest.raises(EdgeqError, match="no 4-bit weights"):
        T.estimate(cfg, nano, "quamba2-w8a8", h2t=True)


def test_estimate_cli(run_cli, hf_model):
    _, folder = hf_model("h96")
    code, out, err = run_cli("estimate", folder, "--target", "orin-nano", "--recipe", "quamba-w8a8", "--json")
    assert code == 0, err
    e = json.loads(out)
    assert e["target"] == "orin-nano" and e["decode_ms_per_token"] > 0
    # W4AX with half the layers W4A16: between W4A8 and W4A16 (2 layers: 1 each way)
    ms = {}
    for recipe, extra in (("quamba2-w4a8", []), ("quamba2-w4a16", []),
                          ("quamba2-w4ax", ["--a16-fraction", "0.5"])):
        code, out, err = run_cli("estimate", folder, "--target", "orin-nano", "--recipe", recipe,
                                 *extra, "--json")
        assert code == 0, err
        ms[recipe] = json.loads(out)
    assert ms["quamba2-w4ax"]["recipe"] == "quamba2-w4ax a16-fraction 0.5"
    assert ms["quamba2-w4ax"]["weights_bytes"] == pytest.approx(
        (ms["quamba2-w4a8"]["weights_bytes"] + ms["quamba2-w4a16"]["weights_bytes"]) / 2, abs=1)
    for args in (["--h2t"], ["--a16-fraction", "0.5"]):
        code, _, err = run_cli("estimate", folder, "--target", "orin-nano", *args)
        assert code == 2 and err.count("\n") == 1 and "fp16 quantizes nothing" in err, err
    code, out, _ = run_cli("targets")
    assert code == 0 and "orin-nano-super" in out


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="no aarch64 cross compiler (apt-get install g++-aarch64-linux-gnu)")
def test_cpu_kernels_cross_compile_for_aarch64(tmp_path):
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'targets/toolchains/aarch64-jetpack6.cmake'}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "--target", "edgeq_cpu", "-j2"], check=True,
                   capture_output=True)
    lib = build / "libedgeq_cpu.so"
    header = subprocess.run(["readelf", "-h", str(lib)], capture_output=True, text=True).stdout
    assert "AArch64" in header
    symbols = subprocess.run(["aarch64-linux-gnu-nm", "-D", "--defined-only", str(lib)],
                             capture_output=True, text=True).stdout
    for op in __import__("edgeq.ops.table", fromlist=["OPS"]).OPS:
        assert op.c_symbol in symbols
