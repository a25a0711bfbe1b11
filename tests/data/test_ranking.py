"""ranking_examples against a pure-Python reference and the simulator's own features."""

import numpy as np
import pytest

from keras_yt.data import ranking_examples
from keras_yt.datasets import synthetic


def random_impressions(seed, n=150):
    rng = np.random.default_rng(seed)
    clicked = (rng.uniform(size=n) < 0.3).astype(np.int8)
    return {
        "user": rng.integers(1, 6, size=n),
        "video": rng.integers(1, 8, size=n),
        "timestamp": rng.integers(0, 40, size=n).astype(float),
        "clicked": clicked,
        "watch_time": np.where(clicked == 1, rng.uniform(1, 50, size=n), rng.uniform(0, 5, n)),
        "language": rng.integers(1, 4, size=n),
    }


def reference(imp, watches, max_history, missing):
    n = len(imp["user"])
    if watches is None:
        w = [(imp["user"][i], imp["timestamp"][i], imp["video"][i]) for i in range(n)
             if imp["clicked"][i] == 1]
    else:
        w = list(zip(watches["user"], watches["timestamp"], watches["video"]))
    w = sorted(w, key=lambda r: (r[0], r[1]))  # stable: input order among ties
    out = []
    for i in range(n):
        u, t, v = imp["user"][i], imp["timestamp"][i], imp["video"][i]
        earlier = [r for r in w if r[0] == u and r[1] < t]
        hist = [r[2] for r in earlier][-max_history:]
        hist = [0] * (max_history - len(hist)) + hist
        since = t - earlier[-1][1] if earlier else missing
        prev = sum(1 for j in range(n) if imp["user"][j] == u and imp["video"][j] == v
                   and imp["timestamp"][j] < t)
        target = imp["watch_time"][i] if imp["clicked"][i] else 0.0
        out.append((hist, since, prev, target))
    return out


def check(ex, ref, imp):
    assert ex["watch_history"].dtype == np.int64
    np.testing.assert_array_equal(ex["user"], imp["user"])
    np.testing.assert_array_equal(ex["language"], imp["language"])
    for i, (hist, since, prev, target) in enumerate(ref):
        assert ex["watch_history"][i].tolist() == hist, i
        assert ex["time_since_last_watch"][i] == pytest.approx(since)
        assert ex["previous_impressions"][i] == prev
        assert ex["watch_time"][i] == pytest.approx(target)


def test_hand_checked():
    imp = {"user": [2, 1, 1, 1, 1], "video": [5, 3, 4, 3, 3], "timestamp": [0., 0., 0., 60., 60.],
           "clicked": [0, 1, 0, 0, 1], "watch_time": [9., 30., 0., 0., 12.]}
    ex = ranking_examples(imp, max_history=2)
    assert ex["watch_history"].tolist() == [[0, 0], [0, 0], [0, 0], [0, 3], [0, 3]]
    assert ex["previous_impressions"].tolist() == [0, 0, 0, 1, 1]
    assert ex["time_since_last_watch"].tolist() == [-1, -1, -1, 60, 60]
    assert ex["watch_time"].tolist() == [0, 30, 0, 0, 12]


@pytest.mark.parametrize("use_watches", [False, True])
def test_matches_reference(use_watches):
    imp = random_impressions(1)
    watches = None
    if use_watches:
        rng = np.random.default_rng(2)
        watches = {"user": rng.integers(1, 6, 80), "video": rng.integers(1, 8, 80),
                   "timestamp": rng.integers(0, 40, 80).astype(float)}
    ref = reference(imp, watches, 3, -1.0)
    check(ranking_examples(imp, watches=watches, max_history=3), ref, imp)
    check(ranking_examples(imp, watches=watches, max_history=3, chunk_size=17), ref, imp)
    # Streaming chunks sorted by user give the same rows (in that order).
    order = np.argsort(imp["user"], kind="stable")
    sorted_imp = {k: np.asarray(v)[order] for k, v in imp.items()}
    chunks = [{k: v[i : i + 11] for k, v in sorted_imp.items()} for i in range(0, 150, 11)]
    check(ranking_examples(iter(chunks), watches=watches, max_history=3),
          [ref[i] for i in order], sorted_imp)


def test_synthetic_features_agree():
    logs = synthetic.watch_logs(num_users=60, num_videos=300, seed=4)
    imp = logs.impressions
    ex = ranking_examples(imp, watches=logs.watches, max_history=5)
    np.testing.assert_array_equal(ex["previous_impressions"], imp["previous_impressions"])
    np.testing.assert_allclose(ex["time_since_last_watch"], imp["time_since_last_watch"],
                               rtol=1e-5)
    assert np.all(ex["watch_time"][ex["clicked"] == 0] == 0)


def test_validation():
    imp = random_impressions(0)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['clicked'\]"):
        ranking_examples({k: v for k, v in imp.items() if k != "clicked"})
    with pytest.raises(ValueError, match="Column 'clicked'.*0/1"):
        ranking_examples({**imp, "clicked": np.full(150, 2)})
    with pytest.raises(ValueError, match="max_history must be an integer >= 1, got 0"):
        ranking_examples(imp, max_history=0)


# ------------------------------------------------------------- issue 13: no silent wrong answers


def test_ids_beyond_int32_are_kept():
    # Regression (issue 13, item 2): video 2**32 + 7 became 7.
    big = 2**32 + 7
    imp = {"user": [1, 1], "video": [big, 3], "timestamp": [0.0, 10.0], "clicked": [1, 0],
           "watch_time": [5.0, 0.0]}
    ex = ranking_examples(imp, max_history=2)
    assert ex["video"].tolist() == [big, 3]
    assert ex["watch_history"].tolist() == [[0, 0], [0, big]]


def test_negative_watch_time_is_rejected():
    # Regression (issue 13, item 6): -5 passed through as a target.
    imp = {"user": [1, 1], "video": [2, 3], "timestamp": [0.0, 10.0], "clicked": [1, 1],
           "watch_time": [-5.0, 3.0]}
    with pytest.raises(ValueError, match=r"Column 'watch_time' of impressions must hold .*"
                                         r">= 0.*got -5\.0 at position 0"):
        ranking_examples(imp)
