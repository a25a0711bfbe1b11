"""Optimizers for models with large embedding tables."""

from keras_yt.optimizers.sparse_adagrad import SparseAdagrad

__all__ = ["SparseAdagrad"]
