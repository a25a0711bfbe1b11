import numpy as np
import pytest

from keras_yt.evaluation import ItemKNN


def _log(seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 25, 300)
    videos = rng.integers(1, 30, 300)
    return {"user": users, "video": videos, "timestamp": np.arange(300.0)}


def _reference_scores(log, num_items, users, num_neighbors):
    watched = {}
    for u, v in zip(log["user"], log["video"]):
        watched.setdefault(int(u), set()).add(int(v))
    viewers = {j: {u for u, vs in watched.items() if j in vs} for j in range(num_items)}
    sim = np.zeros((num_items, num_items))
    for i in range(num_items):
        for j in range(num_items):
            if viewers[i] and viewers[j]:
                sim[i, j] = len(viewers[i] & viewers[j]) / np.sqrt(len(viewers[i]) *
                                                                    len(viewers[j]))
        if num_neighbors is not None:
            keep = np.sort(sim[i])[-num_neighbors]
            sim[i, sim[i] < keep] = 0.0
    return np.array([[sum(sim[i, j] for i in watched[u]) for j in range(num_items)]
                     for u in users])


@pytest.mark.parametrize("num_neighbors", [None, 5])
def test_scores_equal_a_loop_over_co_watches(num_neighbors):
    log = _log()
    users = np.unique(log["user"])[:6]
    knn = ItemKNN(num_neighbors=num_neighbors).fit(log, num_items=31)
    expected = _reference_scores(log, 31, users, num_neighbors)
    np.testing.assert_allclose(knn.score(users), expected, rtol=1e-5, atol=1e-6)


def test_unknown_users_and_bad_arguments():
    knn = ItemKNN().fit(_log())
    with pytest.raises(ValueError, match=r"users holds 1 id\(s\) with no training watches, "
                                         r"e.g. \[999\]"):
        knn.score(np.array([1, 999]))
    with pytest.raises(ValueError, match="num_neighbors must be a positive integer or None, got 0"):
        ItemKNN(num_neighbors=0)
