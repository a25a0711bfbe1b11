"""Probability by upload age (the paper's figure 4) and the sign of the example-age effect."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from keras_yt.evaluation.upload_age import probability_by_upload_age, watches_by_upload_age


def test_probability_by_upload_age_matches_a_softmax_by_hand():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 7))
    ages = np.array([0.0, 0.2, 1.5, 3.0, 9.0, 0.9, 40.0])  # the last one is outside the bins
    bins = [0.0, 1.0, 5.0, 10.0]
    expected = np.zeros(3)
    for row in scores:
        p = np.exp(row[1:]) / np.exp(row[1:]).sum()
        for age, mass in zip(ages[1:], p):
            for b in range(3):
                if bins[b] <= age < bins[b + 1]:
                    expected[b] += mass / len(scores)
    np.testing.assert_allclose(probability_by_upload_age(scores, ages, bins), expected)
    with pytest.raises(ValueError, match="upload_age_days"):
        probability_by_upload_age(scores, ages[:3], bins)


def test_watches_by_upload_age_are_fractions_of_all_watches():
    day = 86400.0
    out = watches_by_upload_age([5 * day, 5 * day, 5 * day, 5 * day], [4.5 * day, 4.9 * day,
                                                                      2 * day, -90 * day],
                                [0, 1, 10])
    np.testing.assert_allclose(out, [0.5, 0.25])  # the 95-day-old video is outside the bins


@pytest.mark.slow
def test_example_age_moves_probability_to_fresh_videos_on_the_simulator():
    """With the example age the model gives recent uploads more probability than without, and
    is closer to the empirical distribution of the last days (the paper's figure 4)."""
    path = Path(__file__).resolve().parents[2] / "docs" / "make_freshness_figure.py"
    spec = importlib.util.spec_from_file_location("make_freshness_figure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.measure(num_users=400, num_videos=300, days=20.0, epochs=3, max_history=20)
    fresh = slice(0, 3)  # uploaded in the last 6 days
    with_age = np.sum(result["with_example_age"][fresh])
    without = np.sum(result["without_example_age"][fresh])
    empirical = np.sum(result["empirical"][fresh])
    assert with_age > without
    assert abs(empirical - with_age) < abs(empirical - without)
