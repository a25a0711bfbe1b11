"""Serving the candidate generator: top-k of `u · W_j + b_j` over the output video embeddings.

* `ExactIndex` — brute-force batched maximum-inner-product search (matrix product + top-k); the
  reference.
* `CandidateIndex` — approximate search with PyNNDescent (exact bias-folding reduction),
  saved and loaded as HDF5 without pickle.
* `export_saved_model(model, path, vocabulary)` — SavedModel of the user tower (taking raw ids
  with a vocabulary) / the ranker.
* `Recommender` — top-k for a user of a run folder, raw ids in and out, watched videos left out;
  `keras_yt.serving.service` serves it over HTTP (`keras-yt serve`).
* `SwappableRecommender` — a `Recommender` that another run replaces atomically (`POST /reload`).
* `warm_up()` — fills the persistent numba cache once per installation.

Importing this package loads neither Keras nor pynndescent / numba: each name loads its module on
first use; pynndescent loads only when a `CandidateIndex` is built or loaded (after
`NUMBA_CACHE_DIR` has been pointed at the Keras cache folder).
"""

import importlib

_EXPORTS = {
    "CandidateIndex": "keras_yt.serving.candidate_index",
    "ExactIndex": "keras_yt.serving.exact_index",
    "Recommender": "keras_yt.serving.recommender",
    "SwappableRecommender": "keras_yt.serving.swappable",
    "export_saved_model": "keras_yt.serving.export",
    "warm_up": "keras_yt.serving.numba_cache",
}

__all__ = ["CandidateIndex", "ExactIndex", "Recommender", "SwappableRecommender",
           "export_saved_model", "warm_up"]


def __getattr__(name: str):
    # Loaded on first use: `ExactIndex` on small queries and the `Recommender` of `keras-yt
    # recommend` run on numpy alone, without loading TensorFlow.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'keras_yt.serving' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
