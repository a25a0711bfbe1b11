"""watch_log_summary: what a watch log holds, and what training drops, against a brute force."""

from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from keras_yt.data import watch_log_summary


def test_counts_duplicates_and_users_too_short_to_train_on():
    log = {"user": ["a", "a", "a", "a", "b", "b", "c"], "video": [1, 1, 2, 3, 1, 2, 9],
           "timestamp": [5.0, 5.0, 6.0, 7.0, 1.0, 2.0, 3.0]}
    summary = watch_log_summary(log)
    assert summary == {"rows": 7, "duplicate_rows": 1, "users": 3, "videos": 4,
                       "users_without_training_examples": 2, "users_without_test_example": 1,
                       "min_watches": 3}


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 2)),
                max_size=30))
def test_matches_a_brute_force_count(rows):
    log = {"user": [r[0] for r in rows], "video": [r[1] for r in rows],
           "timestamp": [float(r[2]) for r in rows]}
    summary = watch_log_summary(log)
    per_user = Counter(r[0] for r in rows)
    assert summary["rows"] == len(rows)
    assert summary["duplicate_rows"] == len(rows) - len(set(rows))
    assert summary["users"] == len(per_user) and summary["videos"] == len({r[1] for r in rows})
    assert summary["users_without_training_examples"] == sum(c < 3 for c in per_user.values())
    assert summary["users_without_test_example"] == sum(c < 2 for c in per_user.values())
    assert all(isinstance(v, int) for v in summary.values())
    np.testing.assert_equal(len(summary), 7)
