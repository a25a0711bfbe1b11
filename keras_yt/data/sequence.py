"""All-position training examples: per-user sequence windows from watch logs.

`candidate_examples` builds one example per next watch, each with its own copy of the history. A
sequence model (`keras_yt.layers.HistoryEncoder`) reads a user's watches once and predicts the
next watch at *every* position, so its examples are windows of a user's sequence: the inputs are
the watches oldest → newest (left-padded with 0, newest last, the convention of
`candidate_examples`), and the label of each position is the watch that follows it.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from keras_yt.data import _timelines
from keras_yt.data.candidate import SECONDS_PER_DAY, _check_positive, _check_reference
from keras_yt.data.io import WatchLogLike, iter_chunks, iter_user_blocks, to_watch_log

__all__ = ["sequence_examples"]


def _windows_from_sorted(
    block: np.ndarray, max_history: int, max_windows_per_user: int | None
) -> dict[str, np.ndarray]:
    """Windows of a block of complete users sorted by (user, timestamp)."""
    users = block["user"]
    n = len(block)
    user_start, _ = _timelines.user_and_run_starts(users, block["timestamp"])
    ends = _timelines.user_ends(users)
    position = np.arange(n) - user_start  # 0 = the user's first watch
    from_end = (ends - 1) - np.arange(n)  # 0 = the user's last watch
    window = from_end // max_history  # 0 = the most recent window
    column = max_history - 1 - from_end % max_history
    keep = position >= 1  # a label needs a watch before it
    if max_windows_per_user is not None:
        keep &= window < max_windows_per_user
    rows = np.flatnonzero(keep)
    # Windows numbered per user, oldest first; output row = first window of the user + number.
    num_windows = np.zeros(n, np.int64)
    first_rows = np.flatnonzero(position == 0)
    labels_per_user = ends[first_rows] - first_rows - 1
    user_windows = -(-labels_per_user // max_history)
    if max_windows_per_user is not None:
        user_windows = np.minimum(user_windows, max_windows_per_user)
    offsets = np.concatenate([[0], np.cumsum(user_windows)])
    num_windows[first_rows] = np.arange(len(first_rows))
    user_index = np.maximum.accumulate(np.where(position == 0, num_windows, 0))
    out_row = offsets[user_index[rows]] + user_windows[user_index[rows]] - 1 - window[rows]
    total = int(offsets[-1])
    shape = (total, max_history)
    out = {
        "watch_history": np.zeros(shape, np.int64),
        "label": np.zeros(shape, np.int64),
        "timestamp": np.zeros(shape, np.float64),
        "watch_time": np.zeros(shape, np.float32),
        "user": np.zeros(total, np.int64),
        "sequence_length": np.zeros(total, np.int32),
    }
    cols = column[rows]
    out["watch_history"][out_row, cols] = block["video"][rows - 1]
    out["label"][out_row, cols] = block["video"][rows]
    out["timestamp"][out_row, cols] = block["timestamp"][rows]
    out["watch_time"][out_row, cols] = block["watch_time"][rows]
    out["user"][out_row] = users[rows]
    np.add.at(out["sequence_length"], out_row, 1)
    return out


def sequence_examples(
    watches: WatchLogLike,
    max_history: int = 200,
    max_windows_per_user: int | None = 1,
    example_age_reference: float | None = None,
    chunk_size: int = 1_000_000,
    verbose: bool = False,
) -> dict[str, np.ndarray]:
    """Builds per-user sequence windows for all-position training, streaming over users.

    For each user the watches ``w_0 .. w_{n-1}`` are sorted by timestamp (ties keep the input
    order, as in `candidate_examples`). Every watch but the first is a label: the label of
    ``w_k`` sits at the position of the input ``w_{k-1}``, so that the model's state after
    reading ``w_0 .. w_{k-1}`` (causally) predicts ``w_k``. The ``n - 1`` (input, label) pairs are
    cut, from the newest, into windows of `max_history` positions: window 0 holds the most recent
    ``max_history`` pairs, window 1 the ``max_history`` before them, and so on (the oldest window
    is left-padded). Each label appears in exactly one window, so each watch is trained on once
    per epoch. At most `max_windows_per_user` windows are kept per user, the most recent.

    Unlike `candidate_examples`, watches that share the label's timestamp but come before it in
    the sort order are inputs of the label's position (as in SASRec): a sequence has one order.

    The output format is deliberately flat, for other engines to reproduce: row ``r`` is one
    window; ``watch_history[r, c]`` is an input watch and ``label[r, c]`` the video watched right
    after it (0 where there is no label: padding); both are left-padded with 0, newest last, and
    a window's real positions are its last ``sequence_length[r]`` columns.

    Args:
        watches: the watch log: a structured array / mapping with columns
            ``user, video, timestamp[, watch_time]``, a CSV or Parquet path, or an iterable of
            such chunks. Paths and iterables are processed chunk by chunk and must be sorted by
            user (ascending); within a user any time order is fine.
        max_history: positions per window (the `max_history` of the model).
        max_windows_per_user: the most windows kept per user (the most recent ones); ``None``
            keeps every window, i.e. every watch of the log but each user's first is a label.
        example_age_reference: end of the training window (seconds); by default the largest
            timestamp of the log. Example age is ``(reference - label timestamp) / 86400`` days.
        chunk_size: rows read per chunk from files / arrays.
        verbose: show a progress bar over chunks.

    Returns:
        Dict of numpy arrays, one row per window, ordered by user (ascending) then time (oldest
        window first): ``watch_history`` (n, max_history) int64 inputs; ``label``
        (n, max_history) int64, 0 = no label; ``example_age`` (n, max_history) float32 days of
        each label (0 where no label); ``timestamp`` (n, max_history) float64 and ``watch_time``
        (n, max_history) float32 of each label (0 where no label); ``user`` (n,) int64;
        ``sequence_length`` (n,) int32, the number of labels (= of real inputs) in the window.

    Raises:
        ValueError: bad argument values, missing / mistyped columns, or unsorted chunked input.

    Example:
    >>> log = {"user": [1, 1, 1, 1, 2], "video": [4, 5, 6, 7, 4], "timestamp": [0, 1, 2, 3, 0]}
    >>> ex = sequence_examples(log, max_history=2, max_windows_per_user=None)
    >>> ex["watch_history"].tolist(), ex["label"].tolist(), ex["user"].tolist()
    ([[0, 4], [5, 6]], [[0, 5], [6, 7]], [1, 1])
    """
    _check_positive("max_history", max_history)
    _check_positive("chunk_size", chunk_size)
    if max_windows_per_user is not None:
        _check_positive("max_windows_per_user", max_windows_per_user)
    _check_reference(example_age_reference)
    if isinstance(watches, np.ndarray) or hasattr(watches, "keys"):
        log = to_watch_log(watches)
        log = log[np.lexsort((log["user"],))]  # stable: group users, keep time order of input
        chunks = iter_chunks(log, chunk_size)
    else:
        chunks = iter_chunks(watches, chunk_size)
    parts = []
    max_time = -np.inf
    for block in tqdm(iter_user_blocks(chunks), disable=not verbose, desc="sequence examples"):
        block = block[_timelines.sort_by_user_time(block)]
        max_time = max(max_time, float(block["timestamp"].max()))
        parts.append(_windows_from_sorted(block, max_history, max_windows_per_user))
    if not parts:
        parts.append(_windows_from_sorted(to_watch_log(
            {"user": [], "video": [], "timestamp": []}), max_history, max_windows_per_user))
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    reference = max_time if example_age_reference is None else float(example_age_reference)
    age = (reference - out["timestamp"]) / SECONDS_PER_DAY
    out["example_age"] = np.where(out["label"] > 0, age, 0.0).astype(np.float32)
    return out
