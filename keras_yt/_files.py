"""Atomic file writes (private): a temporary file next to the target, then `os.replace`.

Temporary files are named `.tmp-<name>.<pid>.<random>` (a folder of that name for writers that
make temporary files of their own, such as Keras); any left behind by a killed process is
removed by the next write into the same folder (when its process is gone), so crashes leave
neither a half-written target nor, for long, a stray file. `h5_writer` writes HDF5 files so
that a failed write (full disk, file-size limit) is a Python error, never a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

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


# `.tmp-<target>.<pid>.<8 random characters of mkstemp>[suffix]`
_TEMP_NAME = re.compile(r"\.(\d+)\.[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)?$")


def _temp_pid(name: str) -> int | None:
    """The writer's pid in a temporary name, or None for other names."""
    if not name.startswith(_PREFIX):
        return None
    match = _TEMP_NAME.search(name, len(_PREFIX))
    return int(match.group(1)) if match else None


def clean_stale_temps(path: str | os.PathLike) -> list[str]:
    """Removes temporary files (and folders) of earlier writes next to `path` whose process is
    gone: those of any target in the folder, not only of `path`.

    Returns:
        The paths removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            pid = _temp_pid(name)
            if pid is None or process_alive(pid):
                continue
            entry = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.path.isdir(entry) and not os.path.islink(entry):
                    shutil.rmtree(entry)
                else:
                    os.remove(entry)
                removed.append(entry)
    return removed


def terminate_as_interrupt() -> None:
    """Makes SIGTERM / SIGHUP raise KeyboardInterrupt in the main thread, so that the clean-up
    of atomic writes (removing temporary files) runs when a command is stopped that way."""

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            signal.signal(getattr(signal, name), interrupt)


def current_umask() -> int:
    """The process's umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_folder(path: Path, aside: str) -> Iterator[Path]:
    """Yields a new folder staged beside `path`, swapped in at `path` when the block succeeds.

    The stage is `.NAME.staging-PID-*` beside `path` (with the usual folder mode, not
    `mkdtemp`'s 0700). When the block succeeds an existing `path` is moved aside (to
    `.NAME.old-PID-*/ASIDE`), the stage is renamed to `path` and what was set aside is
    removed; when it fails the stage is removed and `path` is left as it was. A writer killed
    on the way leaves folders that `remove_stale_stages(path, aside)` cleans up.

    Args:
        path: the folder to write (its parent must exist).
        aside: the name an existing `path` takes in its `.old-` folder while it is swapped.

    Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "out"
    >>> with staged_folder(path, "previous") as stage:
    ...     _ = (stage / "a.txt").write_text("a")
    >>> sorted(p.name for p in path.iterdir())
    ['a.txt']
    """
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.staging-{os.getpid()}-",
                                  dir=path.parent))
    os.chmod(stage, 0o777 & ~current_umask())
    try:
        yield stage
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-",
                                        dir=path.parent))
            os.replace(path, old / aside)
        os.replace(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_stages(path: Path, aside: str) -> None:
    """Removes what `staged_folder(path, aside)` writers that are gone left beside `path`.

    A folder of a writer killed between its two renames is put back from its `.old-` folder
    (where it is named `aside`) when `path` is missing.
    """
    for kind in ("staging", "old"):
        prefix = f".{path.name}.{kind}-"
        for entry in sorted(path.parent.glob(f"{prefix}*")):
            pid = entry.name[len(prefix):].split("-")[0]
            if pid.isdigit() and process_alive(int(pid)):
                continue  # another writer is at work
            if kind == "old" and not path.exists() and (entry / aside).is_dir():
                os.replace(entry / aside, path)
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "",
                private_folder: bool = False) -> Iterator[str]:
    """Yields a temporary path next to `path`; on success it replaces `path` atomically.

    The body writes the temporary file (and closes it). If the body raises, the temporary file
    is removed and `path` is left untouched. The data is fsync'ed before the rename.

    Args:
        path: the destination.
        suffix: suffix of the temporary name (some writers check the extension, e.g. `.keras`).
        private_folder: put the temporary file in a temporary folder of its own, removed with
            whatever else the writer leaves in it (Keras writes a temporary file next to the
            file it saves).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    clean_stale_temps(path)
    prefix = f"{_temp_prefix(path)}{os.getpid()}."
    if private_folder:
        holder = tempfile.mkdtemp(prefix=prefix, dir=folder)
        tmp = os.path.join(holder, os.path.basename(path) + suffix)
        open(tmp, "wb").close()
    else:
        holder = None
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    finally:
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)


class _GuardedFile:
    """A binary file for h5py's file-object driver that never lets a write error reach HDF5.

    HDF5 cannot recover from a failed write (full disk, file-size limit): the file can then be
    neither flushed nor closed, and the library crashes or hangs when the process exits. Here
    the first OSError is kept, later writes are dropped (the file is discarded anyway), HDF5
    finishes and closes normally, and `h5_writer` raises the error.
    """

    def __init__(self, fh):
        self._fh = fh
        self.error: OSError | None = None

    def _guard(self, call, *args, default=None):
        if self.error is None:
            try:
                return call(*args)
            except OSError as error:
                self.error = error
        return default

    def _write_all(self, view) -> None:
        while view.nbytes:
            view = view[self._fh.write(view):]

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._guard(self._write_all, view)
        return view.nbytes

    def truncate(self, size=None):
        return self._guard(self._fh.truncate, size, default=size)

    def flush(self) -> None:
        self._guard(self._fh.flush)

    def read(self, size=-1) -> bytes:
        return self._fh.read(size)

    def readinto(self, buffer) -> int:
        return self._fh.readinto(buffer)

    def seek(self, offset, whence=0) -> int:
        return self._guard(self._fh.seek, offset, whence, default=offset)

    def tell(self) -> int:
        return self._fh.tell()


H5_ALIGNMENT = {"alignment_threshold": 1, "alignment_interval": 64}
"""`h5py.File` arguments for the files keras_yt memory-maps: every dataset (every object)
starts at a multiple of 64 bytes (userblocks are multiples of 512), so its memory map is aligned.
numpy hands only aligned arrays to BLAS: W at an odd offset scored one user 16x slower (0.64 ms
instead of 0.04 ms for 5,000 x 64)."""


@contextlib.contextmanager
def h5_writer(path: str, target: str | os.PathLike | None = None, **kwargs: Any) -> Iterator[Any]:
    """`h5py.File(path, "w", **kwargs)` whose failed writes raise an OSError naming the file;
    datasets aligned for memory maps (`H5_ALIGNMENT`).

    Use it on a temporary path (`atomic_path`) for `target`, the file named in the error: after
    a failed write the file is incomplete.
    """
    import h5py

    with open(path, "w+b", buffering=0) as raw:  # unbuffered: every error seen at its write
        guarded = _GuardedFile(raw)
        with h5py.File(guarded, "w", **{**H5_ALIGNMENT, **kwargs}) as f:
            yield f
            if guarded.error is None:
                f.flush()
        if guarded.error is None:
            guarded.flush()
    if guarded.error is not None:
        error = guarded.error
        shown = os.fspath(target if target is not None else path)
        raise OSError(error.errno, f"could not write {shown!r} "
                      f"({error.strerror or error}): the disk is full or a file-size limit "
                      "was reached; nothing was replaced") from None


def check_h5_sizes(f: Any, path: str | os.PathLike) -> None:
    """Raises a ValueError naming the file and the dataset when a dataset of the open HDF5 file
    `f` claims more bytes than the whole file holds (a damaged or crafted shape, e.g. 2**40 rows
    in unallocated chunks): reading it would only fail with a bare MemoryError, or exhaust the
    memory. keras_yt writes its files uncompressed, so every real dataset fits in its file."""
    import h5py

    size = os.path.getsize(path)
    found: list = []

    def visit(name: str, obj: Any) -> None:
        if not found and isinstance(obj, h5py.Dataset) and obj.compression is None:
            nbytes = int(np.prod(obj.shape, dtype=object)) * obj.dtype.itemsize
            if nbytes > size:
                found.append((name, obj.shape, nbytes))

    f.visititems(visit)
    if found:
        name, shape, nbytes = found[0]
        raise ValueError(
            f"{os.fspath(path)!r}: dataset {name!r} has shape {shape} ({nbytes:,} bytes) but the "
            f"file holds only {size:,} bytes: the file is damaged or was not written by keras_yt"
        )


def sha256_after(path: str | os.PathLike, offset: int) -> str:
    """The hex sha256 of a file's bytes from `offset` on (run.h5 and index.h5 keep it in the
    HDF5 user block before that offset: their seal)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------- seal records

_RACY_NS = 2_000_000_000  # a file changed this close to its check may change again unseen


def _seal_record_path(path: str | os.PathLike) -> str:
    import hashlib

    real = os.path.realpath(os.fspath(path))
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~") if os.access(os.path.expanduser("~"), os.W_OK) else "/tmp",
        ".keras")
    name = hashlib.sha256(real.encode()).hexdigest()[:32]
    return os.path.join(keras_home, "keras_yt", "verified", f"{name}.json")


def _file_state(path: str | os.PathLike) -> dict:
    st = os.stat(path)
    return {"path": os.path.realpath(os.fspath(path)), "dev": st.st_dev, "ino": st.st_ino,
            "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def seal_state(path: str | os.PathLike, offset: int, stored: str) -> str:
    """Whether the bytes of `path` after `offset` have the sha256 `stored` (the file's seal).

    Returns `"trusted"` when a record (`record_seal`) says that this very file state (device,
    inode, size, modification and status-change times, the seal) was hashed and checked before,
    more than 2 s after its last change: nothing is read. Any write to the file changes its
    status-change time (which no user can set back), a replaced file has another inode, so a
    changed file is always hashed again. Otherwise the file is hashed: `"verified"` when it
    matches, `"mismatch"` when not. `KERAS_YT_VERIFY=full` always hashes.
    """
    import json

    state = _file_state(path)
    if os.environ.get("KERAS_YT_VERIFY") != "full":
        try:
            with open(_seal_record_path(path)) as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and record.get("state") == state and \
                record.get("digest") == stored and \
                int(record.get("checked_ns", 0)) > state["ctime_ns"] + _RACY_NS:
            return "trusted"
    return "verified" if sha256_after(path, offset) == stored else "mismatch"


def record_seal(path: str | os.PathLike, stored: str) -> None:
    """Notes that `path` (its current state) was hashed to `stored` and passed every check of
    its reader, so that `seal_state` trusts it until it changes (best effort: a record that
    cannot be written only means the next load hashes the file again)."""
    import json
    import time

    with contextlib.suppress(OSError):
        record = {"state": _file_state(path), "digest": stored, "checked_ns": time.time_ns()}
        target = _seal_record_path(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, target)


def mapped_dataset(dataset: Any, writeable: bool = False) -> np.ndarray | None:
    """A read-only (or copy-on-write) `np.memmap` of an HDF5 dataset stored contiguous and
    uncompressed in its file, None for any other layout (read it with `dataset[()]`)."""
    if dataset.chunks is not None or dataset.compression is not None or \
            dataset.dtype.kind not in "biuf" or dataset.size == 0:
        return None
    offset = dataset.id.get_offset()
    if offset is None:
        return None
    size = os.path.getsize(dataset.file.filename)
    if offset + dataset.size * dataset.dtype.itemsize > size:
        return None
    return np.memmap(dataset.file.filename, dtype=dataset.dtype, mode="c" if writeable else "r",
                     offset=offset, shape=dataset.shape)


def embeddings_fingerprint(W: Any, b: Any) -> str:
    """sha256 (hex) of the float32 bytes of output embeddings W and biases b, with their shapes
    (the model fingerprint of an index and of a served run)."""
    import hashlib

    h = hashlib.sha256()
    W = np.ascontiguousarray(W, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    h.update(f"W{W.shape}b{b.shape}".encode())
    for start in range(0, len(W), 1 << 16):  # a memory-mapped W is read a block at a time
        h.update(np.ascontiguousarray(W[start:start + (1 << 16)]).tobytes())
    h.update(b.tobytes())
    return h.hexdigest()
