"""Helpers shared by `ExactIndex` and `CandidateIndex` (private): input checks, exclusion lists,
result padding, fingerprints and atomic HDF5 writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from keras_yt._files import embeddings_fingerprint, record_seal, seal_state, sha256_after

PAD_ID = -1
"""Id returned in result slots that no eligible item could fill (score `-inf`)."""


class IndexFileError(ValueError):
    """An index file is unreadable, incomplete, corrupt or inconsistent (names the file)."""


def check_embeddings(
    W: Any, b: Any = None, ids: Any = None, values: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates output embeddings, biases and ids; returns float32/float32/int64 arrays.

    With `values=False` (arrays of a file whose checksum was verified before, unchanged since)
    only shapes and dtypes are checked: a memory-mapped W is not read.
    """
    W = W if isinstance(W, np.memmap) and W.dtype == np.float32 and W.flags.c_contiguous \
        else np.ascontiguousarray(W, dtype=np.float32)
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(
            f"W must be a 2-D array (num_items, dim) with both > 0, got shape {W.shape}"
        )
    n = W.shape[0]
    if not values:
        b = np.zeros(n, np.float32) if b is None else np.ascontiguousarray(b, np.float32)
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids).astype(np.int64)
        if b.shape != (n,) or ids.shape != (n,):
            raise ValueError(f"b and ids must have shape ({n},) to match W {W.shape}, got "
                             f"{b.shape} and {ids.shape}")
        return W, b, ids
    if not np.isfinite(W).all():
        raise ValueError("W must be finite, got NaN or inf values")
    if b is None:
        b = np.zeros(n, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1) if np.ndim(b) else None
    if b is None or b.shape != (n,):
        raise ValueError(f"b must have shape ({n},) to match W {W.shape}, got {np.shape(b)}")
    if not np.isfinite(b).all():
        raise ValueError("b must be finite, got NaN or inf values")
    # Finite but huge values give inf scores (u · W_j + b_j) and break the bias-folding
    # reduction, which squares them: reject them here, at build.
    with np.errstate(over="ignore"):
        norms, squares = np.einsum("ij,ij->i", W, W), b * b
    if not np.isfinite(norms).all():
        raise ValueError(f"W is too large: its squared row norms overflow float32 (max |W| = "
                         f"{float(np.abs(W).max()):.3g}); every score would be inf")
    if not np.isfinite(squares).all():
        raise ValueError(f"b is too large: its squares overflow float32 (max |b| = "
                         f"{float(np.abs(b).max()):.3g}); scores would be inf")
    if ids is None:
        ids = np.arange(n, dtype=np.int64)
    else:
        ids = np.asarray(ids)
        if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"ids must be an integer array of shape ({n},) to match W {W.shape}, "
                f"got {ids.dtype} array of shape {ids.shape}"
            )
        ids = ids.astype(np.int64)
        if len(np.unique(ids)) != n:
            raise ValueError("ids must be unique, got duplicated ids")
        if (ids < 0).any():
            raise ValueError(f"ids must be >= 0 (-1 marks empty result slots), got {ids.min()}")
    return W, b, ids


def model_embeddings(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(W, b, ids)` from anything with `get_output_embeddings() -> (W, b)`, without row 0.

    Row 0 is the padding class (id 0), which is never recommended, so it is dropped and the
    ids of the remaining rows are their row numbers `1 .. N-1`.
    """
    getter = getattr(model, "get_output_embeddings", None)
    if getter is None or not callable(getter):
        raise TypeError(
            "model must have a get_output_embeddings() -> (W, b) method, "
            f"got {type(model).__name__}"
        )
    W, b = getter()
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] < 2:
        raise ValueError(
            "model.get_output_embeddings() must return W of shape (num_videos >= 2, dim), "
            f"got {W.shape}"
        )
    b = np.zeros(W.shape[0], np.float32) if b is None else np.asarray(b).reshape(-1)
    ids = np.arange(1, W.shape[0], dtype=np.int64)
    return check_embeddings(W[1:], b[1:], ids)


def fingerprint(W: np.ndarray, b: np.ndarray) -> str:
    """sha256 (hex) of the float32 bytes of W and b, with their shapes."""
    return embeddings_fingerprint(W, b)


def check_user_vectors(user_vectors: Any, dim: int) -> np.ndarray:
    """Validates user vectors: `(n, dim)` (or a single `(dim,)` vector); returns float32."""
    u = np.asarray(user_vectors, dtype=np.float32)
    if u.ndim == 1:
        u = u[None, :]
    if u.ndim != 2 or u.shape[1] != dim:
        raise ValueError(
            f"user_vectors must have shape (n, {dim}) to match the output embeddings, "
            f"got {np.shape(user_vectors)}"
        )
    if not np.isfinite(u).all():
        raise ValueError("user_vectors must be finite, got NaN or inf values")
    return np.ascontiguousarray(u)


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def check_batch_size(batch_size: Any) -> int | None:
    """`None` or an integer >= 1 (a bare 0 or a negative size is an error, not "the default")."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size < 1
    ):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def check_exclude(exclude: Any, num_users: int) -> list[np.ndarray] | None:
    """Per-user exclusion lists as int64 arrays without padding (-1 is ignored).

    0 is an id like any other: indexes built with `from_model` hold no id 0 (the padding class),
    so 0-padded watch histories exclude nothing extra, while an index over every row (ids from
    0) can exclude its item 0.
    """
    if exclude is None:
        return None
    if isinstance(exclude, np.ndarray) and exclude.ndim == 1 and num_users == 1:
        exclude = [exclude]
    if len(exclude) != num_users:
        raise ValueError(
            f"exclude must hold one id list per user vector ({num_users}), got {len(exclude)}"
        )
    out = []
    for i, row in enumerate(exclude):
        row = np.asarray([] if row is None else row).reshape(-1)
        if row.size and not np.issubdtype(row.dtype, np.integer):
            raise ValueError(f"exclude[{i}] must hold integer ids, got dtype {row.dtype}")
        row = row.astype(np.int64)
        out.append(np.unique(row[row != PAD_ID]))
    return out


def exclusion_mask(
    candidate_ids: np.ndarray, exclude: Sequence[np.ndarray] | None, start: int
) -> np.ndarray | None:
    """Boolean `(n, m)`: True where `candidate_ids[i, j]` is in `exclude[start + i]`."""
    if exclude is None:
        return None
    mask = np.zeros(candidate_ids.shape, dtype=bool)
    for i in range(candidate_ids.shape[0]):
        ex = exclude[start + i]
        if ex.size:
            mask[i] = np.isin(candidate_ids[i], ex, assume_unique=False)
    return mask


def top_k_sorted(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and values of the k largest entries per row, descending.

    Equal scores come lowest column first (as `keras.ops.top_k` orders them). Entries equal to
    `-inf` are ineligible: their positions come back as -1. When a row has fewer than k
    columns, the result is padded with position -1 and score `-inf`.
    """
    n, m = scores.shape
    kk = min(k, m)
    if kk < m:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(scores, part, axis=1)
        # argpartition keeps an arbitrary subset of the entries tied with the k-th largest
        kth = vals.min(axis=1, keepdims=True)
        tied = (scores == kth).sum(axis=1) > (vals == kth).sum(axis=1)
        for row in np.flatnonzero(tied):
            part[row] = np.argsort(-scores[row], kind="stable")[:kk]
            vals[row] = scores[row, part[row]]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
        vals = scores
    order = np.lexsort((part, -vals), axis=1)
    pos = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    pos[np.isneginf(vals)] = PAD_ID
    if kk < k:
        pos = np.concatenate([pos, np.full((n, k - kk), PAD_ID, np.int64)], axis=1)
        vals = np.concatenate([vals, np.full((n, k - kk), -np.inf, np.float32)], axis=1)
    return pos, vals


def batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


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
