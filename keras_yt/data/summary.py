"""`watch_log_summary`: what a watch log holds and what training leaves out, and why."""

from __future__ import annotations

from typing import Any

import numpy as np


def watch_log_summary(log: Any, min_watches: int = 3) -> dict:
    """Counts what a watch log holds and what `keras-yt train` drops from it.

    Nothing is dropped silently: duplicate rows (the same user, video and timestamp as an
    earlier row) are kept and each counted as a watch, and users with too few watches get no
    training example (each user's last watch is held out for the test, the last but one for
    early stopping, so a user needs `min_watches` = 3 watches to train on). Such users are still
    served from their history. `keras-yt train` prints this summary after reading the log.

    Args:
        log: a watch log with `user`, `video` and `timestamp` columns (raw ids as
            `read_raw_watch_log` returns them, or model ids: a structured array or a mapping).
        min_watches: the watches a user needs for a training example.

    Returns:
        A dict of ints: `rows`, `duplicate_rows`, `users`, `videos`,
        `users_without_training_examples` (fewer than `min_watches` watches),
        `users_without_test_example` (a single watch: nothing earlier to predict it from) and
        `min_watches`.

    Example:
    >>> summary = watch_log_summary({"user": ["a", "a", "a", "b"], "video": [1, 1, 2, 1],
    ...                              "timestamp": [5, 5, 6, 1]})
    >>> summary["duplicate_rows"], summary["users_without_training_examples"]
    (1, 1)
    """
    users = np.asarray(log["user"]).reshape(-1)
    videos = np.asarray(log["video"]).reshape(-1)
    times = np.asarray(log["timestamp"], dtype=np.float64).reshape(-1)
    n = len(users)
    if n == 0:
        return {"rows": 0, "duplicate_rows": 0, "users": 0, "videos": 0,
                "users_without_training_examples": 0, "users_without_test_example": 0,
                "min_watches": int(min_watches)}
    _, user_rows, per_user = np.unique(users, return_inverse=True, return_counts=True)
    unique_videos, video_rows = np.unique(videos, return_inverse=True)
    keys = np.empty(n, dtype=[("u", "<i8"), ("v", "<i8"), ("t", "<f8")])
    keys["u"], keys["v"], keys["t"] = user_rows.reshape(-1), video_rows.reshape(-1), times
    distinct = len(np.unique(keys))
    return {
        "rows": int(n),
        "duplicate_rows": int(n - distinct),
        "users": int(len(per_user)),
        "videos": int(len(unique_videos)),
        "users_without_training_examples": int((per_user < min_watches).sum()),
        "users_without_test_example": int((per_user < 2).sum()),
        "min_watches": int(min_watches),
    }


def summary_lines(summary: dict) -> list[str]:
    """The summary as the lines `keras-yt train` prints (what was read, dropped and why)."""
    lines = [f"read {summary['rows']:,} rows: {summary['users']:,} users, "
             f"{summary['videos']:,} videos"]
    if summary["duplicate_rows"]:
        lines.append(f"{summary['duplicate_rows']:,} duplicate rows (same user, video and "
                     "timestamp as an earlier row): kept, each counted as a watch")
    short = summary["users_without_training_examples"]
    if short:
        single = summary["users_without_test_example"]
        lines.append(f"{short:,} users with fewer than {summary['min_watches']} watches get no "
                     f"training example ({single:,} with a single watch get no test example "
                     "either); they are still served from their history")
    return lines
