"""The simulator: determinism, contracts (ids, sorting, causality) and the signals it plants."""

import time

import numpy as np
import pytest

from keras_yt.data import WATCH_DTYPE, candidate_examples
from keras_yt.datasets.synthetic import SyntheticLogs, watch_logs


@pytest.fixture(scope="module")
def logs() -> SyntheticLogs:
    return watch_logs(num_users=400, num_videos=1500, seed=0)


def arrays(logs):
    return [logs.watches, logs.queries, logs.users, logs.videos, logs.impressions]


def test_deterministic_per_seed():
    a = watch_logs(num_users=80, num_videos=400, seed=3)
    b = watch_logs(num_users=80, num_videos=400, seed=3)
    c = watch_logs(num_users=80, num_videos=400, seed=4)
    for x, y in zip(arrays(a), arrays(b)):
        assert x.dtype == y.dtype
        for name in x.dtype.names:
            np.testing.assert_array_equal(x[name], y[name])
    assert a.vocabulary == b.vocabulary
    assert len(a.watches) != len(c.watches) or not np.array_equal(
        a.watches["video"], c.watches["video"])
    assert not np.array_equal(a.videos["upload_time"], c.videos["upload_time"])


def test_default_size_is_fast():
    start = time.perf_counter()
    logs = watch_logs()
    assert time.perf_counter() - start < 15  # a few seconds; generous for shared CI machines
    assert logs.num_videos == 5000 and logs.num_users == 2000
    assert 20_000 < len(logs.watches) < 200_000


def test_contracts(logs):
    w = logs.watches
    assert w.dtype == WATCH_DTYPE
    assert w["video"].min() >= 1 and w["video"].max() < logs.num_videos
    assert w["user"].min() >= 1 and w["user"].max() <= logs.num_users
    order = np.lexsort((w["timestamp"], w["user"]))
    np.testing.assert_array_equal(order, np.arange(len(w)))
    assert np.all((w["timestamp"] >= 0) & (w["timestamp"] < logs.window_end))
    assert np.all(w["watch_time"] > 0)
    assert np.all(w["watch_time"] <= logs.videos["duration"][w["video"] - 1] + 1e-3)
    # A video is only watched after its upload.
    assert np.all(logs.videos["upload_time"][w["video"] - 1] <= w["timestamp"])
    np.testing.assert_array_equal(logs.videos["id"], np.arange(1, logs.num_videos))
    np.testing.assert_array_equal(logs.users["id"], np.arange(1, logs.num_users + 1))
    for column, size in (("geography", logs.num_geographies), ("gender", logs.num_genders),
                         ("device", logs.num_devices), ("language", logs.num_languages)):
        assert logs.users[column].min() >= 1 and logs.users[column].max() < size
    assert logs.videos["topic"].min() >= 1 and logs.videos["topic"].max() < logs.num_topics
    assert logs.user_factors.shape[0] == logs.num_users + 1
    assert logs.video_factors.shape[0] == logs.num_videos


def test_popularity_follows_ids(logs):
    counts = np.bincount(logs.watches["video"], minlength=logs.num_videos)[1:]
    decile = len(counts) // 10
    assert counts[:decile].sum() > 0.4 * counts.sum()  # head-heavy
    assert counts[:decile].sum() > 10 * counts[-decile:].sum()
    assert np.all(np.diff(logs.videos["popularity"]) <= 0)


def test_freshness_and_example_age_signal(logs):
    w = logs.watches
    age_days = (w["timestamp"] - logs.videos["upload_time"][w["video"] - 1]) / 86400
    # Compare with a popularity-matched but freshness-blind draw: the same videos' ages at
    # random times they were available.
    rng = np.random.default_rng(0)
    upload = logs.videos["upload_time"][w["video"] - 1]
    random_time = rng.uniform(np.maximum(upload, 0), logs.window_end)
    blind_age = (random_time - upload) / 86400
    assert np.median(age_days) < 0.7 * np.median(blind_age)
    assert np.mean(age_days < 7) > 0.3


def test_sequence_and_demographic_signal(logs):
    topic = logs.videos["topic"][logs.watches["video"] - 1]
    same_user = logs.watches["user"][1:] == logs.watches["user"][:-1]
    repeat = np.mean(topic[1:][same_user] == topic[:-1][same_user])
    shares = np.bincount(topic, minlength=logs.num_topics) / len(topic)
    assert repeat > 2 * np.sum(shares ** 2) and repeat > 0.5
    # Topic mix differs by geography (total-variation distance between the two largest geos).
    geo = logs.users["geography"][logs.watches["user"] - 1]
    top2 = np.argsort(np.bincount(geo))[-2:]
    mix = [np.bincount(topic[geo == g], minlength=logs.num_topics) / np.sum(geo == g)
           for g in top2]
    assert 0.5 * np.abs(mix[0] - mix[1]).sum() > 0.2


def test_queries_describe_the_next_watch(logs):
    q = logs.queries
    assert np.all(np.diff(q["user"]) >= 0)
    ex = candidate_examples(logs.watches, max_history=5, max_examples_per_user=None,
                            min_history=0, queries=q, max_queries=1)
    has = ex["search_history"][:, 0] != ""
    vocab = set(logs.vocabulary)
    topic_words = {}
    for title, t in zip(logs.videos["title"], logs.videos["topic"]):
        topic_words.setdefault(int(t), set()).update(title.split())
    label_topic = logs.videos["topic"][ex["label"] - 1]
    match = []
    for text, t in zip(ex["search_history"][has, 0], label_topic[has]):
        words = text.split()
        assert set(words) <= vocab
        match.append(any(word in topic_words[int(t)] for word in words))
    assert np.mean(match) > 0.3  # well above chance (1 / num topics)


def test_impressions(logs):
    imp = logs.impressions
    assert np.all(imp["video"] >= 1) and np.all(imp["video"] < logs.num_videos)
    assert np.all(imp["watch_time"][imp["clicked"] == 0] == 0)
    clicks = imp[imp["clicked"] == 1]
    assert np.all(clicks["watch_time"] > 0)
    # Each click is a watch of the same user and video a little later, with its watch time.
    watched = {(int(u), int(v)): [] for u, v in zip(logs.watches["user"], logs.watches["video"])}
    for u, v, t, wt in logs.watches:
        watched[(int(u), int(v))].append((t, wt))
    for u, v, t, wt in clicks[["user", "video", "timestamp", "watch_time"]][:300]:
        assert any(0 < wt_t - t <= 60 and wt_w == pytest.approx(wt)
                   for wt_t, wt_w in watched[(int(u), int(v))])
    # One click per slate, no repeated video in a slate.
    slates = {}
    for u, v, t, c in imp[["user", "video", "timestamp", "clicked"]]:
        slates.setdefault((int(u), float(t)), []).append((int(v), int(c)))
    for slate in slates.values():
        assert sum(c for _, c in slate) == 1
        assert len({v for v, _ in slate}) == len(slate)
    # Causal features, by brute force on the first users.
    subset = imp[imp["user"] <= 20]
    for r in subset:
        w = logs.watches[(logs.watches["user"] == r["user"]) &
                         (logs.watches["timestamp"] < r["timestamp"])]
        since = r["timestamp"] - w["timestamp"].max() if len(w) else -1.0
        assert r["time_since_last_watch"] == pytest.approx(since, rel=1e-5)
        prev = np.sum((imp["user"] == r["user"]) & (imp["video"] == r["video"]) &
                      (imp["timestamp"] < r["timestamp"]))
        assert r["previous_impressions"] == prev
    assert np.any(imp["previous_impressions"] > 0)


def test_argument_errors():
    with pytest.raises(ValueError, match="num_videos must be >= 21, got 10"):
        watch_logs(num_videos=10)
    with pytest.raises(ValueError, match=r"topic_continuity must be in \[0, 1\], got 2"):
        watch_logs(topic_continuity=2)
