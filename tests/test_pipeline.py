"""`keras_yt.pipeline`: the serving state a run folder stores for each user."""

import numpy as np
import pytest

from keras_yt import pipeline
from keras_yt.data.io import WATCH_DTYPE


@pytest.mark.parametrize("max_history", [1, 3, 8])
def test_latest_history_is_every_last_watch_same_second_ones_included(max_history):
    # Many watches share a second, the latest ones too: at serving time they are all past
    # watches, so the stored history is each user's last `max_history` in time, ties in the
    # log's order (a plain stable sort per user is the reference).
    rng = np.random.default_rng(0)
    n, num_users = 400, 12
    watches = np.zeros(n, WATCH_DTYPE)
    watches["user"] = rng.integers(1, num_users, n)
    watches["video"] = rng.integers(1, 50, n)
    watches["timestamp"] = rng.integers(0, 6, n)  # about 6 watches of a user per second
    latest = pipeline.latest_features(watches, num_users, max_history)["watch_history"]
    assert latest.shape == (num_users, max_history) and not latest[0].any()
    ties_at_the_end = 0
    for user in range(1, num_users):
        mine = watches[watches["user"] == user]
        mine = mine[np.argsort(mine["timestamp"], kind="stable")]
        expected = np.zeros(max_history, np.int64)
        tail = mine["video"][-max_history:]
        expected[max_history - len(tail):] = tail
        np.testing.assert_array_equal(latest[user], expected, err_msg=f"user {user}")
        ties_at_the_end += int(mine["timestamp"][-1] == mine["timestamp"][-2])
    assert ties_at_the_end >= 5  # the case that used to lose the same-second watches
