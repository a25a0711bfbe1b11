from keras_yt.layers.embedding_bag import EmbeddingBag  # noqa: F401
from keras_yt.layers.example_age import ExampleAge  # noqa: F401
from keras_yt.layers.quantile_normalization import QuantileNormalization  # noqa: F401
from keras_yt.layers.sampled_softmax import SampledSoftmax  # noqa: F401
from keras_yt.layers.token_bag import TokenBag  # noqa: F401
from keras_yt.layers.weighted_logistic_regression import WeightedLogisticRegression  # noqa: F401
