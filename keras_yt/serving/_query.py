"""What a top-k query is, for every index (private): its checks, and the ranking helpers that
put its answer together (exclusions, top-k with ties by row, padding with `PAD_ID`).

`check_query` is the one place the arguments of `ExactIndex.query`, `CandidateIndex.query` and
the scan of `keras-yt recommend` are validated (same errors, same messages).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

PAD_ID = -1
"""Id returned in result slots that no eligible item could fill (score `-inf`)."""


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


def check_query(
    user_vectors: Any, k: Any, exclude: Any, dim: int, batch_size: Any = None
) -> tuple[np.ndarray, int, list[np.ndarray] | None, int | None]:
    """Validates a query: `(user vectors (n, dim) float32, k, exclusion lists or None,
    batch size or None)`, raising a ValueError that names the argument.

    Example:
    >>> u, k, exclude, batch = check_query([[1.0, 0.0]], 3, [[5, -1]], dim=2)
    >>> u.shape, k, exclude[0].tolist(), batch
    ((1, 2), 3, [5], None)
    """
    k = check_k(k)
    u = check_user_vectors(user_vectors, dim)
    return u, k, check_exclude(exclude, u.shape[0]), check_batch_size(batch_size)
