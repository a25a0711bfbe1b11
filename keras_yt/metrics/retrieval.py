"""Retrieval metrics over ranked candidate lists (plain numpy).

All metrics take ``ranked_ids`` of shape ``(n, K)`` — for each query (user), video ids in
decreasing score order, e.g. the top-K from `rank_top_k`, `ExactIndex` or `CandidateIndex` — and
``relevant``: for each query the relevant ids, either a single id per query (shape ``(n,)``), a
0-padded ``(n, m)`` int array, or a list of ``n`` sequences (ragged). Id 0 is padding: it is never
relevant and never a hit. Only the first ``k`` columns of ``ranked_ids`` are used; a repeated id
counts once (at its first position). Queries with no relevant id are skipped; the metrics are the
mean over the remaining queries (NaN when none remain).

With one relevant item per query, recall@k equals hit rate@k, MAP@k equals MRR@k (1 / rank of the
item if it is in the top k, else 0) and NDCG@k is 1 / log2(1 + rank).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _as_ranked(ranked_ids: Any, k: int) -> np.ndarray:
    ranked = np.asarray(ranked_ids)
    if ranked.ndim != 2 or ranked.dtype.kind not in "iu":
        raise ValueError(
            f"ranked_ids must be a 2-D integer array (n, K), got shape {ranked.shape} and dtype "
            f"{ranked.dtype}"
        )
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > ranked.shape[1]:
        raise ValueError(
            f"k must be <= the number of ranked ids per query ({ranked.shape[1]}), got {k}"
        )
    return ranked[:, :k].astype(np.int64)


def _hits_and_counts(ranked_ids: Any, relevant: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """hits[i, j] = ranked id j of query i is relevant (first occurrence, not padding);
    counts[i] = number of distinct relevant (non-zero) ids of query i."""
    ranked = _as_ranked(ranked_ids, k)
    n = ranked.shape[0]
    # A repeated id counts only at its first position.
    order = np.argsort(ranked, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(ranked, order, axis=1)
    repeated = np.zeros(ranked.shape, dtype=bool)
    repeated[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    first = np.empty(ranked.shape, dtype=bool)
    np.put_along_axis(first, order, ~repeated, axis=1)
    valid = first & (ranked != 0)
    rel = relevant
    if isinstance(rel, np.ndarray) or (
        isinstance(rel, Sequence) and len(rel) and np.ndim(rel[0]) == 0
    ):
        rel = np.asarray(rel)
    if isinstance(rel, np.ndarray) and rel.ndim == 1 and rel.dtype.kind in "iu":
        if len(rel) != n:
            raise ValueError(f"relevant must have {n} rows like ranked_ids, got {len(rel)}")
        hits = valid & (ranked == rel[:, None].astype(np.int64))
        return hits, (rel != 0).astype(np.int64)
    if isinstance(rel, np.ndarray) and rel.ndim == 2 and rel.dtype.kind in "iu":
        rel = [row[row != 0] for row in rel]
    if isinstance(rel, np.ndarray) and rel.dtype.kind not in "iuO":
        raise ValueError(
            f"relevant must hold integer ids (n,), (n, m) or a list of n id sequences, got dtype "
            f"{rel.dtype}"
        )
    if len(rel) != n:
        raise ValueError(f"relevant must have {n} rows like ranked_ids, got {len(rel)}")
    hits = np.zeros(ranked.shape, dtype=bool)
    counts = np.zeros(n, dtype=np.int64)
    for i, items in enumerate(rel):
        items = np.unique(np.asarray(items, dtype=np.int64).reshape(-1))
        items = items[items != 0]
        counts[i] = len(items)
        hits[i] = valid[i] & np.isin(ranked[i], items)
    return hits, counts


def _mean(values: np.ndarray, counts: np.ndarray) -> float:
    keep = counts > 0
    return float(values[keep].mean()) if np.any(keep) else float("nan")


def recall_at_k(ranked_ids: Any, relevant: Any, k: int) -> float:
    """Recall@k: mean over queries of |relevant ∩ top-k| / |relevant|.

    Args:
        ranked_ids: (n, K) int ids, best first, K >= k.
        relevant: (n,) ids, (n, m) 0-padded ids, or a list of n id sequences.
        k: cut-off.

    Returns:
        The mean recall over queries with at least one relevant id (NaN if there are none).

    Example:
    >>> recall_at_k([[3, 1, 2], [5, 6, 7]], [[1, 9], [7, 0]], k=2)
    0.25
    """
    hits, counts = _hits_and_counts(ranked_ids, relevant, k)
    return _mean(hits.sum(axis=1) / np.maximum(counts, 1), counts)


def hit_rate_at_k(ranked_ids: Any, relevant: Any, k: int) -> float:
    """Hit rate@k: fraction of queries with at least one relevant id in the top k.

    Args:
        ranked_ids: (n, K) int ids, best first, K >= k.
        relevant: (n,) ids, (n, m) 0-padded ids, or a list of n id sequences.
        k: cut-off.

    Returns:
        The mean over queries with at least one relevant id (NaN if there are none).

    Example:
    >>> hit_rate_at_k([[3, 1, 2], [5, 6, 7]], [1, 7], k=2)
    0.5
    """
    hits, counts = _hits_and_counts(ranked_ids, relevant, k)
    return _mean(hits.any(axis=1).astype(np.float64), counts)


def mrr_at_k(ranked_ids: Any, relevant: Any, k: int) -> float:
    """MRR@k: mean over queries of 1 / (rank of the first relevant id), 0 if none in the top k.

    Args:
        ranked_ids: (n, K) int ids, best first, K >= k.
        relevant: (n,) ids, (n, m) 0-padded ids, or a list of n id sequences.
        k: cut-off.

    Returns:
        The mean reciprocal rank over queries with a relevant id (NaN if there are none).

    Example:
    >>> mrr_at_k([[3, 1, 2], [5, 6, 7]], [1, 7], k=3)
    0.41666666666666663
    """
    hits, counts = _hits_and_counts(ranked_ids, relevant, k)
    first = np.argmax(hits, axis=1)
    rr = np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)
    return _mean(rr, counts)


def map_at_k(ranked_ids: Any, relevant: Any, k: int) -> float:
    """MAP@k: mean over queries of AP@k = Σ_{i<=k} P@i · rel_i / min(|relevant|, k).

    ``P@i`` is the fraction of relevant ids among the first i, ``rel_i`` is 1 when the i-th id
    is relevant. With a single relevant id AP@k is 1 / rank (0 beyond k), i.e. MAP@k = MRR@k.

    Args:
        ranked_ids: (n, K) int ids, best first, K >= k.
        relevant: (n,) ids, (n, m) 0-padded ids, or a list of n id sequences.
        k: cut-off.

    Returns:
        The mean average precision over queries with a relevant id (NaN if there are none).

    Example:
    >>> map_at_k([[1, 5, 2]], [[1, 2]], k=3)  # (1/1 + 2/3) / 2
    0.8333333333333333
    """
    hits, counts = _hits_and_counts(ranked_ids, relevant, k)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    ap = (precision * hits).sum(axis=1) / np.maximum(np.minimum(counts, k), 1)
    return _mean(ap, counts)


def ndcg_at_k(ranked_ids: Any, relevant: Any, k: int) -> float:
    """NDCG@k with binary relevance: DCG@k / IDCG@k.

    ``DCG@k = Σ_{i<=k} rel_i / log2(i + 1)`` and ``IDCG@k = Σ_{i<=min(|relevant|, k)} 1 /
    log2(i + 1)`` (all relevant ids ranked first).

    Args:
        ranked_ids: (n, K) int ids, best first, K >= k.
        relevant: (n,) ids, (n, m) 0-padded ids, or a list of n id sequences.
        k: cut-off.

    Returns:
        The mean NDCG over queries with a relevant id (NaN if there are none).

    Example:
    >>> round(ndcg_at_k([[3, 1, 2]], [1], k=3), 4)  # 1 / log2(3)
    0.6309
    """
    hits, counts = _hits_and_counts(ranked_ids, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(counts, k)]
    return _mean(dcg / np.where(ideal > 0, ideal, 1.0), counts)


def rank_top_k(
    scores: Any, k: int, exclude: Any = None, batch_size: int = 4096
) -> np.ndarray:
    """Ids of the k highest scores per row of a full score matrix (column j = video id j).

    Column 0 (padding) is never returned as a candidate. Ids in `exclude` (e.g. already watched
    videos; 0 entries are padding and ignored) are removed. Ties are broken by the smaller id.
    When fewer than k ids remain, the rest of the row is 0.

    Args:
        scores: (n, num_videos) float scores.
        k: number of ids per row, 1 <= k <= num_videos - 1.
        exclude: optional (n, L) int ids (0-padded) or a list of n id sequences to exclude.
        batch_size: rows processed at a time (memory bound).

    Returns:
        (n, k) int64 ids, best first.

    Example:
    >>> rank_top_k([[9.0, 0.1, 0.5, 0.3, 0.5]], k=3, exclude=[[3, 0]])
    array([[2, 4, 1]])
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.dtype.kind not in "iuf":
        raise ValueError(
            f"scores must be a 2-D numeric array (n, num_videos), got shape {scores.shape} and "
            f"dtype {scores.dtype}"
        )
    n, num_videos = scores.shape
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k < num_videos:
        raise ValueError(
            f"k must be an integer in [1, num_videos) = [1, {num_videos}), got {k!r}"
        )
    if exclude is not None and len(exclude) != n:
        raise ValueError(f"exclude must have {n} rows like scores, got {len(exclude)}")
    out = np.zeros((n, k), dtype=np.int64)
    for start in range(0, n, batch_size):
        block = scores[start : start + batch_size].astype(np.float64)
        block[:, 0] = -np.inf
        removed = np.zeros(block.shape, dtype=bool)
        removed[:, 0] = True
        if exclude is not None:
            for i, items in enumerate(exclude[start : start + batch_size]):
                items = np.asarray(items, dtype=np.int64).reshape(-1)
                items = items[(items > 0) & (items < num_videos)]
                removed[i, items] = True
        block[removed] = -np.inf
        order = np.argsort(-block, axis=1, kind="stable")[:, :k]
        ids = order.astype(np.int64)
        ids[np.take_along_axis(removed, order, axis=1)] = 0
        out[start : start + len(block)] = ids
    return out
