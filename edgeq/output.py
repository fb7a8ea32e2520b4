"""Outputs written whole: into a temp folder beside the output (or a temp file beside a file in
a bundle), renamed into place at the end, so a failure, Ctrl-C or SIGTERM leaves nothing
half-written; and the check that an output is new, before any slow work. The temp folder's
name holds the writer's pid: a write of the same output later removes those of writers that
were killed (SIGKILL, the OOM killer), which had no chance to clean up."""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath

from .errors import EdgeqError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(out: Path) -> None:
    """Remove the temp folders of OUT whose writer is gone, saying so on stderr. Only this
    host's pids are known, so a folder on a shared disk may be another host's: the pid of a
    live process here keeps it."""
    prefix = f".{out.name}."
    for p in out.parent.glob(glob.escape(prefix) + "*"):
        m = re.fullmatch(r"(\d+)\.[A-Za-z0-9_]{8}", p.name[len(prefix):])
        if m and p.is_dir() and not p.is_symlink() and int(m[1]) != os.getpid() \
                and not _alive(int(m[1])):
            shutil.rmtree(p, ignore_errors=True)
            print(f"edgeq: removed {p}, the temp folder of a write of {out} that was killed "
                  f"(pid {m[1]})", file=sys.stderr)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(out: Path) -> Path:
    """The folder a new output OUT goes into, if OUT is new and the folder writable: never over
    an earlier result."""
    out = Path(out)
    if out.exists():
        raise EdgeqError(f"{out}: already exists; remove it or choose another -o")
    parent = out.parent
    if not parent.is_dir():
        raise EdgeqError(f"{parent}: no such folder; create it or choose another -o")
    if not os.access(parent, os.W_OK):
        raise EdgeqError(f"{parent}: not writable; choose another -o")
    return parent


@contextlib.contextmanager
def writing(out: Path, move: bool = True):
    """Yield a fresh temp folder beside OUT, with the permissions of a folder made by mkdir
    (mkdtemp makes 0700). move: rename the folder to OUT at the end; else the caller moves what
    it wrote. Errors on the way name OUT, never the temp folder."""
    out = Path(out)
    remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if move:
            try:
                os.replace(tmp, out)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                    raise EdgeqError(f"{out}: appeared while this wrote it (another process?); "
                                     "remove it or choose another -o") from None
                raise
    except OSError as e:
        raise EdgeqError(_message(e, tmp, out)) from None
    except EdgeqError as e:  # a nested writer's message names a path in this temp folder
        raise EdgeqError(str(e).replace(str(tmp), str(out))) from None
    except Exception as e:  # safetensors reports a failed write as its own error, not OSError
        if type(e).__name__ != "SafetensorError":
            raise
        raise EdgeqError(f"{out}: {str(e).split(': ', 1)[-1]}; free some space or choose "
                         "another -o") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_inside(root: Path, name: str, data: bytes) -> Path:
    """Write root/name as a new regular file: a temp file renamed over the name, so a link
    there (a symbolic or a hard one) is replaced, never written through; a folder on the way
    that is a link is refused (only bundles are written into, so the remedy names them)."""
    path = root / name
    for folder in reversed(PurePosixPath(name).parents[:-1]):
        if (root / folder).is_symlink():
            raise EdgeqError(f"{root}: {folder} is a symbolic link; build or copy the bundle again")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _message(e: OSError, tmp: Path, out: Path) -> str:
    what = f"{out}: {e.strerror}"
    if e.filename and Path(e.filename) != tmp and tmp in Path(e.filename).parents:
        what += f" (writing {Path(e.filename).relative_to(tmp)})"
    elif e.filename and Path(e.filename) != tmp:
        what = f"{e.filename}: {e.strerror}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return what + "; free some space or choose another -o"
    return what + "; check the path and its permissions"
