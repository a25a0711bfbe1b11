"""AUC and the weighted per-user loss against hand-checked values and brute-force pair counts."""

import math

import numpy as np
import pytest
from scipy import stats

from keras_yt.metrics import auc, weighted_per_user_loss


def brute_auc(labels, scores):
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def brute_loss(users, clicked, watch_time, scores):
    num = den = 0.0
    for i in range(len(users)):
        if not clicked[i]:
            continue
        for j in range(len(users)):
            if clicked[j] or users[j] != users[i]:
                continue
            den += watch_time[i]
            if scores[j] > scores[i]:
                num += watch_time[i]
            elif scores[j] == scores[i]:
                num += 0.5 * watch_time[i]
    return num / den if den else float("nan")


def test_auc_hand_checked_and_references():
    assert auc([1, 0], [0.2, 0.1]) == 1.0
    assert auc([1, 0], [0.1, 0.2]) == 0.0
    assert auc([1, 0, 1, 0], [0.9, 0.9, 0.8, 0.1]) == pytest.approx(0.625)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=300)
    scores = rng.integers(0, 20, size=300).astype(float)  # many ties
    expected = brute_auc(labels, scores)
    assert auc(labels, scores) == pytest.approx(expected)
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    assert auc(labels.astype(bool), scores) == pytest.approx(
        u / (labels.sum() * (1 - labels).sum()))
    with pytest.raises(ValueError, match="both classes"):
        auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels must hold 0/1"):
        auc([1, 2], [0.1, 0.2])


def test_weighted_per_user_loss_hand_checked():
    # User 1: positives 10s (0.9) and 30s (0.2), negative 0.5 -> the 30s pair is wrong.
    # User 2: positive 5s ties its negative -> half. User 3 has no negative: no pairs.
    value = weighted_per_user_loss(
        users=[1, 1, 1, 2, 2, 3], clicked=[1, 1, 0, 1, 0, 1],
        watch_time=[10.0, 30.0, 0.0, 5.0, 7.0, 99.0], scores=[0.9, 0.2, 0.5, 0.3, 0.3, 0.0])
    assert value == pytest.approx((30 + 2.5) / (10 + 30 + 5))
    # Two negatives for one positive: its watch time counts per pair.
    value = weighted_per_user_loss([1, 1, 1], [1, 0, 0], [4.0, 0, 0], [0.5, 0.6, 0.1])
    assert value == pytest.approx(0.5)
    # Pairs never cross users: user 2's high negative does not hurt user 1.
    assert weighted_per_user_loss([1, 1, 2, 2], [1, 0, 1, 0], [1.0, 0, 1.0, 0],
                                  [0.5, 0.1, 0.9, 0.8]) == 0.0
    assert math.isnan(weighted_per_user_loss([1, 2], [1, 0], [3.0, 0.0], [0.0, 1.0]))


def test_weighted_per_user_loss_matches_brute_force():
    rng = np.random.default_rng(1)
    n = 250
    users = rng.choice([3, 10, 11, 42, 7], size=n)
    clicked = (rng.uniform(size=n) < 0.4).astype(int)
    watch_time = np.where(clicked, rng.uniform(0, 100, n), rng.uniform(0, 5, n))
    scores = rng.integers(0, 10, size=n) / 3.0
    expected = brute_loss(users, clicked, watch_time, scores)
    assert weighted_per_user_loss(users, clicked, watch_time, scores) == pytest.approx(expected)
    # Perfect scores (positives above all negatives) give 0; the reverse gives 1.
    perfect = clicked + rng.uniform(0, 0.5, n)
    assert weighted_per_user_loss(users, clicked, watch_time, perfect) == 0.0
    assert weighted_per_user_loss(users, clicked, watch_time, -perfect) == 1.0
    with pytest.raises(ValueError, match="watch_time must have 250 entries"):
        weighted_per_user_loss(users, clicked, watch_time[:-1], scores)
