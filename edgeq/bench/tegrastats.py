"""Board power from tegrastats on a Jetson (VDD_IN: the whole module's input rail)."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

RAIL = re.compile(r"\bVDD_IN (\d+)mW")


def parse(lines) -> list[int]:
    """Instantaneous VDD_IN power (mW) of each tegrastats line that has it."""
    return [int(m.group(1)) for line in lines if (m := RAIL.search(line))]


class Recorder:
    """Runs `tegrastats --interval 100` while a benchmark runs; a no-op elsewhere."""

    def __init__(self, interval_ms: int = 100):
        self.interval, self.proc, self.log = interval_ms, None, None

    def start(self) -> None:
        exe = shutil.which("tegrastats")
        if exe is None:
            return
        self.log = Path(tempfile.mkstemp(suffix=".tegrastats")[1])
        self.proc = subprocess.Popen([exe, "--interval", str(self.interval), "--logfile", str(self.log)])
        self.t0 = time.perf_counter()

    def stop(self) -> dict | None:
        if self.proc is None:
            return None
        seconds = time.perf_counter() - self.t0
        self.proc.terminate()
        self.proc.wait(timeout=5)
        mw = parse(self.log.read_text().splitlines())
        self.log.unlink()
        if not mw:
            return None
        avg_w = sum(mw) / len(mw) / 1e3
        return {"power_w": avg_w, "energy_j": avg_w * seconds, "power_samples": len(mw)}
