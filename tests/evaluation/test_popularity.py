import numpy as np
import pytest

from keras_yt.evaluation import Popularity


def test_scores_are_distinct_users_per_item():
    log = {"user": [1, 1, 2, 3, 3, 3], "video": [2, 2, 2, 1, 2, 4], "timestamp": np.arange(6)}
    scores = Popularity().fit(log, num_items=6).score(np.array([1, 3]))
    expected = np.array([0, 1, 3, 0, 1, 0], dtype=np.float32)  # user 1's repeat counts once
    np.testing.assert_array_equal(scores, np.stack([expected, expected]))


def test_score_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="fit"):
        Popularity().score([1])
