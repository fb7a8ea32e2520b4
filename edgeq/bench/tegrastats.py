"""Board power from tegrastats on a Jetson (VDD_IN: the whole module's input rail, on Orin Nano
and Orin NX; AGX Orin's tegrastats names its rails otherwise, so it reports no power)."""
from __future__ import annotations

import os
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
    """Runs `tegrastats --interval 100 --logfile F` while a benchmark runs; a no-op elsewhere.
    As a context manager it ends tegrastats and removes its log however the benchmark ends."""

    def __init__(self, interval_ms: int = 100):
        self.interval, self.proc, self.log = interval_ms, None, None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        exe = shutil.which("tegrastats")
        if exe is None:
            return
        fd, log = tempfile.mkstemp(suffix=".tegrastats")
        os.close(fd)
        self.log = Path(log)
        self.proc = subprocess.Popen([exe, "--interval", str(self.interval), "--logfile", log])
        self.t0 = time.perf_counter()

    def stop(self) -> dict | None:
        """Mean power since start and energy over that time; None off a Jetson or without a
        VDD_IN sample."""
        if self.proc is None:
            return None
        seconds = time.perf_counter() - self.t0
        self._end()
        mw = parse(self.log.read_text().splitlines())
        self.close()
        if not mw:
            return None
        avg_w = sum(mw) / len(mw) / 1e3
        return {"power_w": avg_w, "energy_j": avg_w * seconds, "power_samples": len(mw)}

    def close(self) -> None:
        if self.proc is not None:
            self._end()
            self.proc = None
        if self.log is not None:
            self.log.unlink(missing_ok=True)
            self.log = None

    def _end(self) -> None:
        self.proc.terminate()  # does nothing once it has exited and been waited for
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
