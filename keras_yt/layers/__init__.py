"""Layers of the YouTube recommender: input features, the candidate head and the ranking head.

* `EmbeddingBag` — averaged watch-history embeddings (id 0 = padding).
* `TokenBag` — search queries → unigram/bigram tokens → hashed, averaged embeddings.
* `HistoryEncoder` — causal self-attention over the ordered watch history (user state).
* `ExampleAge` — the example's age in training, a fixed value (0) at serving.
* `QuantileNormalization` — empirical-CDF normalisation with x̃² and √x̃.
* `SampledSoftmax` — candidate-generation head owning the output video embeddings W and biases b.
* `WeightedLogisticRegression` — ranking head: logit in training, exp(logit) ≈ watch time served.
"""

from keras_yt.layers.embedding_bag import EmbeddingBag
from keras_yt.layers.example_age import ExampleAge
from keras_yt.layers.history_encoder import HistoryEncoder
from keras_yt.layers.quantile_normalization import QuantileNormalization
from keras_yt.layers.sampled_softmax import SampledSoftmax
from keras_yt.layers.token_bag import TokenBag
from keras_yt.layers.weighted_logistic_regression import WeightedLogisticRegression

__all__ = [
    "EmbeddingBag",
    "ExampleAge",
    "HistoryEncoder",
    "QuantileNormalization",
    "SampledSoftmax",
    "TokenBag",
    "WeightedLogisticRegression",
]
