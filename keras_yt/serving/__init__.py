"""Serving the candidate generator: top-k of `u · W_j + b_j` over the output video embeddings.

* `ExactIndex` — brute-force batched maximum-inner-product search (matrix product + top-k); the
  reference.
* `CandidateIndex` — approximate search with PyNNDescent (exact bias-folding reduction),
  saved and loaded as HDF5 without pickle.
* `export_saved_model(model, path)` — SavedModel of the user tower / the ranker.
* `warm_up()` — fills the persistent numba cache once per installation.

Importing this package does not import pynndescent / numba: they load only when a `CandidateIndex`
is built or loaded (after `NUMBA_CACHE_DIR` has been pointed at the Keras cache folder).
"""

from keras_yt.serving.candidate_index import CandidateIndex
from keras_yt.serving.exact_index import ExactIndex
from keras_yt.serving.export import export_saved_model
from keras_yt.serving.numba_cache import warm_up

__all__ = ["CandidateIndex", "ExactIndex", "export_saved_model", "warm_up"]

