import numpy as np
import pytest

from keras_yt.evaluation import ImplicitALS, LeaveLastOut

implicit = pytest.importorskip("implicit")


def test_top_items_equal_implicits_own_recommend(movielens_dir):
    from keras_yt.datasets import movielens

    data = movielens.load_data(data_dir=movielens_dir)
    split = LeaveLastOut(data.watches, validation=False)
    als = ImplicitALS(factors=16, iterations=5, seed=0).fit(split.train_watches, split.num_items)
    users = split.test["user"][:20]
    scores = als.score(users)
    # implicit's own ranking of the same factors, watched items filtered, must be our top 10.
    from implicit.cpu.als import AlternatingLeastSquares

    from keras_yt.evaluation._interactions import user_item_matrix

    matrix, known = user_item_matrix(split.train_watches, split.num_items)
    model = AlternatingLeastSquares(factors=16)
    model.user_factors, model.item_factors = als.user_factors, als.item_factors
    rows = np.searchsorted(known, users)
    ids, _ = model.recommend(rows, matrix[rows], N=10, filter_already_liked_items=True)
    seen = split.seen()
    for i, row in enumerate(ids):
        masked = scores[i].copy()
        masked[seen[i]] = -np.inf
        masked[0] = -np.inf
        np.testing.assert_array_equal(np.sort(np.argsort(-masked)[:10]), np.sort(row))


def test_bad_arguments():
    with pytest.raises(ValueError, match="factors must be a positive integer, got 0"):
        ImplicitALS(factors=0)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -1"):
        ImplicitALS(alpha=-1)
