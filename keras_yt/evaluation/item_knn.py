"""`ItemKNN`: item-based nearest neighbours on co-occurrence cosine similarity."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_yt.evaluation._interactions import rows_of, user_item_matrix


class ItemKNN:
    """Item-kNN: an item scores the summed cosine similarity to the items the user watched.

    The similarity of items i and j is `|U_i ∩ U_j| / sqrt(|U_i| |U_j|)` (U_i: the users who
    watched i), i.e. the cosine of the columns of the binary user × item matrix X; each item
    keeps its `num_neighbors` most similar items (all when `None`). A user's scores are
    `x_u · S`.

    Args:
        num_neighbors: similar items kept per item, or `None` for all.

    Example:

    >>> log = {"user": [1, 1, 2, 2, 3], "video": [1, 2, 1, 2, 3], "timestamp": [0, 1, 0, 1, 0]}
    >>> knn = ItemKNN().fit(log)
    >>> knn.score([3]).round(3).tolist()  # user 3 watched item 3 only: co-watched with nothing
    [[0.0, 0.0, 0.0, 1.0]]
    """

    def __init__(self, num_neighbors: int | None = 100):
        if num_neighbors is not None and (
            not isinstance(num_neighbors, (int, np.integer)) or isinstance(num_neighbors, bool)
            or num_neighbors < 1
        ):
            raise ValueError(f"num_neighbors must be a positive integer or None, got "
                             f"{num_neighbors!r}")
        self.num_neighbors = num_neighbors
        self.similarity = None
        self._matrix = None
        self._users = None

    def fit(self, watches: Any, num_items: int | None = None) -> ItemKNN:
        """Computes the item × item cosine similarities from the training watches.

        Args:
            watches: a watch log with model ids (see `keras_yt.data.to_watch_log`).
            num_items: size of the id space including padding 0 (default: largest id + 1).

        Returns:
            `self`.
        """
        self._matrix, self._users = user_item_matrix(watches, num_items)
        norms = np.sqrt(np.asarray(self._matrix.sum(axis=0)).ravel())
        inverse = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        co = (self._matrix.T @ self._matrix).toarray()
        similarity = co * inverse[:, None] * inverse[None, :]
        if self.num_neighbors is not None and self.num_neighbors < similarity.shape[1]:
            cut = np.partition(similarity, -self.num_neighbors, axis=1)[:, -self.num_neighbors]
            similarity[similarity < cut[:, None]] = 0.0
        self.similarity = similarity.astype(np.float32)
        return self

    def score(self, users: Any) -> np.ndarray:
        """`(len(users), num_items)` scores of the items for users seen in `fit`."""
        if self.similarity is None:
            raise RuntimeError("ItemKNN.score needs fit() first")
        rows = rows_of(users, self._users)
        return np.asarray(self._matrix[rows] @ self.similarity, dtype=np.float32)
