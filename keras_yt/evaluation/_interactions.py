"""The user × item matrix the baselines learn from (private helper)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from keras_yt.data.io import to_watch_log


def user_item_matrix(watches: Any, num_items: int | None) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary CSR matrix `(num_users, num_items)` of who watched what, and the sorted user ids.

    Row i belongs to user `users[i]`; column j is video id j (column 0, padding, is empty).
    """
    log = to_watch_log(watches)
    num_items = checked_num_items(log, num_items)
    users, rows = np.unique(log["user"], return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(log), dtype=np.float32), (rows, log["video"])),
        shape=(len(users), int(num_items)),
    )
    matrix.data[:] = 1.0  # repeated watches count once
    return matrix, users


def checked_num_items(log: np.ndarray, num_items: int | None) -> int:
    """`num_items` (default: the largest video id + 1), checked to cover every id of `log`."""
    largest = int(log["video"].max()) if len(log) else 0
    if num_items is None:
        return largest + 1
    if not isinstance(num_items, (int, np.integer)) or isinstance(num_items, bool) or (
        num_items <= largest
    ):
        raise ValueError(
            f"num_items must be an integer > the largest video id ({largest}), got {num_items!r}"
        )
    return int(num_items)


def rows_of(users: np.ndarray, known: np.ndarray, argument: str = "users") -> np.ndarray:
    """Positions of `users` in the sorted array `known`, with a clear error for unknown ids."""
    users = np.asarray(users)
    if users.ndim != 1 or users.dtype.kind not in "iu":
        raise ValueError(
            f"{argument} must be a 1-D array of integer user ids, got shape {users.shape} and "
            f"dtype {users.dtype}"
        )
    position = np.clip(np.searchsorted(known, users), 0, max(len(known) - 1, 0))
    missing = users[(len(known) == 0) | (known[position] != users)] if len(users) else users
    if len(missing):
        raise ValueError(
            f"{argument} holds {len(missing)} id(s) with no training watches, e.g. "
            f"{missing[:3].tolist()}"
        )
    return position
