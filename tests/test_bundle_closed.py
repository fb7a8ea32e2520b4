"""Bundles are closed and checked wherever they are used (issue 23, items 3, 4, 5, 8): verify
refuses links and unlisted entries, engine writes never go through a link, bundle.json of the
wrong shape is one line, scp operands are paths, bench refuses what it cannot hold, and
generate/eval/bench verify a bundle they are given."""
import json
import os
import resource
import shlex
import shutil
import sys
from pathlib import Path

import pytest

import fake_trt
from edgeq.bundle import manifest
from edgeq.bundle_files import MANIFEST
from edgeq.errors import EdgeqError
from edgeq.output import write_inside
from test_bundle import bundle, sshd  # noqa: F401  (fixtures)


@pytest.fixture
def copy(bundle, tmp_path):  # noqa: F811
    shutil.copytree(bundle, tmp_path / "copy")
    return tmp_path / "copy"


def _outside(tmp_path, name="outside"):
    path = tmp_path / name
    path.write_bytes(b"keep")
    return path


def _link_listed_file(copy, tmp_path):
    # the same bytes, so only the link itself can give it away
    shutil.copy(copy / "model.onnx", tmp_path / "model.onnx")
    (copy / "model.onnx").unlink()
    (copy / "model.onnx").symlink_to(tmp_path / "model.onnx")


def _link_folder(copy, tmp_path):
    shutil.move(copy / "plugins-src", tmp_path / "plugins-src")
    (copy / "plugins-src").symlink_to(tmp_path / "plugins-src")


def _link_manifest(copy, tmp_path):
    shutil.move(copy / "bundle.json", tmp_path / "bundle.json")
    (copy / "bundle.json").symlink_to(tmp_path / "bundle.json")


@pytest.mark.parametrize("damage,fragment", [
    (_link_listed_file, "model.onnx is a symbolic link"),
    (_link_folder, "plugins-src is a symbolic link"),
    (_link_manifest, "bundle.json is a symbolic link"),
    (lambda c, t: (c / "extra").symlink_to(t), "extra is a symbolic link"),
    (lambda c, t: (c / "plugins").symlink_to(t), "plugins is a symbolic link"),  # engine writes here
    (lambda c, t: (c / "gone").symlink_to(t / "nothing"), "gone is a symbolic link"),
    (lambda c, t: (c / "empty").mkdir(), "empty/ is not part of the bundle"),
    (lambda c, t: (c / "plugins-src/new").mkdir(), "plugins-src/new/ is not part of the bundle"),
    (lambda c, t: (c / "plugins").mkdir(), "plugins/ is not part of the bundle"),  # no library
    (lambda c, t: os.mkfifo(c / "fifo"), "fifo is not a regular file"),
])
def test_verify_refuses_links_and_unlisted_entries(copy, tmp_path, run_cli, damage, fragment):
    assert run_cli("verify", copy)[0] == 0
    damage(copy, tmp_path)
    code, _, err = run_cli("verify", copy)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_verify_walks_folders_deeper_than_the_stack(copy, run_cli):
    chain = [copy / "d"]
    for _ in range(1100):  # os.makedirs and shutil.rmtree recurse: a loop each way
        chain[-1].mkdir()
        chain.append(chain[-1] / "d")
    code, _, err = run_cli("verify", copy)
    for folder in reversed(chain[:-1]):
        folder.rmdir()
    assert code == 2 and err.count("\n") == 1 and ": d/ is not part of the bundle" in err, err


def _manifest(bundle, **fields):  # noqa: F811
    """bundle.json with fields replaced (None: removed), its sha256 made to match."""
    m = json.loads((bundle / MANIFEST).read_text())
    for k, v in fields.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    m["sha256"] = manifest._digest(m)
    return json.dumps(m)


@pytest.mark.parametrize("fields,fragment", [
    ({"files": ["model.onnx"]}, "`files` is a list, not an object"),
    ({"files": None}, "`files` is missing"),
    ({"target": None}, "`target` is missing"),
    ({"plugins": "sources"}, "`plugins` is a str, not an object"),
    ({"target": {"name": "orin-nano"}}, "`target` lacks its name or sm"),
    ({"files": {"../model.onnx": "0" * 64}}, "not a relative path and a sha256"),
    ({"files": {"model.onnx": None}}, "not a relative path and a sha256"),
])
def test_bundle_json_of_the_wrong_shape(copy, run_cli, fields, fragment):
    (copy / MANIFEST).write_text(_manifest(copy, **fields))
    code, _, err = run_cli("verify", copy)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_bundle_json_too_deep_or_too_large(bundle, copy, run_cli, monkeypatch):  # noqa: F811
    (copy / MANIFEST).write_text('{"format": "edgeq-bundle/4", "x": ' + "[" * 100000
                                      + "]" * 100000 + "}")
    code, _, err = run_cli("verify", copy)
    assert code == 2 and err.count("\n") == 1 and "nested too deep" in err, err
    (copy / MANIFEST).write_text(_manifest(bundle))
    monkeypatch.setattr("edgeq.jsonfile.MAX_BYTES", 1000)
    code, _, err = run_cli("verify", copy)
    assert code == 2 and err.count("\n") == 1 and "more than the 1000" in err, err


def test_write_inside_replaces_links_and_refuses_linked_folders(tmp_path):
    root = tmp_path / "b"
    root.mkdir()
    outside = _outside(tmp_path)
    (root / "model.engine").symlink_to(outside)
    os.link(_outside(tmp_path, "hard"), root / "timing.cache")
    write_inside(root, "model.engine", b"engine")
    write_inside(root, "timing.cache", b"cache")
    assert outside.read_bytes() == (tmp_path / "hard").read_bytes() == b"keep"
    assert not (root / "model.engine").is_symlink()
    assert (root / "model.engine").read_bytes() == b"engine"
    assert (root / "timing.cache").read_bytes() == b"cache"
    (tmp_path / "elsewhere").mkdir()
    (root / "plugins").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EdgeqError, match="plugins is a symbolic link"):
        write_inside(root, "plugins/lib.so", b"x")
    assert not list((tmp_path / "elsewhere").iterdir())
    assert sorted(p.name for p in root.iterdir()) == ["model.engine", "plugins", "timing.cache"]


def test_engine_refuses_links_and_writes_through_none(copy, tmp_path, run_cli, monkeypatch):
    from edgeq import targets
    from edgeq.trt.engine import build_engine
    (copy / "model.engine").symlink_to(_outside(tmp_path))
    code, _, err = run_cli("engine", copy)  # before TensorRT is even needed
    assert code == 2 and "model.engine is a symbolic link" in err, err
    # build_engine itself (which verify guards): its three files replace the links in the bundle
    (copy / "engine_build.log").symlink_to(_outside(tmp_path, "log"))
    (copy / "timing.cache").symlink_to(_outside(tmp_path, "cache"))
    (copy / "plugins").mkdir()
    (copy / "plugins/libedgeq_trt_plugins.so").write_bytes(fake_trt.LIBRARY)  # loadable
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt.modules(fake_trt.Cuda()))
    build_engine(copy, targets.get("orin-nano"), lambda line: None)
    for name in ("outside", "log", "cache"):
        assert (tmp_path / name).read_bytes() == b"keep", name
    for name in ("model.engine", "engine_build.log", "timing.cache"):
        assert (copy / name).is_file() and not (copy / name).is_symlink(), name


# ---- generate, eval and bench verify the bundle they are given (item 8) ----

@pytest.mark.parametrize("given", ["folder", "graph"])
def test_generate_eval_bench_verify_the_bundle(copy, tmp_path, run_cli, given):
    source = copy if given == "folder" else copy / "model.onnx"
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "in": 1, "the": 2, "beginning": 3}, "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    text = tmp_path / "held-out.txt"
    text.write_text("in the beginning " * 20)
    commands = [["generate", source, "--prompt-ids", "1,2,3", "--max-new-tokens", "3", "--json"],
                ["eval", source, "--ppl", text, "--seq-len", "16", "--tokenizer",
                 tmp_path / "tokenizer.json"],
                ["bench", source, "--prompt-len", "4", "--gen-len", "2", "--iters", "1",
                 "--warmup", "0", "--json"]]
    for args in commands:
        code, _, err = run_cli(*args)
        assert code == 0, (args, err)
    code, out, _ = run_cli(*commands[0])
    assert len(json.loads(out)["ids"]) == 3
    with open(copy / "quant.json", "a") as f:  # a file the graph does not need: still refused
        f.write(" ")
    for args in commands:
        code, _, err = run_cli(*args)
        assert code == 2 and err.count("\n") == 1, (args, err)
        assert "quant.json does not match" in err, (args, err)


def test_a_bundle_runs_on_ort_only(bundle, run_cli):  # noqa: F811
    for cmd in ("generate", "bench"):
        prompt = ["--prompt-ids", "1"] if cmd == "generate" else []
        code, _, err = run_cli(cmd, bundle, "--backend", "torch", *prompt)
        assert code == 2 and err.count("\n") == 1 and "not a torch model" in err, err


# ---- scp operands (item 4) ----

STUB = """#!{python}
import json, os, sys
argv = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *argv]) + "\\n")
if os.path.basename(sys.argv[0]) == "scp":
    dst = argv[-1]
    if "@" in dst:  # the copy: the next verify passes
        open({log!r} + ".copied", "w").close()
    else:  # fetching the report
        os.makedirs(dst, exist_ok=True)
        with open(os.path.join(dst, "bench.json"), "w") as f:
            json.dump({{"backend": "ort"}}, f)
    sys.exit(0)
command = argv[-1]
if " verify " in f" {{command}} " and not os.path.exists({log!r} + ".copied"):
    sys.exit(1)  # no earlier copy: scp it
if command.startswith("cat "):
    print(open({manifest!r}).read())
"""


def test_scp_operands_are_paths_never_hosts(bundle, tmp_path, run_cli, monkeypatch):  # noqa: F811
    shutil.copytree(bundle, tmp_path / "mamba:w8a8")
    bin_, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_.mkdir()
    for name in ("ssh", "scp"):
        (bin_ / name).write_text(STUB.format(python=sys.executable, log=str(log),
                                             manifest=str(bundle / MANIFEST)))
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("bench", "./mamba:w8a8", "--host", "me@jetson", "--json")
    assert code == 0, err
    scp = [c for c in map(json.loads, log.read_text().splitlines()) if c[0] == "scp"]
    rdir = f".cache/edgeq/bundles/mamba_w8a8-{manifest.sha256(bundle / MANIFEST)[:12]}"
    assert [c[-3:] for c in scp] == [
        ["--", f"{tmp_path}/mamba:w8a8/.", f"me@jetson:{rdir}"],
        ["--", f"me@jetson:{rdir}.report/.", f"{tmp_path}/mamba:w8a8-jetson-report"]]
    assert json.loads(out) == {"backend": "ort"}
    assert (tmp_path / "mamba:w8a8-jetson-report/bench.json").is_file()


def test_scp_of_a_colon_name_over_real_ssh(bundle, sshd, tmp_path, run_cli, monkeypatch):  # noqa: F811
    import functools
    import getpass

    from edgeq.bench import remote
    monkeypatch.setattr(remote, "Remote", functools.partial(
        remote.Remote, ssh_options=[f"UserKnownHostsFile={sshd['known_hosts']}"]))
    monkeypatch.setattr(remote, "bench_remote", functools.partial(
        remote.bench_remote, remote_dir=str(tmp_path / "remote")))
    shutil.copytree(bundle, tmp_path / "mamba:w8a8")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        "bench", "./mamba:w8a8", "--host", f"{getpass.getuser()}@127.0.0.1", "--port", sshd["port"],
        "--identity", sshd["key"], "--remote-edgeq", f"{shlex.quote(sys.executable)} -m edgeq.cli",
        "--prompt-len", "4", "--gen-len", "2", "--iters", "1", "--warmup", "0", "--json")
    assert code == 0, err
    assert (tmp_path / "remote/bundle.json").is_file()
    report = tmp_path / "mamba:w8a8-127.0.0.1-report/bench.json"
    assert json.loads(report.read_text())["backend"] == "ort" == json.loads(out)["backend"]


# ---- bench refuses what it cannot hold (item 5) ----

def test_check_fits_counts_states_logits_and_activations():
    from edgeq.bench.run import check_fits, needs
    from edgeq.models import MambaConfig
    cfg = MambaConfig(d_model=2560, n_layer=64, vocab_size=50280)  # mamba-2.8b
    want = {"ids": 8 * 8 * 1024,
            "states": 2 * 4 * 8 * 64 * (5120 * 16 + 3 * 5120),  # in and out, fp32
            "logits": 4 * 8 * 50280,
            "activations": 4 * 8 * 1024 * (2 * 2560 + 4 * 5120)}
    want["runtime"] = 3 * want["activations"]
    assert needs(cfg, 1024, 8) == want
    check_fits(cfg, 1024, 8, sum(want.values()), 8 << 30)  # exactly enough: no error
    with pytest.raises(EdgeqError, match=r"batch 8 needs over 3\.5 GiB \(ids 0\.0, states 0\.4, "
                       r"logits 0\.0, activations 0\.8, runtime 2\.3\), and this host has 3\.5 GiB "
                       r"available of 8\.0 GiB"):
        check_fits(cfg, 1024, 8, sum(want.values()) - 1, 8 << 30)
    m2 = MambaConfig(d_model=64, n_layer=2, vocab_size=301, arch="mamba2", d_state=16, headdim=16,
                     ngroups=2)  # conv over x, B and C; dt per head
    assert needs(m2, 10, 1)["activations"] == 4 * 10 * (2 * 64 + 2 * 128 + (128 + 64) + 8)
    assert needs(m2, 10, 1)["states"] == 2 * 4 * 2 * (128 * 16 + 3 * 192)


def test_bench_refuses_a_huge_batch_without_allocating_it(bundle, run_cli):  # noqa: F811
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, _, err = run_cli("bench", bundle, "--batch", "1000000")
    assert code == 2 and err.count("\n") == 1, err
    assert "at batch 1000000 needs over" in err and "GiB available of" in err and "lower --batch" in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2**20  # KiB: under 1 GiB
