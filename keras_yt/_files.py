"""Atomic file writes (private): a temporary file next to the target, then `os.replace`.

Temporary files are named `.tmp-<name>.<pid>.<random>`; one left behind by a killed process is
removed by the next write to the same target (when its process is gone), so crashes leave
neither a half-written target nor, for long, a stray file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

_PREFIX = ".tmp-"


def _temp_prefix(path: str) -> str:
    return f"{_PREFIX}{os.path.basename(path)}."


def process_alive(pid: int) -> bool:
    """Whether process `pid` may still be running (the writer of a temporary file)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temps(path: str | os.PathLike) -> list[str]:
    """Removes temporary files of earlier writes to `path` whose process is gone.

    Returns:
        The paths removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if not name.startswith(prefix):
                continue
            pid = name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and not process_alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))
                    removed.append(os.path.join(folder, name))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path next to `path`; on success it replaces `path` atomically.

    The body writes the temporary file (and closes it). If the body raises, the temporary file
    is removed and `path` is left untouched. The data is fsync'ed before the rename.

    Args:
        path: the destination.
        suffix: suffix of the temporary name (some writers check the extension, e.g. `.keras`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=suffix,
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
