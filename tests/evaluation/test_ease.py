import numpy as np
import pytest

from keras_yt.evaluation import EASE


def _log(seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 25, 300)
    videos = rng.integers(1, 30, 300)
    return {"user": users, "video": videos, "timestamp": np.arange(300.0)}


def _reference_weights(log, num_items, l2):
    """Solves the constrained least squares column by column (Lagrange multiplier form)."""
    users = np.unique(log["user"])
    X = np.zeros((len(users), num_items))
    X[np.searchsorted(users, log["user"]), log["video"]] = 1.0
    B = np.zeros((num_items, num_items))
    for j in range(num_items):
        # minimise ||X_j - X b||^2 + l2 ||b||^2 with b_j = 0: drop item j from the regressors.
        keep = np.arange(num_items) != j
        Xk = X[:, keep]
        B[keep, j] = np.linalg.solve(Xk.T @ Xk + l2 * np.eye(num_items - 1), Xk.T @ X[:, j])
    return X, B, users


@pytest.mark.parametrize("l2", [0.5, 20.0])
def test_weights_and_scores_equal_a_column_by_column_least_squares(l2):
    log = _log()
    X, B, users = _reference_weights(log, 31, l2)
    ease = EASE(l2=l2).fit(log, num_items=31)
    np.testing.assert_allclose(ease.weights, B, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.diag(ease.weights), 0.0)
    np.testing.assert_allclose(ease.score(users[:5]), X[:5] @ B, rtol=1e-4, atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="l2"):
        EASE(l2=0)
    with pytest.raises(RuntimeError, match="fit"):
        EASE().score([1])
    with pytest.raises(ValueError, match="no training watches"):
        EASE().fit(_log()).score([999])
