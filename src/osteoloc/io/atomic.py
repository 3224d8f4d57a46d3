"""Write-then-rename, so that a killed job never leaves a half-written file that looks complete.

The temporary file is `.<name>.<host>.<pid>.<random>.part` beside the target: a write killed before its
rename (SIGKILL, a node lost) leaves one behind, and the next write of the same target removes it once its
writer is known to be gone (same host and the process has ended, or older than STALE_SECONDS).
"""

import contextlib
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

STALE_SECONDS = 24 * 3600  # a .part of another host (or of an older naming) this old has no live writer


def _host():
    return socket.gethostname().split(".")[0] or "host"


def _writer_gone(part, host):
    """Whether the writer of the temporary file `part` has ended (its name holds its host and pid)."""
    fields = part.name.split(".")  # "", name parts..., host, pid, random, "part"
    pid = fields[-3] if len(fields) >= 5 else ""
    if fields[-4:-3] == [host] and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    with contextlib.suppress(FileNotFoundError):
        return time.time() - part.stat().st_mtime > STALE_SECONDS
    return False


def remove_stale_parts(path):
    """Remove the temporary files that failed or killed writes of `path` left behind; returns their names."""
    path, host = Path(path), _host()
    removed = []
    for part in path.parent.glob(f".{path.name}.*.part"):
        if _writer_gone(part, host):
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
                removed.append(part.name)
                log.warning("removed %s, left behind by a failed or killed write of %s", part.name, path.name)
    return removed


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds (the
    temporary file is removed otherwise, and stale ones of earlier killed writes first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the result the mode any other new file would get (umask applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_csv(df, path, **kwargs):
    """Write a DataFrame as CSV atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def write_text(text, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
