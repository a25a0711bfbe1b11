"""sequence_examples against hand-checked cases and a pure-Python reference."""

import numpy as np
import pytest

from keras_yt.data import WATCH_DTYPE, candidate_examples
from keras_yt.data.sequence import sequence_examples


def random_log(seed, num_users=20, max_watches=15, num_videos=30, time_range=25):
    rng = np.random.default_rng(seed)
    rows = []
    for user in rng.choice(np.arange(1, 200), size=num_users, replace=False):
        for _ in range(rng.integers(0, max_watches)):
            rows.append((user, rng.integers(1, num_videos), rng.integers(0, time_range),
                         rng.uniform(1, 100)))
    order = rng.permutation(len(rows))
    return np.array([rows[i] for i in order], dtype=WATCH_DTYPE)


def reference(log, max_history, max_windows):
    """Pure Python: per user, stable time sort, (input, label) pairs cut from the newest."""
    windows = []
    for user in sorted(set(log["user"].tolist())):
        rows = sorted(
            [(float(r["timestamp"]), int(r["video"]), float(r["watch_time"]))
             for r in log if r["user"] == user], key=lambda r: r[0])
        pairs = [(rows[k - 1][1], rows[k]) for k in range(1, len(rows))]
        chunks = []
        while pairs:
            chunks.append(pairs[-max_history:])
            pairs = pairs[:-max_history]
        if max_windows is not None:
            chunks = chunks[:max_windows]
        for chunk in reversed(chunks):
            pad = max_history - len(chunk)
            windows.append({
                "user": user,
                "watch_history": [0] * pad + [p[0] for p in chunk],
                "label": [0] * pad + [p[1][1] for p in chunk],
                "timestamp": [0.0] * pad + [p[1][0] for p in chunk],
                "watch_time": [0.0] * pad + [p[1][2] for p in chunk],
            })
    return windows


@pytest.mark.parametrize("max_history,max_windows", [(1, None), (3, None), (4, 1), (5, 2),
                                                     (20, None)])
def test_matches_python_reference(max_history, max_windows, tmp_path):
    log = random_log(seed=max_history)
    ref = reference(log, max_history, max_windows)
    ex = sequence_examples(log, max_history=max_history, max_windows_per_user=max_windows)
    assert ex["watch_history"].shape == ex["label"].shape == (len(ref), max_history)
    assert ex["watch_history"].dtype == ex["label"].dtype == np.int64
    assert ex["example_age"].dtype == np.float32 and ex["sequence_length"].dtype == np.int32
    for key in ("user", "watch_history", "label", "timestamp"):
        np.testing.assert_array_equal(ex[key], np.array([w[key] for w in ref]), err_msg=key)
    np.testing.assert_allclose(ex["watch_time"], [w["watch_time"] for w in ref], rtol=1e-6)
    np.testing.assert_array_equal(ex["sequence_length"], (ex["label"] > 0).sum(axis=1))
    age = (log["timestamp"].max() - ex["timestamp"]) / 86400.0
    np.testing.assert_allclose(ex["example_age"], np.where(ex["label"] > 0, age, 0.0),
                               rtol=1e-6, atol=1e-9)
    # Streaming over user-sorted chunks (users split across chunks) gives the same windows.
    sorted_log = log[np.argsort(log["user"], kind="stable")]
    chunked = sequence_examples([sorted_log[i : i + 7] for i in range(0, len(log), 7)],
                                max_history=max_history, max_windows_per_user=max_windows)
    for key in ex:
        np.testing.assert_array_equal(chunked[key], ex[key], err_msg=key)


def test_every_watch_once_and_same_labels_as_candidate_examples():
    log = random_log(seed=7)
    ex = sequence_examples(log, max_history=4, max_windows_per_user=None)
    cand = candidate_examples(log, max_history=4, max_examples_per_user=None, min_history=0)
    # Every watch but each user's first is a label exactly once.
    sequence_pairs = sorted(
        (int(u), int(v)) for u, row in zip(ex["user"], ex["label"]) for v in row if v)
    first = {}
    for u, t, v in sorted(zip(cand["user"], cand["timestamp"], cand["label"]),
                          key=lambda r: (r[0], r[1])):
        first.setdefault(int(u), (t, v))
    assert len(sequence_pairs) == len(log) - len(first)
    all_pairs = sorted((int(u), int(v)) for u, v in zip(log["user"], log["video"]))
    for pair in sequence_pairs:
        all_pairs.remove(pair)
    assert len(all_pairs) == len(first)


def test_hand_checked_and_reference_time():
    log = {"user": [3, 3, 3, 9], "video": [10, 11, 12, 5],
           "timestamp": [0.0, 86400.0, 2 * 86400.0, 0.0], "watch_time": [1.0, 2.0, 3.0, 4.0]}
    ex = sequence_examples(log, max_history=3, example_age_reference=4 * 86400.0)
    assert ex["watch_history"].tolist() == [[0, 10, 11]]
    assert ex["label"].tolist() == [[0, 11, 12]]
    np.testing.assert_allclose(ex["example_age"], [[0.0, 3.0, 2.0]])
    np.testing.assert_allclose(ex["watch_time"], [[0.0, 2.0, 3.0]])
    assert ex["user"].tolist() == [3] and ex["sequence_length"].tolist() == [2]


def test_empty_and_bad_arguments():
    empty = sequence_examples({"user": [1], "video": [4], "timestamp": [0]}, max_history=5)
    assert empty["watch_history"].shape == (0, 5) and empty["user"].shape == (0,)
    log = {"user": [1, 1], "video": [4, 5], "timestamp": [0, 1]}
    with pytest.raises(ValueError, match="max_history"):
        sequence_examples(log, max_history=0)
    with pytest.raises(ValueError, match="max_windows_per_user"):
        sequence_examples(log, max_windows_per_user=0)
    with pytest.raises(ValueError, match="example_age_reference"):
        sequence_examples(log, example_age_reference=float("nan"))
    with pytest.raises(ValueError, match="sorted by 'user'"):
        sequence_examples([np.array([(2, 4, 0.0, 1.0)], WATCH_DTYPE),
                           np.array([(1, 4, 0.0, 1.0)], WATCH_DTYPE)])
