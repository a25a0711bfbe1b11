"""Ranking metrics (plain numpy): ROC AUC and the paper's weighted per-user loss."""

from __future__ import annotations

from typing import Any

import numpy as np


def _vector(name: str, values: Any, n: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if n is not None and len(array) != n:
        raise ValueError(f"{name} must have {n} entries like the other inputs, got {len(array)}")
    return array


def _binary(name: str, values: Any, n: int | None = None) -> np.ndarray:
    array = _vector(name, values, n)
    if array.dtype.kind not in "biuf" or not np.all(np.isin(array, (0, 1))):
        raise ValueError(
            f"{name} must hold 0/1 (or booleans), got values {np.unique(array)[:5].tolist()}"
        )
    return array.astype(bool)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get the average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    change = np.ones(len(values), dtype=bool)
    change[1:] = sorted_values[1:] != sorted_values[:-1]
    starts = np.flatnonzero(change)
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auc(labels: Any, scores: Any) -> float:
    """ROC AUC: probability that a random positive scores higher than a random negative.

    Equal scores count 1/2 (Mann–Whitney U / (n_pos · n_neg)).

    Args:
        labels: (n,) 0/1 or booleans.
        scores: (n,) real scores (higher = more likely positive).

    Returns:
        AUC in [0, 1].

    Raises:
        ValueError: shapes differ, labels are not binary, or only one class is present.

    Example:
    >>> auc([1, 0, 1, 0], [0.9, 0.9, 0.8, 0.1])  # pairs: 0.5 + 1 + 0 + 1 over 4
    0.625
    """
    y = _binary("labels", labels)
    s = _vector("scores", scores, len(y)).astype(np.float64)
    if np.any(np.isnan(s)):
        raise ValueError("scores must not contain NaN")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"labels must contain both classes for AUC, got {n_pos} positives and {n_neg} "
            "negatives"
        )
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def weighted_per_user_loss(users: Any, clicked: Any, watch_time: Any, scores: Any) -> float:
    """The paper's weighted, per-user loss: fraction of positive watch time mispredicted.

    Over every pair (positive impression p, negative impression q) shown to the *same user*
    (positive: ``clicked == 1``; negative: ``clicked == 0``), the pair is mispredicted when the
    negative scores higher than the positive (``scores[q] > scores[p]``), and counts 1/2 on a tie.
    The loss is ``Σ_pairs T_p · [mispredicted] / Σ_pairs T_p``,
    where ``T_p = watch_time[p]`` is the positive's watch time (negatives' watch times are
    ignored). 0 is perfect, 0.5 is chance for a random scorer. Users with no positive or no
    negative contribute no pairs.

    Args:
        users: (n,) user ids of the impressions.
        clicked: (n,) 0/1 click labels.
        watch_time: (n,) watch time of each impression (used for positives; >= 0).
        scores: (n,) model scores (e.g. the ranker's expected watch time or its logit).

    Returns:
        The loss in [0, 1]; NaN when no pair has positive watch time.

    Example:
    >>> # user 1: (10s, 0.9 > 0.5) right, (30s, 0.2 < 0.5) wrong; user 2: (5s, tie) half
    >>> weighted_per_user_loss(
    ...     users=[1, 1, 1, 2, 2], clicked=[1, 1, 0, 1, 0],
    ...     watch_time=[10.0, 30.0, 0.0, 5.0, 0.0], scores=[0.9, 0.2, 0.5, 0.3, 0.3])
    0.7222222222222222
    """
    u = _vector("users", users)
    y = _binary("clicked", clicked, len(u))
    t = _vector("watch_time", watch_time, len(u)).astype(np.float64)
    s = _vector("scores", scores, len(u)).astype(np.float64)
    if np.any(np.isnan(s)):
        raise ValueError("scores must not contain NaN")
    if np.any(t[y] < 0):
        raise ValueError(f"watch_time of positives must be >= 0, got {t[y].min()}")
    _, user_index = np.unique(u, return_inverse=True)
    _, score_rank = np.unique(s, return_inverse=True)  # dense integer ranks, ties equal
    width = int(score_rank.max()) + 2 if len(s) else 1
    key = user_index.astype(np.int64) * width + score_rank.astype(np.int64)
    neg_keys = np.sort(key[~y])
    pos_key = key[y]
    pos_user = user_index[y].astype(np.int64)
    # Negatives of the same user: keys in [user * width, (user + 1) * width).
    user_lo = np.searchsorted(neg_keys, pos_user * width, side="left")
    user_hi = np.searchsorted(neg_keys, (pos_user + 1) * width, side="left")
    at_or_below = np.searchsorted(neg_keys, pos_key, side="right")
    below = np.searchsorted(neg_keys, pos_key, side="left")
    n_neg = user_hi - user_lo
    higher = user_hi - at_or_below
    ties = at_or_below - below
    weight = t[y]
    total = float(np.sum(weight * n_neg))
    if total <= 0:
        return float("nan")
    return float(np.sum(weight * (higher + 0.5 * ties)) / total)
