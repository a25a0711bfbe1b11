"""`Popularity`: the most-watched-items baseline."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_yt.evaluation._interactions import user_item_matrix


class Popularity:
    """Scores every item by the number of distinct users who watched it in training.

    The same list for everybody: the baseline a personalised model has to beat first.

    Example:

    >>> log = {"user": [1, 2, 2], "video": [1, 1, 2], "timestamp": [0, 0, 1]}
    >>> Popularity().fit(log).score([1, 2]).tolist()  # column j: item j (0 is padding)
    [[0.0, 2.0, 1.0], [0.0, 2.0, 1.0]]
    """

    def __init__(self):
        self.item_counts = None

    def fit(self, watches: Any, num_items: int | None = None) -> Popularity:
        """Counts the users of each item.

        Args:
            watches: a watch log with model ids (see `keras_yt.data.to_watch_log`).
            num_items: size of the id space including padding 0 (default: largest id + 1).

        Returns:
            `self`.
        """
        matrix, _ = user_item_matrix(watches, num_items)
        self.item_counts = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)
        return self

    def score(self, users: Any) -> np.ndarray:
        """`(len(users), num_items)` scores: the item counts, the same for every user."""
        if self.item_counts is None:
            raise RuntimeError("Popularity.score needs fit() first")
        return np.tile(self.item_counts, (len(np.asarray(users)), 1))
