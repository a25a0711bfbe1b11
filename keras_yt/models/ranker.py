"""The ranking model of Covington et al. (2016), figure 7."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_yt import _checks
from keras_yt.layers.embedding_bag import EmbeddingBag
from keras_yt.layers.quantile_normalization import QuantileNormalization
from keras_yt.layers.weighted_logistic_regression import WeightedLogisticRegression
from keras_yt.losses.weighted_logistic_loss import WeightedLogisticLoss
from keras_yt.models._feature_model import FeatureModelMixin
from keras_yt.models.presets import PresetMixin
from keras_yt.optimizers.sparse_adagrad import SparseAdagrad

VIDEO_ID = "video_id"
WATCH_HISTORY = "watch_history"


@keras.saving.register_keras_serializable(package="keras_yt")
class Ranker(FeatureModelMixin, PresetMixin, keras.Model):
    """Ranker: impression features → ReLU tower → weighted logistic regression → watch time.

    The impression video (`video_id`) and the user's last watched videos (`watch_history`,
    averaged) are embedded with **one** shared video table, as in the paper. Other categorical
    features (language, device, ...) get an embedding each. Continuous features (time since last
    watch, number of previous impressions of the video, ...) go through `QuantileNormalization`
    with their super- and sub-linear powers x̃², √x̃; call `adapt(features)` on training data
    before `fit`. A tower of ReLU layers feeds `WeightedLogisticRegression`.

    Training targets are watch times: `fit(features, watch_time)` with watch time 0 for an
    impression that was not clicked. The loss (`WeightedLogisticLoss`) is a logistic regression on
    "clicked" whose positives are weighted by their watch time and negatives by 1, so the learned
    odds approximate the expected watch time of the impression; `predict` returns exp(logit), the
    expected watch time, which is what the paper ranks by.

    On TensorFlow the model trains on several devices of one host under
    `tf.distribute.MirroredStrategy`: create, `adapt` and `compile` it in `strategy.scope()`, then
    `fit` as usual; k steps with global batch B give the weights of k steps on one device with
    batch B (up to float32 rounding). Use one strategy per process (see `CandidateGenerator`).

    Args:
        num_videos: size of the video vocabulary including the padding id 0.
        video_embedding_dim: width of the shared video embeddings.
        max_history: length of the padded `watch_history` input.
        categorical_features: `{name: {"input_dim": int, "output_dim": int}}`; id 0 embeds to zeros.
        continuous_features: names of continuous features, each normalised by its empirical CDF.
        num_quantiles: quantiles stored per continuous feature.
        hidden_units: widths of the ReLU tower.
        dropout: dropout rate after each tower layer (training only).
        seed: seed of the dropout.
        **kwargs: `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> model = Ranker(num_videos=50, video_embedding_dim=4, max_history=3,
    ...                continuous_features=["time_since_last_watch"], hidden_units=(8,))
    >>> x = {"video_id": np.array([3, 7]), "watch_history": np.array([[1, 2, 0], [4, 0, 0]]),
    ...      "time_since_last_watch": np.array([0.5, 30.0])}
    >>> model.adapt(x)
    >>> model.compile()
    >>> history = model.fit(x, np.array([120.0, 0.0]), verbose=0)
    >>> model.predict(x, verbose=0).shape
    (2, 1)
    """

    def __init__(
        self,
        num_videos: int,
        video_embedding_dim: int = 32,
        max_history: int = 50,
        categorical_features: dict | None = None,
        continuous_features: list | tuple | None = None,
        num_quantiles: int = 1000,
        hidden_units: list | tuple = (1024, 512, 256),
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_units, categorical_features, continuous_features = _checks.feature_model_args(
            num_videos, video_embedding_dim, max_history, hidden_units, dropout,
            categorical_features, continuous_features)
        _checks.positive_int("num_quantiles", num_quantiles, minimum=2)
        self.num_videos = num_videos
        self.video_embedding_dim = video_embedding_dim
        self.max_history = max_history
        self.categorical_features = categorical_features
        self.continuous_features = continuous_features
        self.num_quantiles = num_quantiles
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.seed = seed

        policy = self.dtype_policy
        self.video_embedding = EmbeddingBag(
            num_videos, video_embedding_dim, dtype=policy, name="video_embedding"
        )
        self.categorical_embeddings = self._make_categorical_embeddings(categorical_features)
        self.normalizers = {
            name: QuantileNormalization(num_quantiles, powers=True, dtype=policy,
                                        name=f"{name}_quantiles")
            for name in self.continuous_features
        }
        self._make_relu_tower(hidden_units, dropout, seed)
        self.head = WeightedLogisticRegression(dtype=policy, name="watch_time")

    def feature_specs(self) -> dict:
        """`{name: (shape_without_batch, dtype)}` of every input feature the model reads."""
        specs = {VIDEO_ID: ((), "int32"), WATCH_HISTORY: ((self.max_history,), "int32")}
        specs.update({name: ((), "int32") for name in self.categorical_features})
        specs.update({name: ((), "float32") for name in self.continuous_features})
        return specs

    def serving_inputs(self) -> dict:
        """`keras.Input`s of every feature, for building functional / exported models."""
        return {
            name: keras.Input(shape=shape, dtype=dtype, name=name)
            for name, (shape, dtype) in self.feature_specs().items()
        }

    def adapt(self, features) -> None:
        """Fits the quantile normalisers on training features (a dict of arrays).

        Args:
            features: dict of numpy arrays holding at least the continuous features.
        """
        _checks.has_features(features, list(self.continuous_features), "Ranker.adapt")
        for name, layer in self.normalizers.items():
            layer.adapt(np.asarray(features[name], dtype="float32").reshape(-1))

    def _check_features(self, x) -> None:
        # Before anything is traced: a failed symbolic build in `fit` would leave the model
        # half-built and unusable even after `adapt`.
        missing = [name for name, layer in self.normalizers.items() if not layer.is_adapted]
        if missing:
            raise ValueError(
                f"Ranker is not adapted: call model.adapt(features) on the training features "
                f"before fit / evaluate / predict (continuous feature(s) {missing} need their "
                "quantiles)"
            )
        super()._check_features(x)

    def _build_from_features(self, inputs):
        self.logit(inputs, training=False)

    def logit(self, features: dict, training: bool = False):
        """The logit of the weighted logistic regression, `(batch, 1)`."""
        _checks.has_features(features, list(self.feature_specs()), "Ranker")
        video = ops.reshape(features[VIDEO_ID], (-1, 1))
        parts = [self.video_embedding(video), self.video_embedding(features[WATCH_HISTORY])]
        for name, layer in self.categorical_embeddings.items():
            parts.append(layer(features[name]))
        for name, layer in self.normalizers.items():
            parts.append(layer(features[name]))
        x = ops.concatenate(parts, axis=-1)
        return self.head.logit(self._apply_relu_tower(x, training=training))

    def call(self, inputs, training=False):
        logit = self.logit(inputs, training=training)
        return logit if training else ops.exp(logit)

    def compile(self, optimizer=None, loss=None, **kwargs):
        """`keras.Model.compile` with defaults: `SparseAdagrad(0.05)` and `WeightedLogisticLoss`."""
        super().compile(
            optimizer=SparseAdagrad(0.05) if optimizer is None else optimizer,
            loss=WeightedLogisticLoss() if loss is None else loss,
            **kwargs,
        )

    _label_dtype = "float32"  # watch times

    def _check_targets(self, y) -> None:
        _checks.float_array("y (the watch times)", y, low=0.0)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not training:  # `call` returned exp(logit): the loss takes the logit.
            y_pred = ops.log(ops.maximum(y_pred, 1e-30))
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_videos": self.num_videos,
                "video_embedding_dim": self.video_embedding_dim,
                "max_history": self.max_history,
                "categorical_features": self.categorical_features,
                "continuous_features": list(self.continuous_features),
                "num_quantiles": self.num_quantiles,
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
                "seed": self.seed,
            }
        )
        return config
