"""The paper's figure 4: how much probability a model gives to videos by their upload age."""

from __future__ import annotations

from typing import Any

import numpy as np

SECONDS_PER_DAY = 86400.0


def probability_by_upload_age(scores: Any, upload_age_days: Any, bins: Any) -> np.ndarray:
    """Mean predicted probability mass of the videos in each upload-age bin.

    Covington et al. (2016), figure 4: a model trained without the example age predicts, for a
    freshly uploaded video, about its average probability over the training window; with the
    example age (set to 0 at serving) it follows the recent, empirical one. This function turns a
    model's scores (logits over every video, e.g. `CandidateGenerator.video_scores`) into the
    softmax probability of each video, averages it over the users, and sums it per bin of upload
    age.

    Args:
        scores: float array `(num_users, num_videos)`; column 0 (padding) is ignored.
        upload_age_days: `(num_videos,)` age of each video at the serving time, in days (the
            padding column's value is ignored; videos outside the bins are left out).
        bins: bin edges in days, increasing (as `numpy.histogram` takes them).

    Returns:
        float64 array `(len(bins) - 1,)`: the mean probability mass in each bin.

    Example:
    >>> scores = np.log(np.array([[1.0, 2.0, 1.0, 1.0]]))  # padding, then 3 videos
    >>> probability_by_upload_age(scores, np.array([0.0, 0.5, 1.5, 9.0]), [0, 1, 2, 10]).round(3)
    array([0.5 , 0.25, 0.25])
    """
    scores = np.asarray(scores, np.float64)
    ages = np.asarray(upload_age_days, np.float64)
    if scores.ndim != 2 or ages.shape != (scores.shape[1],):
        raise ValueError(f"scores must be (num_users, num_videos) and upload_age_days "
                         f"(num_videos,), got shapes {scores.shape} and {ages.shape}")
    logits = scores[:, 1:]
    logits = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    mean = probabilities.mean(axis=0)
    return np.histogram(ages[1:], bins=bins, weights=mean)[0]


def watches_by_upload_age(watch_times: Any, upload_times: Any, bins: Any) -> np.ndarray:
    """Fraction of watches in each bin of the watched video's age at the watch (the empirical).

    Args:
        watch_times: `(n,)` watch timestamps, seconds.
        upload_times: `(n,)` upload timestamps of the watched videos, seconds.
        bins: bin edges in days, increasing.

    Returns:
        float64 array `(len(bins) - 1,)`, fractions of all `n` watches.

    Example:
    >>> day = 86400.0
    >>> watches_by_upload_age([10 * day, 10 * day], [9.5 * day, 2 * day], [0, 1, 30]).tolist()
    [0.5, 0.5]
    """
    ages = (np.asarray(watch_times, np.float64) - np.asarray(upload_times, np.float64))
    ages = ages / SECONDS_PER_DAY
    if ages.size == 0:
        return np.zeros(len(bins) - 1)
    return np.histogram(ages, bins=bins)[0] / ages.size
