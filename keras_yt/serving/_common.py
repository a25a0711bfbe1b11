"""Helpers shared by `ExactIndex` and `CandidateIndex` (private): input checks, exclusion lists,
result padding, fingerprints and atomic HDF5 writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

PAD_ID = -1
"""Id returned in result slots that no eligible item could fill (score `-inf`)."""


def check_embeddings(
    W: Any, b: Any = None, ids: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates output embeddings, biases and ids; returns float32/float32/int64 copies."""
    W = np.ascontiguousarray(W, dtype=np.float32)
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(
            f"W must be a 2-D array (num_items, dim) with both > 0, got shape {W.shape}"
        )
    if not np.isfinite(W).all():
        raise ValueError("W must be finite, got NaN or inf values")
    n = W.shape[0]
    if b is None:
        b = np.zeros(n, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1) if np.ndim(b) else None
    if b is None or b.shape != (n,):
        raise ValueError(f"b must have shape ({n},) to match W {W.shape}, got {np.shape(b)}")
    if not np.isfinite(b).all():
        raise ValueError("b must be finite, got NaN or inf values")
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
    h = hashlib.sha256()
    W = np.ascontiguousarray(W, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    h.update(f"W{W.shape}b{b.shape}".encode())
    h.update(W.tobytes())
    h.update(b.tobytes())
    return h.hexdigest()


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


def check_exclude(exclude: Any, num_users: int) -> list[np.ndarray] | None:
    """Per-user exclusion lists as int64 arrays without padding (0 and -1 are ignored)."""
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
        out.append(np.unique(row[(row != 0) & (row != -1)]))
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

    If the body raises, the temporary file is removed and `path` is left untouched.
    """
    import h5py

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
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


def check_header(f: Any, kind: str, version: int, path: Any) -> None:
    """Checks the `kind` and `format_version` attributes of an index file."""
    got_kind = f.attrs.get("kind")
    if got_kind is None or str(got_kind) != kind:
        raise ValueError(
            f"{os.fspath(path)!r} is not a {kind} file: kind attribute is {got_kind!r}"
        )
    got = f.attrs.get("format_version")
    if got is None or int(got) != version:
        raise ValueError(
            f"{os.fspath(path)!r} has format_version {got if got is None else int(got)}, "
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
