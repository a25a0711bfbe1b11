"""Data sets: MovieLens-100K (`movielens.load_data`) and the offline simulator
(`synthetic.watch_logs`)."""

from keras_yt.datasets import movielens, synthetic
from keras_yt.datasets.movielens import MovieLensData
from keras_yt.datasets.synthetic import SyntheticLogs

__all__ = ["MovieLensData", "SyntheticLogs", "movielens", "synthetic"]
