"""Per-user timelines of a log, vectorised for the example generators (private): rows ordered by
(user, time), where each user's rows and each same-time run start and end, the window of earlier
rows, counts of rows strictly before a time, and a per-row hash (splitmix64) for seeded choices."""

from __future__ import annotations

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def sort_by_user_time(block: np.ndarray) -> np.ndarray:
    """Stable order of rows by (user, timestamp); ties keep the input order."""
    return np.lexsort((block["timestamp"], block["user"]))


def user_and_run_starts(users: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (user, time): index of the user's first row and of the first row with
    the same (user, time). Rows strictly before row i for its user are [user_start, run_start)."""
    n = len(users)
    idx = np.arange(n)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = users[1:] != users[:-1]
    new_run = new_user.copy()
    new_run[1:] |= times[1:] != times[:-1]
    user_start = np.maximum.accumulate(np.where(new_user, idx, 0))
    run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
    return user_start, run_start


def user_ends(users: np.ndarray) -> np.ndarray:
    """For rows sorted by user: index one past the user's last row."""
    n = len(users)
    last = np.ones(n, dtype=bool)
    last[:-1] = users[1:] != users[:-1]
    ends = np.where(last, np.arange(1, n + 1), n + 1)
    return np.minimum.accumulate(ends[::-1])[::-1]


def gather_window(
    values: np.ndarray, end: np.ndarray, start: np.ndarray, length: int, fill
) -> np.ndarray:
    """Rows ``values[max(start, end - length):end]``, left-padded with `fill` (newest last)."""
    idx = end[:, None] - length + np.arange(length)[None, :]
    valid = idx >= start[:, None]
    if len(values) == 0:
        return np.full(idx.shape, fill, dtype=values.dtype)
    out = values[np.clip(idx, 0, len(values) - 1)]
    out[~valid] = fill
    return out


def count_strictly_before(
    ref_users: np.ndarray, ref_times: np.ndarray, users: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """For references sorted by (user, time): number of references whose (user, time) is
    lexicographically smaller than each query's (user, time) (equal pairs are not counted)."""
    m = len(ref_users)
    all_users = np.concatenate([users, ref_users])
    all_times = np.concatenate([times, ref_times])
    kind = np.concatenate([np.zeros(len(users), np.int8), np.ones(m, np.int8)])
    order = np.lexsort((kind, all_times, all_users))
    is_ref = kind[order] == 1
    before = np.cumsum(is_ref) - is_ref
    out = np.empty(len(users), dtype=np.int64)
    query_rows = ~is_ref
    out[order[query_rows]] = before[query_rows]
    return out


def splitmix64(*columns) -> np.ndarray:
    """Deterministic 64-bit hash of integer columns (for seeded per-row sampling)."""
    with np.errstate(over="ignore"):
        h = np.zeros(np.broadcast(*columns).shape, dtype=np.uint64)
        for c in columns:
            h = h ^ np.asarray(c).astype(np.uint64)
            h = h + np.uint64(0x9E3779B97F4A7C15)
            z = h
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = z ^ (z >> np.uint64(31))
    return h
