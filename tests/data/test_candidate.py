"""candidate_examples / leave_last_out_split against hand-checked cases and a pure-Python
reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_yt.data import WATCH_DTYPE, candidate_examples, leave_last_out_split


def random_log(seed, num_users=15, max_watches=12, num_videos=30, time_range=20):
    rng = np.random.default_rng(seed)
    rows = []
    for user in rng.choice(np.arange(1, 100), size=num_users, replace=False):
        for _ in range(rng.integers(0, max_watches)):
            rows.append((user, rng.integers(1, num_videos), rng.integers(0, time_range),
                         rng.uniform(1, 100)))
    order = rng.permutation(len(rows))
    log = np.array([rows[i] for i in order], dtype=WATCH_DTYPE)
    return log


def reference(log, max_history, max_examples, min_history):
    """Pure Python: per user, stable time sort; history = watches strictly earlier in time."""
    out = []
    for user in sorted(set(log["user"].tolist())):
        rows = [(float(r["timestamp"]), int(r["video"])) for r in log if r["user"] == user]
        rows = sorted(rows, key=lambda r: r[0])  # stable
        examples = []
        for t, v in rows:
            hist = [hv for ht, hv in rows if ht < t]
            if len(hist) >= min_history:
                hist = hist[-max_history:]
                examples.append((user, t, v, [0] * (max_history - len(hist)) + hist))
        if max_examples is not None:
            examples = examples[-max_examples:] if max_examples else []
        out.extend(examples)
    return out


def assert_matches(ex, ref, max_history):
    assert len(ex["label"]) == len(ref)
    assert ex["watch_history"].shape == (len(ref), max_history)
    assert ex["watch_history"].dtype == np.int64 and ex["label"].dtype == np.int64
    assert ex["example_age"].dtype == np.float32
    for i, (user, t, v, hist) in enumerate(ref):
        assert ex["user"][i] == user and ex["timestamp"][i] == t and ex["label"][i] == v
        assert ex["watch_history"][i].tolist() == hist


def test_hand_checked_example():
    log = {"user": [7, 7, 7, 7, 3], "video": [10, 11, 12, 13, 5],
           "timestamp": [0.0, 86400.0, 86400.0, 3 * 86400.0, 0.0]}
    ex = candidate_examples(log, max_history=3, max_examples_per_user=None)
    # Videos 11 and 12 share a timestamp: neither is in the other's history.
    assert ex["label"].tolist() == [11, 12, 13]
    assert ex["watch_history"].tolist() == [[0, 0, 10], [0, 0, 10], [10, 11, 12]]
    assert ex["history_length"].tolist() == [1, 1, 3]
    np.testing.assert_allclose(ex["example_age"], [2.0, 2.0, 0.0])
    ex = candidate_examples(log, max_history=2, max_examples_per_user=1,
                            example_age_reference=5 * 86400.0)
    assert ex["label"].tolist() == [13] and ex["watch_history"].tolist() == [[11, 12]]
    np.testing.assert_allclose(ex["example_age"], [2.0])
    ex = candidate_examples(log, max_history=2, min_history=0, max_examples_per_user=None)
    assert ex["label"].tolist() == [5, 10, 11, 12, 13]
    assert ex["watch_history"][0].tolist() == [0, 0]


@pytest.mark.parametrize("max_history,max_examples,min_history", [(3, None, 1), (4, 2, 1),
                                                                  (2, 3, 0), (5, 1, 3)])
def test_matches_python_reference(max_history, max_examples, min_history, tmp_path):
    log = random_log(seed=max_history * 10 + min_history)
    ref = reference(log, max_history, max_examples, min_history)
    ex = candidate_examples(log, max_history=max_history, max_examples_per_user=max_examples,
                            min_history=min_history)
    assert_matches(ex, ref, max_history)
    np.testing.assert_allclose(
        ex["example_age"], (log["timestamp"].max() - ex["timestamp"]) / 86400.0, rtol=1e-6)
    # Streaming: chunks sorted by user (rows of one user split across chunks), and a CSV file.
    by_user = log[np.argsort(log["user"], kind="stable")]
    chunks = [by_user[i : i + 7] for i in range(0, len(by_user), 7)]
    assert_matches(candidate_examples(iter(chunks), max_history=max_history,
                                      max_examples_per_user=max_examples,
                                      min_history=min_history), ref, max_history)
    path = tmp_path / "log.csv"
    with open(path, "w") as f:
        f.write("timestamp,user,video\n")
        for r in by_user:
            f.write(f"{int(r['timestamp'])},{r['user']},{r['video']}\n")
    streamed = candidate_examples(path, max_history=max_history, chunk_size=5,
                                  max_examples_per_user=max_examples, min_history=min_history)
    assert_matches(streamed, ref, max_history)


def test_no_leakage_and_truncation():
    rng = np.random.default_rng(3)
    rows = []
    for user in range(1, 30):
        videos = rng.choice(np.arange(1, 500), size=rng.integers(1, 40), replace=False)
        for v in videos:
            rows.append((user, v, float(rng.integers(0, 50)), 1.0))
    log = np.array(rows, dtype=WATCH_DTYPE)
    time_of = {(int(r["user"]), int(r["video"])): r["timestamp"] for r in log}
    ex = candidate_examples(log, max_history=5, max_examples_per_user=None)
    assert len(ex["label"]) > 100
    for user, t, label, hist in zip(ex["user"], ex["timestamp"], ex["label"],
                                    ex["watch_history"]):
        items = hist[hist != 0]
        assert len(items) <= 5
        assert all(time_of[(int(user), int(v))] < t for v in items)
        assert time_of[(int(user), int(label))] == t
        earlier = sorted(tv for (u, v), tv in time_of.items() if u == user and tv < t)
        assert len(items) == min(5, len(earlier))
        if len(items):  # newest last: the last item is among the most recent earlier watches
            assert time_of[(int(user), int(items[-1]))] == earlier[-1]
            assert hist[: 5 - len(items)].tolist() == [0] * (5 - len(items))


def test_uniform_cap_is_seeded_subset_and_chunk_independent():
    log = random_log(seed=5, num_users=20, max_watches=30)
    full = candidate_examples(log, max_history=3, max_examples_per_user=None)
    a = candidate_examples(log, max_history=3, max_examples_per_user=4, sampling="uniform",
                           seed=1)
    b = candidate_examples(log, max_history=3, max_examples_per_user=4, sampling="uniform",
                           seed=1, chunk_size=9)
    c = candidate_examples(log, max_history=3, max_examples_per_user=4, sampling="uniform",
                           seed=2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["timestamp"], c["timestamp"])
    users, counts = np.unique(full["user"], return_counts=True)
    a_users, a_counts = np.unique(a["user"], return_counts=True)
    np.testing.assert_array_equal(a_users, users)
    np.testing.assert_array_equal(a_counts, np.minimum(counts, 4))
    full_rows = {(u, t, lab, tuple(h)) for u, t, lab, h in zip(
        full["user"], full["timestamp"], full["label"], full["watch_history"].tolist())}
    for u, t, lab, h in zip(a["user"], a["timestamp"], a["label"], a["watch_history"].tolist()):
        assert (u, t, lab, tuple(h)) in full_rows
    # Not simply the last ones for every user.
    last = candidate_examples(log, max_history=3, max_examples_per_user=4)
    assert not np.array_equal(a["timestamp"], last["timestamp"])


def test_search_history_matches_reference():
    log = random_log(seed=8)
    rng = np.random.default_rng(0)
    users = np.unique(log["user"])
    queries = {"user": rng.choice(users, size=60), "timestamp": rng.integers(0, 20, size=60),
               "text": [f"q{i} word" for i in range(60)]}
    ex = candidate_examples(log, max_history=3, max_examples_per_user=None, queries=queries,
                            max_queries=2)
    assert ex["search_history"].shape == (len(ex["label"]), 2)
    q = sorted(zip(queries["user"], queries["timestamp"], queries["text"]),
               key=lambda r: (r[0], r[1]))
    for user, t, sh in zip(ex["user"], ex["timestamp"], ex["search_history"]):
        earlier = [text for u, qt, text in q if u == user and qt < t][-2:]
        assert sh.tolist() == [""] * (2 - len(earlier)) + earlier


def test_unsorted_chunks_and_bad_arguments():
    log = random_log(seed=1)
    unsorted = [log[:10], log[10:]]
    with pytest.raises(ValueError, match="sorted by 'user'"):
        candidate_examples(iter(unsorted))
    with pytest.raises(ValueError, match="max_history must be an integer >= 1, got 0"):
        candidate_examples(log, max_history=0)
    with pytest.raises(ValueError, match="sampling must be 'last' or 'uniform', got 'x'"):
        candidate_examples(log, sampling="x")
    with pytest.raises(ValueError, match="video"):
        candidate_examples({"user": [1], "video": [0], "timestamp": [0]})
    with pytest.raises(ValueError, match="missing column"):
        candidate_examples({"user": [1], "timestamp": [0]})


def test_leave_last_out_split():
    log = random_log(seed=11, num_users=25)
    train, test = leave_last_out_split(log, max_history=4)
    assert len(train) + len(test["label"]) == len(log)
    expected_test = []
    for user in sorted(set(log["user"].tolist())):
        rows = sorted([(float(r["timestamp"]), int(r["video"])) for r in log if r["user"] == user],
                      key=lambda r: r[0])
        t, v = rows[-1]
        hist = [hv for ht, hv in rows if ht < t]
        if hist:
            expected_test.append((user, t, v, ([0] * 4 + hist)[-4:]))
    assert_matches(test, expected_test, 4)
    # Train = everything but the held-out rows, sorted by user then time.
    counts = {}
    for u, t, v, _ in expected_test:
        counts[u] = counts.get(u, 0) + 1
    assert np.all(np.diff(train["user"]) >= 0)
    for user in set(log["user"].tolist()):
        n_user = int(np.sum(log["user"] == user))
        assert int(np.sum(train["user"] == user)) == n_user - counts.get(user, 0)
    # No test label's timestamp is earlier than a training watch of the same user.
    for u, t, _, _ in expected_test:
        assert train["timestamp"][train["user"] == u].max() <= t


# ------------------------------------------------------------- issue 13: no silent wrong answers

BIG = 2**32 + 7  # does not fit int32: 2**32 + 7 used to become 7


def test_ids_beyond_int32_are_kept():
    # Regression (issue 13, item 2).
    log = {"user": [1, 1, 1], "video": [BIG, BIG + 1, 2**31], "timestamp": [0, 1, 2]}
    ex = candidate_examples(log, max_history=2)
    assert ex["label"].tolist() == [BIG + 1, 2**31]
    assert ex["watch_history"].tolist() == [[0, BIG], [BIG, BIG + 1]]
    train, test = leave_last_out_split(log, max_history=2)
    assert train["video"].tolist() == [BIG, BIG + 1]
    assert test["label"].tolist() == [2**31] and test["watch_history"].tolist() == [[BIG, BIG + 1]]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "yesterday"])
def test_example_age_reference_must_be_finite(bad):
    # Regression (issue 13, item 10): NaN gave NaN example ages.
    log = {"user": [1, 1], "video": [3, 4], "timestamp": [0, 1]}
    with pytest.raises(ValueError, match=r"example_age_reference must be a finite number "
                                         r"\(seconds\) or None, got"):
        candidate_examples(log, example_age_reference=bad)
    with pytest.raises(ValueError, match=r"example_age_reference must be a finite number"):
        leave_last_out_split(log, example_age_reference=bad)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    max_history=st.integers(1, 5),
    cap=st.one_of(st.none(), st.integers(1, 4)),
    min_history=st.integers(0, 3),
    sampling=st.sampled_from(["last", "uniform"]),
    chunk_size=st.integers(1, 50),
)
def test_property_causal_inputs_and_per_user_cap(seed, max_history, cap, min_history, sampling,
                                                  chunk_size):
    log = random_log(seed, num_users=6, max_watches=10, time_range=8)
    ex = candidate_examples(log, max_history=max_history, max_examples_per_user=cap,
                            min_history=min_history, sampling=sampling, seed=seed,
                            chunk_size=chunk_size)
    times = {}
    for r in log:
        times.setdefault((int(r["user"]), int(r["video"])), []).append(float(r["timestamp"]))
    for i in range(len(ex["label"])):
        user, t = int(ex["user"][i]), float(ex["timestamp"][i])
        earlier = sorted(float(r["timestamp"]) for r in log if r["user"] == user and
                         r["timestamp"] < t)
        assert ex["history_length"][i] == min(len(earlier), max_history) >= min(min_history,
                                                                                max_history)
        # every input watch happened strictly before the label's time
        for video in ex["watch_history"][i][ex["watch_history"][i] > 0]:
            assert min(times[(user, int(video))]) < t
    users, counts = np.unique(ex["user"], return_counts=True)
    if cap is not None:
        assert counts.max(initial=0) <= cap
    # the cap keeps exactly min(cap, eligible) examples per user
    for user in set(log["user"].tolist()):
        rows = log[log["user"] == user]
        eligible = sum((rows["timestamp"] < t).sum() >= min_history for t in rows["timestamp"])
        kept = int(counts[users == user].sum())
        assert kept == (eligible if cap is None else min(cap, eligible))
