"""Benchmark a bundle on a device over SSH with the system's ssh and scp: copy the bundle, build
the engine there if it has none, run `edgeq bench` there and fetch the report. Host keys are
checked (StrictHostKeyChecking=yes: the device must be in known_hosts), every remote argument is
quoted, and nothing secret is logged (keys stay with ssh)."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from ..bundle_files import MANIFEST
from ..errors import EdgeqError
from ..jsonfile import parse_json, read_json


class Remote:
    def __init__(self, host: str, port: int | None = None, identity: Path | None = None,
                 ssh_options: list[str] | None = None, log=print):
        if not host or host.startswith("-"):
            raise EdgeqError(f"--host {host!r}: give user@device")
        self.host, self.log = host, log
        self.opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if identity:
            self.opts += ["-i", str(identity)]
        for o in ssh_options or []:
            self.opts += ["-o", o]
        self.port = port

    def _run(self, cmd: list[str], what: str) -> str:
        self.log(f"$ {' '.join(shlex.quote(c) for c in cmd)}")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise EdgeqError(f"{what} on {self.host} failed: {last}")
        return r.stdout

    def ssh(self, argv: list[str], what: str) -> str:
        port = ["-p", str(self.port)] if self.port else []
        return self._run(["ssh", *self.opts, *port, self.host, "--", shlex.join(argv)], what)

    def put(self, folder: Path, rdir: str, what: str) -> None:
        """Copy a local folder's contents into rdir on the device."""
        self._scp(f"{folder.absolute()}/.", f"{self.host}:{rdir}", what)

    def get(self, rdir: str, folder: Path, what: str) -> None:
        """Copy rdir's contents on the device into a local folder."""
        self._scp(f"{self.host}:{rdir}/.", str(folder.absolute()), what)

    def _scp(self, src: str, dst: str, what: str) -> None:
        # local operands absolute: scp reads `mamba:w8a8` (pathlib drops a `./`) as a host;
        # `--`: no operand is an option
        port = ["-P", str(self.port)] if self.port else []
        self._run(["scp", "-q", "-r", *self.opts, *port, "--", src, dst], what)


def bench_remote(bundle: Path, remote: Remote, bench_args: list[str], out: Path,
                 edgeq: str = "edgeq", remote_dir: str | None = None) -> dict:
    """edgeq is the command on the device, words a shell would split ("python3 -m edgeq.cli"),
    each passed on quoted like every remote argument."""
    from ..bundle import manifest
    try:
        edgeq_cmd = shlex.split(edgeq)
    except ValueError as e:  # an unclosed quote
        raise EdgeqError(f"--remote-edgeq {edgeq!r}: {e}") from None
    if not edgeq_cmd:
        raise EdgeqError("--remote-edgeq is empty; give the edgeq command on the device")
    manifest.verify(bundle)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", bundle.resolve().name)
    rdir = remote_dir or f".cache/edgeq/bundles/{name}-{manifest.sha256(bundle / MANIFEST)[:12]}"
    if not re.fullmatch(r"[A-Za-z0-9._/~-]+", rdir):  # scp paths are not shell-quoted (SFTP mode)
        raise EdgeqError(f"remote folder {rdir!r}: use letters, digits and . _ / - only")
    try:  # an earlier run's copy (the folder is named by bundle.json's hash), maybe with its engine
        remote.ssh([*edgeq_cmd, "verify", rdir], "checking an earlier copy")
        remote.log(f"reusing {remote.host}:{rdir}")
    except EdgeqError:
        remote.ssh(["mkdir", "-p", rdir], "creating the bundle folder")
        remote.put(bundle, rdir, "copying the bundle")
        remote.ssh([*edgeq_cmd, "verify", rdir], "verifying the bundle")
    where = f"{remote.host}:{rdir}/bundle.json"
    there = manifest.check_shape(parse_json(remote.ssh(["cat", f"{rdir}/bundle.json"],
                                                       "reading the bundle's manifest"), where), where)
    if not there["engine"].get("built") and "--backend" in bench_args and \
            bench_args[bench_args.index("--backend") + 1] == "trt":
        remote.ssh([*edgeq_cmd, "engine", rdir], "building the engine")
    report = f"{rdir}.report"  # beside the bundle: a file inside would fail the next verify
    remote.ssh([*edgeq_cmd, "bench", rdir, *bench_args, "--report-dir", report], "benchmarking")
    out.mkdir(parents=True, exist_ok=True)
    remote.get(report, out, "fetching the report")
    return read_json(out / "bench.json")
