import numpy as np
import pytest

from keras_yt import metrics
from keras_yt.evaluation import LeaveLastOut, held_out_ranks, metrics_from_ranks


def _random_log(seed=0, num_users=30, num_items=40):
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, num_users + 1):
        n = rng.integers(1, 70)
        items = rng.choice(np.arange(1, num_items), size=min(n, num_items - 1), replace=False)
        times = rng.integers(0, 20, size=len(items))  # many ties in time
        rows += [(user, item, t) for item, t in zip(items, times)]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    return {"user": np.array([r[0] for r in rows]), "video": np.array([r[1] for r in rows]),
            "timestamp": np.array([r[2] for r in rows], dtype=float)}, num_items


def test_split_holds_out_the_last_watch_with_ties_broken_by_log_order():
    log = {"user": [7, 7, 7, 7, 9, 9], "video": [4, 5, 6, 8, 1, 2],
           "timestamp": [10, 30, 30, 20, 5, 6]}
    split = LeaveLastOut(log, max_history=3)
    # User 7 in time order: 4 (10), 8 (20), then 5 and 6 both at 30: the later row (6) is last.
    assert split.test["user"].tolist() == [7, 9]
    assert split.test["label"].tolist() == [6, 2]
    assert split.validation["label"].tolist() == [5]  # user 9 has no watch before its last-but-one
    # Inputs are the watches strictly before the held-out one in time: 5 (same second) is not one.
    assert split.test["watch_history"][0].tolist() == [0, 4, 8]
    assert sorted(split.train_watches["video"].tolist()) == [1, 4, 5, 8]
    assert sorted(split.fit_watches["video"].tolist()) == [1, 4, 8]
    assert [s.tolist() for s in split.seen()] == [[4, 5, 8], [1]]
    assert [s.tolist() for s in split.seen("validation")] == [[4, 8]]


def test_sequence_protocol_ties_by_video_id_and_same_second_history():
    log = {"user": [7, 7, 7, 7, 9, 9], "video": [6, 5, 4, 8, 2, 1],
           "timestamp": [30, 30, 10, 20, 6, 6]}
    split = LeaveLastOut(log, max_history=3, ties="video_id", same_time_history=True)
    # User 7 in order: 4 (10), 8 (20), then 5 before 6 at 30 (smaller id first): 6 is last.
    assert split.test["label"].tolist() == [6, 2]
    assert split.test["watch_history"].tolist() == [[4, 8, 5], [0, 0, 1]]  # 5 and 1: same second
    assert split.validation["label"].tolist() == [5]  # user 9's only other watch has no history
    assert split.validation["watch_history"].tolist() == [[0, 4, 8]]
    assert split.train_watches["video"].tolist() == [4, 8, 5, 1]  # in the split's order


@pytest.mark.parametrize("seed", [0, 1])
def test_sequence_protocol_matches_a_python_reference(seed):
    log, _ = _random_log(seed)
    split = LeaveLastOut(log, max_history=4, ties="video_id", same_time_history=True)
    timelines = {}
    for user, video, t in zip(log["user"], log["video"], log["timestamp"]):
        timelines.setdefault(int(user), []).append((t, int(video)))
    expected = {}
    for user, rows in timelines.items():
        videos = [v for _, v in sorted(rows)]  # time, then video id
        if len(videos) >= 2:
            expected[user] = (videos[-1], ([0] * 4 + videos[:-1])[-4:])
    assert split.test["user"].tolist() == sorted(expected)
    assert split.test["label"].tolist() == [expected[u][0] for u in sorted(expected)]
    assert split.test["watch_history"].tolist() == [expected[u][1] for u in sorted(expected)]


def test_filtered_seen_items_are_the_whole_history_not_the_last_max_history():
    n = 30
    log = {"user": [1] * n, "video": list(range(1, n + 1)), "timestamp": list(range(n))}
    split = LeaveLastOut(log, max_history=5, validation=False)
    assert split.seen()[0].tolist() == list(range(1, n))
    scores = np.arange(n + 1, dtype=float)[None, ::-1].copy()  # item 1 best, item 30 worst
    assert split.ranks(scores, filtered=False).tolist() == [n - 1]
    assert split.ranks(scores).tolist() == [0]  # every better item was watched


def _brute_force_rank(scores, label, excluded):
    eligible = [j for j in range(1, len(scores)) if j not in excluded or j == label]
    order = sorted(eligible, key=lambda j: (-scores[j], j))
    return order.index(label)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_equal_brute_force_with_ties(seed):
    log, num_items = _random_log(seed)
    split = LeaveLastOut(log, num_items=num_items + 3)
    rng = np.random.default_rng(seed)
    for name in ("test", "validation"):
        labels = split.examples(name)["label"]
        scores = rng.integers(0, 5, size=(len(labels), split.num_items)).astype(float)
        seen = split.seen(name)
        expected_unfiltered = [_brute_force_rank(s, lab, set()) for s, lab in zip(scores, labels)]
        expected_filtered = [_brute_force_rank(s, lab, set(x.tolist()))
                             for s, lab, x in zip(scores, labels, seen)]
        assert split.ranks(scores, name, filtered=False).tolist() == expected_unfiltered
        assert split.ranks(scores, name).tolist() == expected_filtered


def test_evaluate_matches_the_metrics_of_top_k_lists():
    log, num_items = _random_log(5)
    split = LeaveLastOut(log)
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(len(split.test["label"]), split.num_items))
    result = split.evaluate(scores, ks=(1, 5, 10))
    labels = split.test["label"]
    for name, exclude in (("unfiltered", None), ("filtered", split.seen())):
        ranked = metrics.rank_top_k(scores, 10, exclude=exclude)
        for k in (1, 5, 10):
            got = result[name]
            assert got[f"hr@{k}"] == pytest.approx(metrics.hit_rate_at_k(ranked, labels, k))
            assert got[f"ndcg@{k}"] == pytest.approx(metrics.ndcg_at_k(ranked, labels, k))
            assert got[f"mrr@{k}"] == pytest.approx(metrics.mrr_at_k(ranked, labels, k))


def test_a_held_out_item_watched_before_stays_a_candidate():
    log = {"user": [1, 1, 1, 1], "video": [2, 1, 3, 2], "timestamp": [0, 1, 2, 3]}  # rewatch of 2
    split = LeaveLastOut(log, validation=False)
    scores = np.array([[0.0, 3.0, 2.0, 1.0]])
    assert split.ranks(scores, filtered=False).tolist() == [1]
    assert split.ranks(scores).tolist() == [0]  # item 1 (watched) removed, item 2 kept


def test_metrics_from_ranks():
    result = metrics_from_ranks(np.array([0, 1, 9, 50]), ks=(10,))
    assert result["hr@10"] == 0.75
    assert result["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4)
    assert result["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 4)


def test_bad_input_gets_a_clear_error():
    log = {"user": [1, 1, 1], "video": [1, 2, 3], "timestamp": [0, 1, 2]}
    split = LeaveLastOut(log, validation=False)
    with pytest.raises(ValueError, match=r"scores must have shape \(num_examples, num_items\) = "
                                         r"\(1, 4\).*got shape \(1, 3\)"):
        split.ranks(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"labels must be 1 integer ids in \[1, 3\)"):
        held_out_ranks(np.zeros((1, 3)), np.array([3]))
    with pytest.raises(ValueError, match="finite"):
        split.ranks(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="split must be 'test' or 'validation', got 'train'"):
        split.ranks(np.zeros((1, 4)), split="train")
    with pytest.raises(ValueError, match="validation=True"):
        split.seen("validation")
    with pytest.raises(ValueError, match=r"num_items must be an integer > the largest video id "
                                         r"\(3\), got 3"):
        LeaveLastOut(log, num_items=3)
    with pytest.raises(ValueError, match=r"ties must be one of \('log_order', 'video_id'\), "
                                         r"got 'time'"):
        LeaveLastOut(log, ties="time")
    with pytest.raises(ValueError, match="same_time_history must be a bool, got 1"):
        LeaveLastOut(log, same_time_history=1)
    with pytest.raises(ValueError, match="ks must hold positive integers"):
        split.evaluate(np.zeros((1, 4)), ks=(0,))
