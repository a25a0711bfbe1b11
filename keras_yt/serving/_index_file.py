"""The HDF5 file format of the indexes (private): atomic writes, the sha256 seal in the user block,
kind / version / checksum checks, and the checked read of the stored embeddings."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from keras_yt._files import record_seal, seal_state, sha256_after
from keras_yt.serving._embeddings import check_embeddings


class IndexFileError(ValueError):
    """An index file is unreadable, incomplete, corrupt or inconsistent (names the file)."""


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[Any]:
    """Opens a temporary HDF5 file next to `path`; on success it replaces `path` atomically.

    The root attribute `checksum` (`file_checksum`) is written last, over everything the body
    wrote. If the body raises, or a write fails (full disk, file-size limit: an OSError naming
    the file), the temporary file is removed and `path` is left untouched; temporary files of
    killed writers are removed by the next save into the same folder.
    """
    from keras_yt._files import atomic_path, h5_writer

    with atomic_path(path) as tmp:
        with h5_writer(tmp, target=path, userblock_size=_USERBLOCK) as f:
            yield f
            f.attrs["checksum"] = file_checksum(f)
        seal(tmp)


# The first 512 bytes of an index file (an HDF5 user block, skipped by HDF5) hold the sha256 of
# the rest of the file, so that a damaged file is rejected before the HDF5 library parses it: a
# flipped byte in HDF5 metadata can make the library loop forever or crash.
_USERBLOCK = 512
_SEAL_MAGIC = b"keras_yt index sha256 "


def _raw_digest(path: str) -> str:
    return sha256_after(path, _USERBLOCK)


def seal(path: str | os.PathLike) -> None:
    """Writes the sha256 of everything after the user block into the user block."""
    path = os.fspath(path)
    digest = _raw_digest(path).encode()
    with open(path, "r+b") as fh:
        fh.write((_SEAL_MAGIC + digest).ljust(_USERBLOCK, b"\0"))


def check_seal(path: str, kind: str) -> tuple[str, str]:
    """Raises `IndexFileError` unless the file's user block holds the sha256 of its contents.

    Returns `(state, digest)`: `"trusted"` when a check of this unchanged file is on record
    (`keras_yt._files.seal_state`; nothing is read), `"verified"` when hashed now.
    """
    with open(path, "rb") as fh:
        head = fh.read(_USERBLOCK)
    if len(head) < _USERBLOCK or not head.startswith(_SEAL_MAGIC):
        raise IndexFileError(
            f"{path!r} is not a readable {kind} file (not HDF5, truncated or damaged): it does "
            "not start with a keras_yt index header"
        )
    stored = head[len(_SEAL_MAGIC):len(_SEAL_MAGIC) + 64].decode("ascii", "replace")
    state = seal_state(path, _USERBLOCK, stored)
    if state == "mismatch":
        raise IndexFileError(
            f"{path!r} is corrupt: its checksum {stored[:16]}... does not match its contents "
            "(truncated or damaged)"
        )
    return state, stored


def check_header(f: Any, kind: str, version: int | tuple[int, ...], path: Any) -> None:
    """Checks the `kind` and `format_version` attributes of an index file (one of `version`)."""
    versions = version if isinstance(version, tuple) else (version,)
    version = versions[-1]
    got_kind = f.attrs.get("kind")
    if got_kind is None or str(got_kind) != kind:
        raise IndexFileError(
            f"{os.fspath(path)!r} is not a {kind} file: kind attribute is {got_kind!r}"
        )
    got = f.attrs.get("format_version")
    if not isinstance(got, (int, np.integer)) or int(got) not in versions:
        shown = int(got) if isinstance(got, (int, np.integer)) else repr(got)
        raise IndexFileError(
            f"{os.fspath(path)!r} has format_version {shown}, "
            f"expected {version}; "
            "rebuild the index with this version of keras_yt"
        )


def check_fingerprint(
    stored: str, actual: str, path: Any, what: str, rebuild: str = "CandidateIndex"
) -> None:
    """Raises ValueError when the fingerprint stored in an index file differs from `actual`."""
    if stored != actual:
        if what == "model":
            raise ValueError(
                "index was built from different output embeddings: fingerprint "
                f"{stored} != {actual}; rebuild with {rebuild}.from_model"
            )
        raise ValueError(
            f"{os.fspath(path)!r} is corrupt: stored fingerprint {stored} != {actual} "
            f"computed from its {what}"
        )


def file_checksum(f: Any) -> str:
    """sha256 (hex) over every dataset (path, dtype, shape, bytes) and attribute of an HDF5 file,
    in sorted order, except the root attribute `checksum` itself."""
    import h5py

    h = hashlib.sha256()

    def add_attrs(name: str, obj: Any) -> None:
        for key in sorted(obj.attrs):
            if name == "/" and key == "checksum":
                continue
            value = np.asarray(obj.attrs[key])
            h.update(f"@{name}:{key}:{value.dtype.str}:{value.shape}:".encode())
            h.update(value.tobytes() if value.dtype.kind != "O" else repr(value.tolist()).encode())

    add_attrs("/", f)
    names: list[str] = []
    f.visit(names.append)
    for name in sorted(names):
        obj = f[name]
        add_attrs(name, obj)
        if isinstance(obj, h5py.Dataset):
            data = np.ascontiguousarray(obj[()])
            h.update(f"#{name}:{data.dtype.str}:{data.shape}:".encode())
            h.update(data.tobytes())
    return h.hexdigest()


class IndexFile:
    """An open index file (`read_index_file`): `f`, the h5py file; `trusted`, whether its
    checksum was taken from the record of an earlier check (values need no new check)."""

    def __init__(self, f: Any, trusted: bool):
        self.f, self.trusted = f, trusted


@contextlib.contextmanager
def read_index_file(
    path: str | os.PathLike, kind: str, version: int | tuple[int, ...]
) -> Iterator[IndexFile]:
    """Opens an index file for reading and checks its kind, version and checksum.

    The seal (sha256 of the whole file) is hashed on the first load of each state of the file
    (then, with the per-dataset `checksum` attribute, every stored value is checked) and
    trusted while the file is unchanged (`keras_yt._files.seal_state`); once the body has read
    the file without error, a hashed file's check is put on record.

    Any failure (not a file, not HDF5, truncated, missing data, checksum mismatch, and any error
    raised while the body reads it) becomes an `IndexFileError` naming the file, never a bare
    h5py / KeyError traceback.
    """
    import h5py

    shown = os.fspath(path)
    if not os.path.isfile(shown):
        raise FileNotFoundError(f"index file {shown!r} does not exist")
    state, digest = check_seal(shown, kind)
    try:
        f = h5py.File(shown, "r")
    except Exception as err:
        raise IndexFileError(
            f"{shown!r} is not a readable {kind} file (not HDF5, truncated or damaged): "
            f"{type(err).__name__}: {err}"
        ) from err
    try:
        with f:
            check_header(f, kind, version, shown)
            from keras_yt._files import check_h5_sizes

            check_h5_sizes(f, shown)
            stored = f.attrs.get("checksum")
            if stored is None:
                raise IndexFileError(f"{shown!r} has no checksum: not a complete {kind} file")
            if state != "trusted":
                actual = file_checksum(f)
                if str(stored) != actual:
                    raise IndexFileError(
                        f"{shown!r} is corrupt: its checksum {str(stored)[:16]}... does not "
                        f"match its contents ({actual[:16]}...)"
                    )
            yield IndexFile(f, trusted=state == "trusted")
    except IndexFileError:
        raise
    except ValueError as err:
        if shown in str(err) or "fingerprint" in str(err):
            raise
        raise IndexFileError(f"{shown!r} is not a valid {kind} file: {err}") from err
    except Exception as err:
        raise IndexFileError(
            f"{shown!r} is not a valid {kind} file: {type(err).__name__}: {err}"
        ) from err
    if state == "verified":
        record_seal(shown, digest)


def read_embeddings(
    f: Any, path: Any, trusted: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`W` (float32 `(n, d)`), `b` (float32 `(n,)`) and `ids` (int64 `(n,)`, unique, >= 0) of an
    index file, checked before use; raises `IndexFileError` naming the file.

    W is memory-mapped where it is stored contiguous (as `save` writes it); with `trusted` (a
    file checked before, unchanged since) only its shape and dtype are checked.
    """
    import h5py

    from keras_yt._files import mapped_dataset

    shown = os.fspath(path)
    expected = {"W": ("f", 2), "b": ("f", 1), "ids": ("i", 1)}
    out = {}
    for name, (kind, ndim) in expected.items():
        node = f.get(name)
        if not isinstance(node, h5py.Dataset):
            raise IndexFileError(f"{shown!r} has no dataset {name!r}: not a complete index file")
        if node.dtype.kind != kind or node.ndim != ndim:
            what = "float" if kind == "f" else "integer"
            raise IndexFileError(
                f"{shown!r}: dataset {name!r} must be a {ndim}-D {what} array, got {node.dtype} "
                f"of shape {node.shape}"
            )
        mapped = mapped_dataset(node) if name == "W" and node.dtype == np.float32 else None
        out[name] = node[()] if mapped is None else mapped
    try:
        return check_embeddings(out["W"], out["b"], out["ids"], values=not trusted)
    except ValueError as err:
        raise IndexFileError(f"{shown!r} holds invalid embeddings or ids: {err}") from err
