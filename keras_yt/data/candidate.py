"""Candidate-generation training examples from watch logs (Covington et al. 2016, §3.4).

For each user the watches are sorted by time. An example predicts one watch (the *label*) from the
watches *strictly before it* (the paper's "rollback": nothing at or after the label's time leaks
into the inputs). Histories are truncated to the last `max_history` watches and left-padded with 0,
newest last: ``watch_history[i, -1]`` is the most recent earlier watch. A fixed number of examples
per user keeps heavy users from dominating the loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from keras_yt.data import _timelines
from keras_yt.data.io import WatchLogLike, iter_chunks, iter_user_blocks, to_watch_log

SECONDS_PER_DAY = 86400.0

TIE_RULES = ("log_order", "video_id")

QUERY_DTYPE = np.dtype([("user", "<i8"), ("timestamp", "<f8"), ("text", object)])


def _to_queries(queries: Any) -> np.ndarray:
    """Validates a query log (user, timestamp, text) and sorts it by (user, timestamp)."""
    names = set(queries.dtype.names or ()) if isinstance(queries, np.ndarray) else set(queries)
    missing = [c for c in ("user", "timestamp", "text") if c not in names]
    if missing:
        raise ValueError(
            f"queries is missing column(s) {missing}; expected columns ['user', 'timestamp', "
            f"'text'], got {sorted(names)}"
        )
    users = np.asarray(queries["user"])
    times = np.asarray(queries["timestamp"])
    if users.dtype.kind not in "iu":
        raise ValueError(f"Column 'user' of queries must hold integers, got dtype {users.dtype}")
    if times.dtype.kind not in "iuf":
        raise ValueError(
            f"Column 'timestamp' of queries must hold numbers, got dtype {times.dtype}"
        )
    out = np.empty(len(users), dtype=QUERY_DTYPE)
    out["user"] = users
    out["timestamp"] = times
    out["text"] = [str(t) for t in np.asarray(queries["text"], dtype=object)]
    return out[np.lexsort((out["timestamp"], out["user"]))]


def _check_reference(value: Any) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value):
        raise ValueError(
            f"example_age_reference must be a finite number (seconds) or None, got {value!r}"
        )


def _check_positive(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _examples_from_sorted(
    block: np.ndarray,
    select: np.ndarray,
    user_start: np.ndarray,
    run_start: np.ndarray,
    max_history: int,
    queries: np.ndarray | None,
    max_queries: int,
) -> dict[str, np.ndarray]:
    """Builds examples for the selected rows of a block sorted by (user, timestamp)."""
    rows = np.flatnonzero(select)
    out = {
        "watch_history": _timelines.gather_window(
            block["video"].astype(np.int64), run_start[rows], user_start[rows], max_history, 0
        ),
        "history_length": np.minimum(run_start[rows] - user_start[rows], max_history).astype(
            np.int32
        ),
        "label": block["video"][rows].astype(np.int64),
        "user": block["user"][rows].astype(np.int64),
        "timestamp": block["timestamp"][rows].astype(np.float64),
        "watch_time": block["watch_time"][rows].astype(np.float32),
    }
    if queries is not None:
        users, times = out["user"], out["timestamp"]
        if len(users):
            lo = np.searchsorted(queries["user"], users.min(), side="left")
            hi = np.searchsorted(queries["user"], users.max(), side="right")
        else:
            lo = hi = 0
        part = queries[lo:hi]
        before = _timelines.count_strictly_before(part["user"], part["timestamp"], users, times)
        first = np.searchsorted(part["user"], users, side="left")
        texts = np.asarray(part["text"], dtype=object)
        out["search_history"] = _timelines.gather_window(texts, before, first, max_queries, "")
    return out


def _finish(
    parts: list[dict[str, np.ndarray]], reference: float, max_history: int, max_queries: int,
    with_queries: bool,
) -> dict[str, np.ndarray]:
    empty = {
        "watch_history": np.zeros((0, max_history), np.int64),
        "history_length": np.zeros(0, np.int32),
        "label": np.zeros(0, np.int64),
        "user": np.zeros(0, np.int64),
        "timestamp": np.zeros(0, np.float64),
        "watch_time": np.zeros(0, np.float32),
    }
    if with_queries:
        empty["search_history"] = np.full((0, max_queries), "", dtype=object)
    out = {
        key: np.concatenate([p[key] for p in parts] + [value]) for key, value in empty.items()
    }
    out["example_age"] = ((reference - out["timestamp"]) / SECONDS_PER_DAY).astype(np.float32)
    if with_queries:
        out["search_history"] = out["search_history"].astype(str)
    return out


def candidate_examples(
    watches: WatchLogLike,
    max_history: int = 50,
    max_examples_per_user: int | None = 50,
    min_history: int = 1,
    queries: Any = None,
    max_queries: int = 5,
    example_age_reference: float | None = None,
    sampling: str = "last",
    seed: int = 0,
    chunk_size: int = 1_000_000,
    verbose: bool = False,
) -> dict[str, np.ndarray]:
    """Builds next-watch training examples for the candidate generator, streaming over users.

    For each user, watches are sorted by timestamp (ties keep input order). Every watch whose
    number of *strictly earlier* watches is at least `min_history` is a possible example: its
    video is the label, the earlier watches (last `max_history` of them) are the history. Watches
    sharing the label's timestamp are never in its history, so no input is at or after the label.
    Of a user's possible examples at most `max_examples_per_user` are kept: the most recent ones
    (``sampling="last"``) or a uniform sample (``sampling="uniform"``, seeded, independent of
    chunking). Example age is ``(example_age_reference - timestamp) / 86400`` (days, timestamps
    in seconds); by default the reference is the largest timestamp in the log (end of the
    training window).

    Args:
        watches: the watch log: a structured array / mapping with columns
            ``user, video, timestamp[, watch_time]`` (any order, sorted here), a CSV or Parquet
            path, or an iterable of such chunks. Paths and iterables are processed chunk by chunk
            and must be sorted by user (ascending); within a user any time order is fine.
        max_history: width of ``watch_history`` (most recent watches kept).
        max_examples_per_user: cap on examples per user; ``None`` keeps all.
        min_history: minimum number of strictly earlier watches for an example (>= 0).
        queries: optional in-memory search log with columns ``user, timestamp, text``; adds
            ``search_history``: the user's last `max_queries` queries strictly before the example.
        max_queries: width of ``search_history``.
        example_age_reference: end of the training window (same unit as timestamps, seconds).
        sampling: ``"last"`` or ``"uniform"`` (see above).
        seed: seed for ``sampling="uniform"``.
        chunk_size: rows read per chunk from files / arrays.
        verbose: show a progress bar over chunks.

    Returns:
        Dict of numpy arrays, one row per example, ordered by user then time:
        ``watch_history`` (n, max_history) int64, 0-padded on the left, newest last;
        ``history_length`` (n,) int32 (non-padding entries); ``label`` (n,) int64 (video ids
        as in the log, never narrowed);
        ``example_age`` (n,) float32 days; ``user`` (n,) int64; ``timestamp`` (n,) float64;
        ``watch_time`` (n,) float32 of the label watch; and, with `queries`,
        ``search_history`` (n, max_queries) str, "" padded on the left, newest last.

    Raises:
        ValueError: bad argument values, missing / mistyped columns, or unsorted chunked input.

    Example:
    >>> log = {"user": [1, 1, 1, 2], "video": [4, 5, 6, 4], "timestamp": [0, 86400, 172800, 5]}
    >>> ex = candidate_examples(log, max_history=2)
    >>> ex["watch_history"].tolist(), ex["label"].tolist(), ex["example_age"].tolist()
    ([[0, 4], [4, 5]], [5, 6], [1.0, 0.0])
    """
    _check_positive("max_history", max_history)
    _check_positive("min_history", min_history, minimum=0)
    _check_positive("max_queries", max_queries)
    _check_positive("chunk_size", chunk_size)
    if max_examples_per_user is not None:
        _check_positive("max_examples_per_user", max_examples_per_user)
    _check_reference(example_age_reference)
    if sampling not in ("last", "uniform"):
        raise ValueError(f"sampling must be 'last' or 'uniform', got {sampling!r}")
    query_log = _to_queries(queries) if queries is not None else None

    in_memory = isinstance(watches, np.ndarray) or hasattr(watches, "keys")
    if in_memory:
        log = to_watch_log(watches)
        log = log[np.lexsort((log["user"],))]  # stable: group users, keep time order of input
        chunks = iter_chunks(log, chunk_size)
    else:
        chunks = iter_chunks(watches, chunk_size)

    parts = []
    max_time = -np.inf
    for block in tqdm(iter_user_blocks(chunks), disable=not verbose, desc="candidate examples"):
        block = block[_timelines.sort_by_user_time(block)]
        max_time = max(max_time, float(block["timestamp"].max()))
        users = block["user"]
        user_start, run_start = _timelines.user_and_run_starts(users, block["timestamp"])
        select = (run_start - user_start) >= min_history
        if max_examples_per_user is not None:
            if sampling == "last":
                count = np.cumsum(select)
                ends = _timelines.user_ends(users)
                after = count[ends - 1] - count
                select &= after < max_examples_per_user
            else:
                position = np.arange(len(block)) - user_start
                keys = _timelines.splitmix64(np.int64(seed), users, position)
                keys[~select] = np.iinfo(np.uint64).max
                order = np.lexsort((keys, users))
                rank = np.empty(len(block), dtype=np.int64)
                rank[order] = np.arange(len(block)) - user_start[order]
                select &= rank < max_examples_per_user
        parts.append(
            _examples_from_sorted(
                block, select, user_start, run_start, max_history, query_log, max_queries
            )
        )
    reference = max_time if example_age_reference is None else float(example_age_reference)
    return _finish(parts, reference, max_history, max_queries, query_log is not None)


def leave_last_out_split(
    watches: WatchLogLike,
    max_history: int = 50,
    min_history: int = 1,
    queries: Any = None,
    max_queries: int = 5,
    example_age_reference: float | None = None,
    ties: str = "log_order",
    same_time_history: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Holds out each user's last watch as a test example; the rest is the training log.

    The held-out watch is the user's latest by timestamp; among watches with the same timestamp
    the order is the log's (``ties="log_order"``) or the video ids' (``ties="video_id"``, the
    rule of the SASRec papers on MovieLens, where many ratings share a second). Its test example
    uses the user's earlier history (last `max_history` of it): by default the watches strictly
    before it in time, exactly as `candidate_examples` builds inputs (the paper's rollback); with
    ``same_time_history=True`` every watch before it in that order, same-second ones included,
    as `keras_yt.data.sequence_examples` reads a sequence. Users whose held-out watch has fewer
    than `min_history` earlier watches keep all their watches in training and get no test
    example.

    Args:
        watches: watch log (structured array, mapping of columns, or file path); read in memory.
        max_history: width of the test ``watch_history``.
        min_history: minimum number of earlier watches for a user to get a test example.
        queries: optional search log (``user, timestamp, text``) for ``search_history``.
        max_queries: width of ``search_history``.
        example_age_reference: reference for ``example_age`` (default: the largest timestamp).
        ties: order of same-timestamp watches, ``"log_order"`` or ``"video_id"``.
        same_time_history: whether watches sharing the held-out watch's timestamp (and ordered
            before it) are part of its history.

    Returns:
        ``(train_watches, test)``: the training log (structured array `WATCH_DTYPE`, sorted by
        user, time and the `ties` rule, held-out rows removed) and a dict with the same keys as
        `candidate_examples`, one row per test user.

    Example:
    >>> log = {"user": [1, 1, 1, 2], "video": [4, 5, 6, 4], "timestamp": [1, 2, 3, 1]}
    >>> train, test = leave_last_out_split(log, max_history=3)
    >>> train["video"].tolist(), test["watch_history"].tolist(), test["label"].tolist()
    ([4, 5, 4], [[0, 4, 5]], [6])
    >>> same_second = {"user": [1, 1, 1], "video": [9, 5, 7], "timestamp": [1, 2, 2]}
    >>> leave_last_out_split(same_second, max_history=3)[1]["watch_history"].tolist()
    [[0, 0, 9]]
    >>> _, test = leave_last_out_split(same_second, max_history=3, ties="video_id",
    ...                                same_time_history=True)
    >>> test["watch_history"].tolist(), test["label"].tolist()
    ([[0, 9, 5]], [7])
    """
    _check_positive("max_history", max_history)
    _check_positive("min_history", min_history, minimum=0)
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    if not isinstance(same_time_history, (bool, np.bool_)):
        raise ValueError(f"same_time_history must be a bool, got {same_time_history!r}")
    _check_positive("max_queries", max_queries)
    _check_reference(example_age_reference)
    if isinstance(watches, np.ndarray) or hasattr(watches, "keys"):
        log = to_watch_log(watches)
    else:
        parts = list(iter_chunks(watches, 1_000_000))
        log = np.concatenate(parts) if parts else to_watch_log({c: [] for c in
                                                                ("user", "video", "timestamp")})
    if ties == "video_id":
        log = log[np.lexsort((log["video"], log["timestamp"], log["user"]))]
    else:
        log = log[_timelines.sort_by_user_time(log)]
    users = log["user"]
    user_start, run_start = _timelines.user_and_run_starts(users, log["timestamp"])
    if same_time_history:
        run_start = np.arange(len(log))  # every earlier row of the user, same second included
    last = np.zeros(len(log), dtype=bool)
    if len(log):
        last[_timelines.user_ends(users) - 1] = True
    held = last & ((run_start - user_start) >= min_history)
    query_log = _to_queries(queries) if queries is not None else None
    test = _examples_from_sorted(
        log, held, user_start, run_start, max_history, query_log, max_queries
    )
    reference = (
        float(log["timestamp"].max()) if example_age_reference is None and len(log)
        else float(example_age_reference or 0.0)
    )
    test = _finish([test], reference, max_history, max_queries, query_log is not None)
    return log[~held], test
