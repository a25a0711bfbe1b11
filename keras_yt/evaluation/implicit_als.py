"""`ImplicitALS`: Hu, Koren & Volinsky (2008) matrix factorisation by the `implicit` package."""

from __future__ import annotations

from typing import Any

import numpy as np
import threadpoolctl

from keras_yt.evaluation._interactions import rows_of, user_item_matrix


class ImplicitALS:
    """Implicit-feedback ALS, the baseline most users know, trained by `implicit`.

    A thin adapter: `implicit.als.AlternatingLeastSquares` learns user and item factors from the
    binary user × item matrix (confidence `1 + alpha` on watched items); an item's score for a
    user is the dot product of their factors. Needs the optional `implicit` package
    (`pip install "keras-yt[bench]"`).

    Args:
        factors: number of latent factors.
        regularization: L2 regularisation.
        alpha: confidence weight of a watch.
        iterations: ALS sweeps.
        seed: random seed of the factor initialisation.

    Example:

    >>> log = {"user": [1, 1, 2, 2, 3], "video": [1, 2, 1, 2, 3], "timestamp": [0, 1, 0, 1, 0]}
    >>> ImplicitALS(factors=2, seed=0).fit(log).score([1, 3]).shape
    (2, 4)
    """

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
    ):
        for name, value in (("factors", factors), ("iterations", iterations)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("regularization", regularization), ("alpha", alpha)):
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.seed = seed
        self.user_factors = None
        self.item_factors = None
        self._users = None

    def fit(self, watches: Any, num_items: int | None = None) -> ImplicitALS:
        """Learns the user and item factors.

        Args:
            watches: a watch log with model ids (see `keras_yt.data.to_watch_log`).
            num_items: size of the id space including padding 0 (default: largest id + 1).

        Returns:
            `self`.
        """
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as error:
            raise ImportError(
                "ImplicitALS needs the `implicit` package: pip install \"keras-yt[bench]\""
            ) from error
        matrix, self._users = user_item_matrix(watches, num_items)
        with threadpoolctl.threadpool_limits(1, "blas"):  # what `implicit` asks for
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
            )
            model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        return self

    def score(self, users: Any) -> np.ndarray:
        """`(len(users), num_items)` scores `user_factors · item_factorsᵀ` for users seen in fit."""
        if self.user_factors is None:
            raise RuntimeError("ImplicitALS.score needs fit() first")
        rows = rows_of(users, self._users)
        return (self.user_factors[rows] @ self.item_factors.T).astype(np.float32)
