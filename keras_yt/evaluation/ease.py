"""`EASE`: the closed-form item-item linear autoencoder of Steck (2019)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.linalg

from keras_yt.evaluation._interactions import rows_of, user_item_matrix


class EASE:
    """EASE (Embarrassingly Shallow AutoEncoder, Steck 2019): a user's scores are `x_u · B`.

    X is the binary user × item matrix of the training watches and G = XᵀX + λI its regularised
    Gram matrix. B is the item × item weight matrix minimising `‖X − XB‖² + λ‖B‖²` under the
    constraint `diag(B) = 0` (an item may not predict itself); its closed form is
    `B = I − P / diag(P)` (column-wise) with `P = G⁻¹`. One matrix inversion of size
    `num_items`: fine up to some 10⁴ items, O(num_items²) memory.

    Args:
        l2: the regularisation λ (> 0); Steck's MovieLens-20M value is 500, smaller data wants
            less (200 on MovieLens-100K, docs/quality.md).

    Example:

    >>> log = {"user": [1, 1, 2, 2, 3], "video": [1, 2, 1, 2, 1], "timestamp": [0, 1, 0, 1, 0]}
    >>> ease = EASE(l2=1.0).fit(log)
    >>> ease.score([3]).round(2).tolist()  # user 3 watched item 1, which co-occurs with 2
    [[0.0, 0.0, 0.5]]
    """

    def __init__(self, l2: float = 200.0):
        if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not np.isfinite(l2) or (
            l2 <= 0
        ):
            raise ValueError(f"l2 must be a finite number > 0, got {l2!r}")
        self.l2 = float(l2)
        self.weights = None
        self._matrix = None
        self._users = None

    def fit(self, watches: Any, num_items: int | None = None) -> EASE:
        """Computes the item × item weights B in closed form from the training watches.

        Args:
            watches: a watch log with model ids (see `keras_yt.data.to_watch_log`).
            num_items: size of the id space including padding 0 (default: largest id + 1).

        Returns:
            `self`.
        """
        self._matrix, self._users = user_item_matrix(watches, num_items)
        gram = (self._matrix.T @ self._matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        weights = -inverse / np.diag(inverse)[None, :]
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights = weights.astype(np.float32)
        return self

    def score(self, users: Any) -> np.ndarray:
        """`(len(users), num_items)` scores of the items for users seen in `fit`."""
        if self.weights is None:
            raise RuntimeError("EASE.score needs fit() first")
        rows = rows_of(users, self._users)
        return np.asarray(self._matrix[rows] @ self.weights, dtype=np.float32)
