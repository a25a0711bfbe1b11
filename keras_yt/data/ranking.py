"""Ranking training examples from impression logs (Covington et al. 2016, §4).

Each impression (a video shown to a user) becomes one example. Features describing the user's
past are computed *causally*: only events strictly before the impression's timestamp count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from keras_yt.data import _timelines
from keras_yt.data.io import iter_user_blocks, to_watch_log

IMPRESSION_COLUMNS = ("user", "video", "timestamp", "clicked", "watch_time")
"""Columns an impression log must have; any further columns are passed through as features."""


def to_impressions(data: Any, source: str = "impressions") -> np.ndarray:
    """Validates an impression log and returns it as a structured array (input order).

    Args:
        data: structured array or mapping with ``user, video, timestamp, clicked, watch_time``
            and any extra feature columns (1-D each).
        source: name used in error messages.

    Returns:
        Structured array with ``user`` int64, ``video`` int64, ``timestamp`` float64,
        ``clicked`` int8, ``watch_time`` float32 and the extra columns unchanged.

    Example:
    >>> imp = to_impressions({"user": [1], "video": [3], "timestamp": [0.0], "clicked": [1],
    ...                       "watch_time": [12.5], "language": [2]})
    >>> imp.dtype.names
    ('user', 'video', 'timestamp', 'clicked', 'watch_time', 'language')
    """
    if isinstance(data, np.ndarray):
        if data.dtype.names is None:
            raise ValueError(
                f"{source} must be a structured array or a mapping of columns, got a plain "
                f"array of dtype {data.dtype}"
            )
        names = list(data.dtype.names)
    elif isinstance(data, Mapping) or hasattr(data, "columns"):
        names = [str(c) for c in (data.columns if hasattr(data, "columns") else data.keys())]
    else:
        raise ValueError(
            f"{source} must be a structured array or a mapping of columns, got "
            f"{type(data).__name__}"
        )
    missing = [c for c in IMPRESSION_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"{source} is missing column(s) {missing}; expected {list(IMPRESSION_COLUMNS)} plus "
            f"optional feature columns, got {names}"
        )
    base = to_watch_log(
        {"user": data["user"], "video": data["video"], "timestamp": data["timestamp"],
         "watch_time": data["watch_time"]},
        source=source,
    )
    if n_bad := int((base["watch_time"] < 0).sum()):
        raise ValueError(
            f"Column 'watch_time' of {source} must hold watch times >= 0, got {n_bad} negative "
            f"value(s), e.g. {base['watch_time'][base['watch_time'] < 0][:5].tolist()}"
        )
    clicked = np.asarray(data["clicked"])
    if clicked.dtype.kind not in "biuf" or not np.all(np.isin(clicked, (0, 1))):
        raise ValueError(
            f"Column 'clicked' of {source} must hold 0/1 (or booleans), got values "
            f"{np.unique(clicked)[:5].tolist()}"
        )
    extra = [n for n in names if n not in IMPRESSION_COLUMNS]
    extra_values = {n: np.asarray(data[n]) for n in extra}
    for n, v in extra_values.items():
        if v.shape != (len(base),):
            raise ValueError(
                f"Column '{n}' of {source} must have shape ({len(base)},), got {v.shape}"
            )
    dtype = [("user", "<i8"), ("video", "<i8"), ("timestamp", "<f8"), ("clicked", "i1"),
             ("watch_time", "<f4")] + [(n, v.dtype) for n, v in extra_values.items()]
    out = np.empty(len(base), dtype=dtype)
    for n in ("user", "video", "timestamp", "watch_time"):
        out[n] = base[n]
    out["clicked"] = clicked
    for n, v in extra_values.items():
        out[n] = v
    return out


def ranking_examples(
    impressions: Any,
    watches: Any = None,
    max_history: int = 50,
    missing_time: float = -1.0,
    chunk_size: int = 1_000_000,
    verbose: bool = False,
) -> dict[str, np.ndarray]:
    """Builds ranker examples (features + watch-time target) from an impression log.

    Causal features, for an impression of video v to user u at time t:

    * ``watch_history`` (max_history,) int64: the videos u watched strictly before t (last
      `max_history`, left-padded with 0, newest last);
    * ``time_since_last_watch`` float32: t minus the time of u's latest watch strictly before t
      (timestamp units, seconds), `missing_time` when there is none;
    * ``previous_impressions`` int32: how many times v was shown to u strictly before t.

    Watches come from `watches` when given, otherwise from the clicked impressions themselves.
    The target ``watch_time`` is the impression's watch time for clicks and 0 for non-clicks.

    Args:
        impressions: structured array or mapping with ``user, video, timestamp, clicked,
            watch_time`` and any extra feature columns (passed through, e.g. ``language``), or an
            iterable of such chunks sorted by user (ascending), processed chunk by chunk.
        watches: optional watch log (structured array / mapping / path, see
            `keras_yt.data.read_watch_log`), held in memory.
        max_history: width of ``watch_history``.
        missing_time: value of ``time_since_last_watch`` when the user has no earlier watch.
        chunk_size: rows per chunk for in-memory impressions.
        verbose: show a progress bar over chunks.

    Returns:
        Dict of numpy arrays in the input order of `impressions`: ``user`` int64, ``video``
        int64, ``timestamp`` float64, ``clicked`` int8, ``watch_time`` float32 (target),
        ``watch_history`` (n, max_history) int64, ``time_since_last_watch`` float32,
        ``previous_impressions`` int32, and every extra impression column (recomputed columns
        named like the ones above replace the input's).

    Example:
    >>> imp = {"user": [1, 1, 1], "video": [3, 4, 3], "timestamp": [0.0, 0.0, 60.0],
    ...        "clicked": [1, 0, 0], "watch_time": [30.0, 0.0, 0.0]}
    >>> ex = ranking_examples(imp, max_history=2)
    >>> ex["watch_history"].tolist(), ex["previous_impressions"].tolist()
    ([[0, 0], [0, 0], [0, 3]], [0, 0, 1])
    >>> ex["time_since_last_watch"].tolist(), ex["watch_time"].tolist()
    ([-1.0, -1.0, 60.0], [30.0, 0.0, 0.0])
    """
    if not isinstance(max_history, (int, np.integer)) or max_history < 1:
        raise ValueError(f"max_history must be an integer >= 1, got {max_history!r}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    watch_log = None
    if watches is not None:
        if isinstance(watches, (str, os.PathLike)):
            from keras_yt.data.io import read_watch_log

            watch_log = read_watch_log(watches)
        else:
            watch_log = to_watch_log(watches, source="watches")
        watch_log = watch_log[_timelines.sort_by_user_time(watch_log)]

    if isinstance(impressions, np.ndarray) or hasattr(impressions, "keys"):
        data = to_impressions(impressions)
        order = np.argsort(data["user"], kind="stable")
        chunks = (data[order[s : s + chunk_size]] for s in range(0, len(data), chunk_size))
        restore = np.empty(len(data), dtype=np.int64)
        restore[order] = np.arange(len(data))
    else:
        chunks = (to_impressions(c, "a chunk of impressions") for c in impressions)
        restore = None

    parts = []
    for block in tqdm(iter_user_blocks(chunks, "impressions"), disable=not verbose,
                      desc="ranking examples"):
        parts.append(_block_features(block, watch_log, max_history, missing_time))
    if not parts:
        parts.append(_block_features(to_impressions(
            {c: np.zeros(0) for c in IMPRESSION_COLUMNS}), None, max_history, missing_time))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if restore is not None:
        out = {k: v[restore] for k, v in out.items()}
    return out


def _block_features(
    block: np.ndarray, watch_log: np.ndarray | None, max_history: int, missing_time: float
) -> dict[str, np.ndarray]:
    n = len(block)
    users, times = block["user"], block["timestamp"]
    # Previous impressions of the same video to the same user, strictly earlier.
    order = np.lexsort((times, block["video"], users))
    pair_start, run_start = _timelines.user_and_run_starts(
        _pair_ids(users[order], block["video"][order]), times[order]
    )
    previous = np.empty(n, dtype=np.int32)
    previous[order] = run_start - pair_start

    if watch_log is None:
        clicked = block[block["clicked"] == 1]
        ref = clicked[_timelines.sort_by_user_time(clicked)]
    elif n:
        lo = np.searchsorted(watch_log["user"], users.min(), side="left")
        hi = np.searchsorted(watch_log["user"], users.max(), side="right")
        ref = watch_log[lo:hi]
    else:
        ref = watch_log[:0]
    before = _timelines.count_strictly_before(ref["user"], ref["timestamp"], users, times)
    first = np.searchsorted(ref["user"], users, side="left")
    has_watch = before > first
    last_time = ref["timestamp"][np.clip(before - 1, 0, None)] if len(ref) else np.zeros(n)
    since = np.where(has_watch, times - last_time, missing_time).astype(np.float32)
    history = _timelines.gather_window(ref["video"].astype(np.int64), before, first, max_history, 0)

    out = {
        "user": users.astype(np.int64),
        "video": block["video"].astype(np.int64),
        "timestamp": times.astype(np.float64),
        "clicked": block["clicked"].astype(np.int8),
        "watch_time": np.where(block["clicked"] == 1, block["watch_time"], 0).astype(np.float32),
    }
    for name in block.dtype.names:
        if name not in out:
            out[name] = block[name]
    out["watch_history"] = history
    out["time_since_last_watch"] = since
    out["previous_impressions"] = previous
    return out


def _pair_ids(users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """Consecutive integer ids for (user, video) runs of rows sorted by (user, video)."""
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.ones(len(users), dtype=bool)
    change[1:] = (users[1:] != users[:-1]) | (videos[1:] != videos[:-1])
    return np.cumsum(change)
