"""Synthetic output embeddings and user vectors for serving tests and benchmarks (private).

The corpus imitates what a trained softmax head tends to look like: item directions grouped in
clusters of uneven size, lognormal (skewed) norms, per-item biases, and user vectors that are the
output of a ReLU (non-negative) and lie near the same clusters.
"""

from __future__ import annotations

import numpy as np


def clustered_corpus(
    num_items: int,
    dim: int,
    num_clusters: int = 50,
    norm_sigma: float = 0.5,
    bias_scale: float = 0.5,
    spread: float = 0.6,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered item embeddings with skewed norms and biases.

    Args:
        num_items: number of rows N of W.
        dim: embedding width d.
        num_clusters: number of direction clusters; sizes follow a Zipf-like law.
        norm_sigma: sigma of the lognormal row norms (0.5 → norms roughly 0.2–5).
        bias_scale: standard deviation of the Gaussian biases.
        spread: within-cluster spread of the directions relative to the unit centre.
        seed: random seed.

    Returns:
        `(W, b, centers)`: W `(N, d)` float32, b `(N,)` float32, cluster centres
        `(num_clusters, d)` float32 (unit norm).

    Example:
    >>> W, b, centers = clustered_corpus(100, 8, num_clusters=4)
    >>> W.shape, b.shape, centers.shape
    ((100, 8), (100,), (4, 8))
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_clusters, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, num_clusters + 1)
    assign = rng.choice(num_clusters, size=num_items, p=weights / weights.sum())
    dirs = centers[assign] + spread * rng.normal(size=(num_items, dim)) / np.sqrt(dim)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    norms = rng.lognormal(0.0, norm_sigma, size=num_items)
    W = (dirs * norms[:, None]).astype(np.float32)
    b = rng.normal(0.0, bias_scale, size=num_items).astype(np.float32)
    return W, b, centers.astype(np.float32)


def user_vectors(
    num_users: int, centers: np.ndarray, spread: float = 0.8, seed: int = 1
) -> np.ndarray:
    """Non-negative (post-ReLU) user vectors near random mixtures of the cluster centres.

    Args:
        num_users: number of user vectors.
        centers: cluster centres `(C, d)` from `clustered_corpus`.
        spread: Gaussian noise added before the ReLU, relative to unit norm.
        seed: random seed.

    Returns:
        float32 array `(num_users, d)` with non-negative entries.

    Example:
    >>> _, _, centers = clustered_corpus(100, 8, num_clusters=4)
    >>> bool((user_vectors(5, centers) >= 0).all())
    True
    """
    rng = np.random.default_rng(seed)
    num_clusters, dim = centers.shape
    mix = rng.dirichlet(np.full(num_clusters, 0.1), size=num_users)
    u = mix @ centers + spread * rng.normal(size=(num_users, dim)) / np.sqrt(dim)
    u *= rng.lognormal(0.0, 0.3, size=(num_users, 1)) * 2.0
    return np.maximum(u, 0.0).astype(np.float32)
