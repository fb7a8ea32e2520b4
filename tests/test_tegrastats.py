"""Board power on a Jetson: the bench runs tegrastats (here a stand-in on PATH that writes Orin
Nano lines as the real one does) and reports power, energy and tokens per joule."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

from edgeq.bench import tegrastats

# an Orin Nano line (JetPack 6): VDD_IN is the module's input, now/average
LINE = ("RAM 3184/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@1510,8%@1510,5%@1510,"
        "7%@1510,3%@1510,4%@1510] GR3D_FREQ 45% cpu@48.5C soc2@47.2C gpu@47.9C tj@48.5C "
        "VDD_IN 5000mW/4800mW VDD_CPU_GPU_CV 1200mW/1100mW VDD_SOC 1500mW/1500mW")

# takes exactly what edgeq runs, `tegrastats --interval <ms> --logfile <file>` (as the real one's
# usage names them), writes one line each interval, notes its pid and log for the test
FAKE = f"""#!{sys.executable}
import os, signal, sys, time
args = sys.argv[1:]
if len(args) != 4 or args[0] != "--interval" or args[2] != "--logfile":
    sys.exit("usage: tegrastats --interval <millisec> --logfile <filename>")
with open(os.environ["FAKE_TEGRASTATS_RECORD"], "a") as f:
    f.write(f"{{os.getpid()}} {{args[1]}} {{args[3]}}\\n")
signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("FAKE_TEGRASTATS_DEAF")
              else lambda *_: sys.exit(0))
with open(args[3], "a") as out:
    for _ in range(600):  # a minute at most: one a broken recorder leaves goes away
        time.sleep(int(args[1]) / 1e3)
        out.write(time.strftime("%m-%d-%Y %H:%M:%S ") + {LINE!r} + "\\n")
        out.flush()
"""


@pytest.fixture
def jetson(tmp_path, monkeypatch):
    """tegrastats on PATH, as on a Jetson; returns the runs it saw as (pid, interval, log)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "tegrastats").write_text(FAKE)
    (bin_ / "tegrastats").chmod(0o755)
    record = tmp_path / "runs"
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TEGRASTATS_RECORD", str(record))

    def runs():
        lines = record.read_text().splitlines() if record.exists() else []
        return [(int(p), i, Path(log)) for p, i, log in (line.split() for line in lines)]
    return runs


def wait_for(ready, until: float) -> None:
    while not ready() and time.monotonic() < until:
        time.sleep(0.01)


def sampled(runs) -> bool:
    """Whether tegrastats has written a line to its log."""
    return any(log.exists() and log.read_text() for _, _, log in runs)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # a zombie (ended, never waited for) still counts as there
    except ProcessLookupError:
        return True
    return False


def test_parse_takes_vdd_in_now():
    lines = [LINE, "garbage", "VDD_IN 7129mW/6230mW"]
    assert tegrastats.parse(lines) == [5000, 7129]


def test_bench_on_a_jetson_reports_power_and_energy(jetson, run_cli, hf_model, monkeypatch):
    from edgeq.runtime.backends import OrtBackend
    forward, until = OrtBackend.forward, time.monotonic() + 120

    def first_waits(self, *args, **kw):  # for tegrastats' first sample: one on any host
        wait_for(lambda: sampled(jetson()), until)
        return forward(self, *args, **kw)
    monkeypatch.setattr(OrtBackend, "forward", first_waits)
    batch, gen_len, iters = 1, 16, 2
    t0 = time.perf_counter()
    code, out, err = run_cli("bench", hf_model("h96")[1], "--backend", "ort", "--prompt-len", "8",
                             "--gen-len", gen_len, "--warmup", 0, "--iters", iters, "--json")
    wall = time.perf_counter() - t0
    assert code == 0, err
    r = json.loads(out)
    [(pid, interval, log)] = jetson()
    assert interval == "100" and log.suffix == ".tegrastats"
    assert gone(pid) and not log.exists()  # tegrastats ended and its log removed
    assert r["power_w"] == pytest.approx(5.0) and r["power_samples"] >= 1  # VDD_IN now, not avg
    # energy is power over the timed runs: at least their total, little more than it
    seconds = r["energy_j"] / r["power_w"]
    timed = iters * batch * gen_len / r["tokens_per_s"]
    assert timed <= seconds < min(1.2 * timed + 0.1, wall)
    assert r["tokens_per_joule"] == pytest.approx(iters * batch * gen_len / r["energy_j"])


def test_a_failed_bench_leaves_no_tegrastats(jetson, hf_model):
    from edgeq.bench.run import bench
    from edgeq.sources import open_backend
    backend = open_backend(str(hf_model("h96")[1]), "ort")[0]
    forward, calls = backend.forward, []

    def failing(*args, **kw):  # the third forward of the first (timed) run fails, tegrastats up
        calls.append(1)
        if len(calls) == 3:
            wait_for(jetson, time.monotonic() + 120)
            raise RuntimeError("device lost")
        return forward(*args, **kw)
    backend.forward = failing
    with pytest.raises(RuntimeError, match="device lost"):
        bench(backend, prompt_len=4, gen_len=8, warmup=0, iters=2)
    [(pid, _, log)] = jetson()
    assert gone(pid) and not log.exists()


def test_a_tegrastats_deaf_to_sigterm_is_killed(jetson, monkeypatch):
    monkeypatch.setenv("FAKE_TEGRASTATS_DEAF", "1")
    with tegrastats.Recorder() as power:
        power.start()
        wait_for(lambda: sampled(jetson()), time.monotonic() + 120)
        assert power.stop()["power_w"] == pytest.approx(5.0)
    [(pid, _, log)] = jetson()
    assert gone(pid) and not log.exists()


def test_no_tegrastats_no_power(run_cli, hf_model, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # not a Jetson
    code, out, err = run_cli("bench", hf_model("h96")[1], "--backend", "torch", "--prompt-len", "4",
                             "--gen-len", "2", "--iters", "1", "--json")
    assert code == 0, err
    assert not {"power_w", "energy_j", "tokens_per_joule"} & set(json.loads(out))
