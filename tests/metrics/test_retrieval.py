"""Retrieval metrics against hand-checked values and brute-force Python references."""

import math

import numpy as np
import pytest

from keras_yt.metrics import (
    hit_rate_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    rank_top_k,
    recall_at_k,
)


def ref_metrics(ranked, relevant, k):
    """Per-query recall, hit, AP, NDCG, RR by plain loops (queries without relevant skipped)."""
    rec, hit, ap, ndcg, rr = [], [], [], [], []
    for row, rel in zip(ranked, relevant):
        rel = {int(r) for r in np.atleast_1d(rel) if r != 0}
        if not rel:
            continue
        seen, hits = set(), []
        for item in list(row)[:k]:
            hits.append(int(item) in rel and int(item) not in seen)
            seen.add(int(item))
        rec.append(sum(hits) / len(rel))
        hit.append(float(any(hits)))
        ap.append(sum(sum(hits[: i + 1]) / (i + 1) for i in range(k) if hits[i]) /
                  min(len(rel), k))
        dcg = sum(1 / math.log2(i + 2) for i in range(k) if hits[i])
        ndcg.append(dcg / sum(1 / math.log2(i + 2) for i in range(min(len(rel), k))))
        rr.append(next((1 / (i + 1) for i in range(k) if hits[i]), 0.0))
    return [float(np.mean(x)) for x in (rec, hit, ap, ndcg, rr)]


def all_metrics(ranked, relevant, k):
    return [f(ranked, relevant, k) for f in (recall_at_k, hit_rate_at_k, map_at_k, ndcg_at_k,
                                             mrr_at_k)]


def test_hand_checked():
    ranked = np.array([[3, 1, 2, 4], [5, 6, 7, 8], [9, 8, 7, 6]])
    single = np.array([1, 8, 5])
    # Ranks 2, 4, absent.
    assert recall_at_k(ranked, single, 2) == pytest.approx(1 / 3)
    assert hit_rate_at_k(ranked, single, 4) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, single, 4) == pytest.approx((1 / 2 + 1 / 4) / 3)
    assert map_at_k(ranked, single, 4) == pytest.approx((1 / 2 + 1 / 4) / 3)
    assert ndcg_at_k(ranked, single, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 3)
    multi = [[1, 2], [8], [42, 0]]
    assert recall_at_k(ranked, multi, 3) == pytest.approx((1 + 0 + 0) / 3)
    # AP of query 0 at k=3: hits at ranks 2, 3 -> (1/2 + 2/3) / 2.
    assert map_at_k(ranked, multi, 3) == pytest.approx(((1 / 2 + 2 / 3) / 2) / 3)
    idcg = 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranked, multi, 3) == pytest.approx(
        ((1 / math.log2(3) + 1 / math.log2(4)) / idcg) / 3)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_matches_reference_on_random_data(k):
    rng = np.random.default_rng(k)
    ranked = np.stack([rng.permutation(np.arange(1, 30))[:10] for _ in range(40)])
    ranked[0, 5] = ranked[0, 1]  # a duplicate counts once
    single = rng.integers(1, 30, size=40)
    np.testing.assert_allclose(all_metrics(ranked, single, k), ref_metrics(ranked, single, k))
    ragged = [rng.choice(np.arange(1, 30), size=rng.integers(0, 6), replace=False)
              for _ in range(40)]
    np.testing.assert_allclose(all_metrics(ranked, ragged, k), ref_metrics(ranked, ragged, k))
    padded = np.zeros((40, 6), dtype=np.int64)
    for i, r in enumerate(ragged):
        padded[i, : len(r)] = r
    np.testing.assert_allclose(all_metrics(ranked, padded, k), ref_metrics(ranked, ragged, k))
    # With one relevant item, recall@k equals hit rate@k and MAP@k equals MRR@k.
    assert recall_at_k(ranked, single, k) == hit_rate_at_k(ranked, single, k)
    assert map_at_k(ranked, single, k) == pytest.approx(mrr_at_k(ranked, single, k))


def test_rank_top_k():
    scores = np.array([[5.0, 0.1, 0.9, 0.5, 0.9, 0.3],
                       [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(rank_top_k(scores, 3), [[2, 4, 3], [5, 4, 3]])
    np.testing.assert_array_equal(rank_top_k(scores, 3, exclude=[[2, 0], [5, 4]]),
                                  [[4, 3, 5], [3, 2, 1]])
    np.testing.assert_array_equal(rank_top_k(scores[:1], 5, exclude=[[1, 2, 3]]),
                                  [[4, 5, 0, 0, 0]])
    rng = np.random.default_rng(0)
    big = rng.normal(size=(7, 50))
    exclude = rng.integers(0, 50, size=(7, 4))
    ids = rank_top_k(big, 10, exclude=exclude, batch_size=3)
    for row, ex, out in zip(big, exclude, ids):
        allowed = [j for j in np.argsort(-row) if j != 0 and j not in set(ex.tolist())]
        assert out.tolist() == allowed[:10]
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, num_videos\)"):
        rank_top_k(scores, 6)
    with pytest.raises(ValueError, match="k must be <= the number of ranked ids"):
        recall_at_k([[1, 2]], [1], 3)
    with pytest.raises(ValueError, match="relevant must have 1 rows"):
        recall_at_k([[1, 2]], [1, 2], 1)
    assert math.isnan(recall_at_k([[1, 2]], [[0]], 1))
