"""User-facing errors: one line that says what is wrong and what to do. The CLI prints the
message and exits with code 2."""
import errno
from contextlib import contextmanager


class EdgeqError(Exception):
    pass


# what a write fails with when the output's disk or quota is full, or the file too large
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


@contextmanager
def writing(output):
    """Around the writing of `output`: a full disk (an OSError, or the SafetensorError that
    safetensors raises for it) becomes one line that names the output, not a temp file."""
    try:
        yield
    except OSError as e:
        if e.errno not in _FULL:
            raise
        raise EdgeqError(f"{output}: cannot write it ({e.strerror}); free some space on its disk "
                         "or choose another output") from None
    except Exception as e:
        if type(e).__name__ != "SafetensorError":
            raise
        raise EdgeqError(f"{output}: cannot write it ({str(e).split(': ', 1)[-1]}); check the "
                         "free space on its disk or choose another output") from None
