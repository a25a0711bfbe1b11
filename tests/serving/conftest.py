"""Shared corpus and index for the serving tests (the PyNNDescent build compiles once)."""

import numpy as np
import pytest

from keras_yt.serving._synthetic import clustered_corpus, user_vectors


@pytest.fixture(scope="session")
def corpus():
    """Clustered item embeddings with lognormal norms and biases, plus ReLU user vectors."""
    W, b, centers = clustered_corpus(6000, 32, num_clusters=40, seed=0)
    U = user_vectors(300, centers, seed=1)
    return W, b, U


@pytest.fixture(scope="session")
def candidate_index(corpus):
    from keras_yt.serving import CandidateIndex

    W, b, _ = corpus
    return CandidateIndex.from_embeddings(W, b, random_state=0, exhaustive_below=0)


def brute_force_top_k(U, W, b, k, exclude=None):
    """Reference: full score matrix, exclusions set to -inf, full stable sort."""
    scores = U.astype(np.float64) @ W.T.astype(np.float64) + b
    if exclude is not None:
        for i, ex in enumerate(exclude):
            ex = [e for e in ex if e != -1]  # -1 is padding; 0 is an id like any other
            scores[i, ex] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def recall(found, expected, k):
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, expected)]))
