"""This host's memory as the kernel reports it: the process's peak resident set, and
/proc/meminfo's figures (on a Jetson, the DRAM the CPU and GPU share)."""
from __future__ import annotations

import resource
import sys


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux and macOS report it in different units)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def meminfo(key: str) -> int | None:
    """Bytes from /proc/meminfo (Linux; on a Jetson, the shared DRAM), None where it has none."""
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return kib * 1024


def available_memory() -> int | None:
    """Bytes this host can still give (MemAvailable)."""
    return meminfo("MemAvailable")
