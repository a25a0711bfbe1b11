"""Optimizers for models with large embedding tables: row-wise ("lazy") Adam and Adagrad."""

from keras_yt.optimizers.sparse_adagrad import SparseAdagrad
from keras_yt.optimizers.sparse_adam import SparseAdam

__all__ = ["SparseAdagrad", "SparseAdam"]
