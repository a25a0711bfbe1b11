"""What `CandidateGenerator` and `Ranker` share: building from named features, reloading, and the
checks of numpy inputs at `fit` / `evaluate` / `predict` (never inside the training graph)."""

import math

import keras
import numpy as np

from keras_yt import _checks
from keras_yt._distributed_inputs import (
    _batch_multiple,
    _pad_inputs,
    _place_variables,
    padded_rows,
)
from keras_yt.layers.embedding_bag import EmbeddingBag

_VIDEO_ID_FEATURES = ("watch_history", "video_id")


def runs_on_several_replicas(model) -> bool:
    """Whether `model` runs under a `tf.distribute` strategy with more than one replica."""
    strategy = getattr(model, "distribute_strategy", None)  # the TensorFlow trainer's only
    return strategy is not None and strategy.num_replicas_in_sync > 1


def predict_split_over_replicas(model, x):
    """`predict_on_batch(x)` for a model that runs on several replicas.

    Keras' `predict_on_batch` gives the whole batch to every replica and concatenates their
    outputs (each row `num_replicas` times); `predict` with the batch as one global batch splits
    it between the replicas and returns each row once, in order.
    """
    rows = int(keras.ops.shape(keras.tree.flatten(x)[0])[0])
    return model.predict(x, batch_size=max(rows, 1), verbose=0)


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` as soon as a training batch reports a NaN or infinite loss.

    Added by `fit` of the keras_yt models. It runs off the training thread (Keras dispatches
    `async_safe` callbacks to a worker), so it costs the step nothing; the error reaches `fit` at
    the next batch or at the end of the epoch at the latest.
    """

    async_safe = True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"training loss became {float(loss)} at batch {batch}: the model's weights are no "
                "longer usable (do not save or serve it). Inputs are checked for NaN/inf before "
                "fit, so the training diverged: lower the optimizer's learning rate or check the "
                "inputs of a tf.data pipeline"
            )


class FeatureModelMixin:
    """For models whose inputs are named features listed by `feature_specs()`.

    Subclasses implement `feature_specs() -> {name: (shape_without_batch, dtype)}`,
    `_build_from_features(inputs)`, which calls the sublayers on symbolic inputs, and
    `_check_targets(y)`, which validates numpy targets, and set `_label_dtype`, the dtype of
    the targets `y` (shape `(batch,)`).
    """

    _label_dtype = "float32"

    def build(self, input_shape=None):
        if self.built:
            return
        self._build_from_features(
            {
                name: keras.KerasTensor((None, *shape), dtype=dtype)
                for name, (shape, dtype) in self.feature_specs().items()
            }
        )
        self.built = True
        _place_variables(self)

    def save(self, filepath, overwrite=True, **kwargs):
        """Saves to a `.keras` file atomically (`keras_yt.models.save_model`); other formats
        (`.h5`, `.weights.h5`) go to Keras."""
        if str(filepath).endswith(".keras") and not kwargs:
            from keras_yt.models.saving import save_model

            save_model(self, filepath, overwrite=overwrite)
            return
        super().save(filepath, overwrite=overwrite, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # TensorFlow trainer, model made in a tf.distribute strategy's scope: before `fit` and
        # `evaluate`, Keras averages the replicas' first batch (`strategy.reduce("MEAN")`) only
        # to learn its shapes and dtypes, which turns integer ids into floats (that an embedding
        # refuses) and fails on string features ("AddN" of strings). They are known from
        # `feature_specs()` and `_label_spec`.
        if iterator is not None:
            features = {
                name: keras.KerasTensor((None, *shape), dtype=dtype)
                for name, (shape, dtype) in self.feature_specs().items()
            }
            labels = keras.KerasTensor((None,), self._label_dtype)
            iterator, data_batch = None, (features, labels)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def get_build_config(self):
        return {"input_shape": "features"}

    def build_from_config(self, config):
        self.build()

    def compile_from_config(self, config):
        """Re-compiles a loaded model with its saved optimizer (`.keras` files)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(optimizer=config.get("optimizer"))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # ------------------------------------------------------------ layers both models build

    def _make_categorical_embeddings(self, categorical_features: dict) -> dict:
        """`{name: EmbeddingBag}` of the checked `categorical_features` (id 0 embeds to zeros)."""
        return {
            name: EmbeddingBag(spec["input_dim"], spec["output_dim"], dtype=self.dtype_policy,
                               name=f"{name}_embedding")
            for name, spec in categorical_features.items()
        }

    def _make_relu_tower(self, hidden_units: tuple, dropout: float, seed,
                         last_activation: str = "relu") -> None:
        """Sets `self.tower`, one `Dense` per width of `hidden_units` (named `relu_0`, ...; the
        last with `last_activation`), and `self.dropout_layer` (`None` when `dropout` is 0)."""
        policy = self.dtype_policy
        self.tower = [
            keras.layers.Dense(
                units,
                activation="relu" if i < len(hidden_units) - 1 else last_activation,
                dtype=policy,
                name=f"relu_{i}",
            )
            for i, units in enumerate(hidden_units)
        ]
        self.dropout_layer = (
            keras.layers.Dropout(dropout, seed=seed, dtype=policy) if dropout > 0 else None
        )

    def _apply_relu_tower(self, x, training: bool = False):
        """`x` through `self.tower`, with dropout after each layer in training."""
        for dense in self.tower:
            x = dense(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    # ------------------------------------------------------------ checks of numpy inputs

    def _feature_upper_bound(self, name: str):
        if name in _VIDEO_ID_FEATURES:
            return self.num_videos
        spec = self.categorical_features.get(name)
        return None if spec is None else spec["input_dim"]

    def _place_for_distribution(self) -> None:
        """Under a keras.distribution (JAX): builds the model here, not in Keras' traced build, so
        that variables created before the distribution was set can be laid out."""
        if keras.backend.backend() == "jax" and keras.distribution.distribution() is not None:
            self.build()
            _place_variables(self)

    def _check_features(self, x) -> None:
        """Validates a dict of numpy features (values as well as shapes and dtypes)."""
        if not isinstance(x, dict):
            return  # a tf.data.Dataset, a generator, a PyDataset: left to Keras
        specs = self.feature_specs()
        sizes = {}
        for name, (shape, dtype) in specs.items():
            if name not in x:
                continue
            value = x[name]
            _checks.feature_array(name, value, shape, dtype, self._feature_upper_bound(name))
            if _checks.is_numpy_like(value):
                sizes[name] = len(np.asarray(value))
        if len(set(sizes.values())) > 1:
            raise ValueError(f"features must have the same number of rows, got {sizes}")

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, dict):  # direct calls: numpy features checked as in predict
            self._check_features(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_inputs(self, x, y=None, sample_weight=None) -> None:
        self._place_for_distribution()
        self._check_features(x)
        if y is not None and _checks.is_numpy_like(y):
            self._check_targets(y)
        if sample_weight is not None and _checks.is_numpy_like(sample_weight):
            _checks.float_array("sample_weight", sample_weight, low=0.0, what="finite weights")

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_inputs(x, y, kwargs.get("sample_weight"))
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and validation:
            self._check_inputs(*validation[:3])
        multiple = _batch_multiple()
        if multiple > 1 and isinstance(x, dict):
            # keras.distribution (JAX) splits every batch evenly over the batch axis' devices.
            kwargs = _bind(("batch_size", "epochs", "verbose", "callbacks", "validation_split",
                            "validation_data", "shuffle", "class_weight", "sample_weight"),
                           args, kwargs)
            args = ()
            batch_size = kwargs.get("batch_size") or 32
            if batch_size % multiple:
                raise ValueError(
                    f"batch_size must be a multiple of {multiple} (the devices that split each "
                    f"batch under the current keras.distribution), got {batch_size}"
                )
            if kwargs.get("validation_split"):
                raise ValueError("validation_split is not supported under a keras.distribution:"
                                 " pass validation_data")
            x, y, kwargs["sample_weight"], _ = _pad_inputs(
                x, y, kwargs.get("sample_weight"), multiple)
            if isinstance(validation, (tuple, list)) and validation:
                val_x, val_y, val_w, _ = _pad_inputs(*validation[:3], multiple=multiple)
                kwargs["validation_data"] = (val_x, val_y, val_w)
        callbacks = kwargs.get("callbacks")
        callbacks = list(callbacks) if callbacks else []
        if not any(isinstance(c, StopOnNonFiniteLoss) for c in callbacks):
            # first, so that no later callback (e.g. a checkpoint) sees the broken weights
            callbacks.insert(0, StopOnNonFiniteLoss())
        kwargs["callbacks"] = callbacks
        self._build_before_tracing()
        return super().fit(x, y, *args, **kwargs)

    def _build_before_tracing(self) -> None:
        """Builds the model and its optimizer now, not inside the first traced train step.

        Without a `tf.distribute` strategy, Keras' TensorFlow trainer builds both while it
        traces the train function, where the new variables' initial values stay allocated
        longer: at 1M x 256 the peak RSS of `fit` was 5.61 GiB instead of 5.01 GiB (measured
        with the system allocator; up to 0.85 GiB more with TensorFlow's pool allocator).
        Under a strategy (whose scope Keras builds in) and on JAX (which builds eagerly)
        nothing changes.
        """
        if keras.backend.backend() != "tensorflow" or self._distribute_strategy is not None:
            return
        self.build()
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.trainable_variables)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_inputs(x, y, kwargs.get("sample_weight"))
        multiple = _batch_multiple()
        if multiple > 1 and isinstance(x, dict):
            kwargs = _bind(("batch_size", "verbose", "sample_weight", "steps", "callbacks",
                            "return_dict"), args, kwargs)
            args = ()
            kwargs["batch_size"] = padded_rows(kwargs.get("batch_size") or 32, multiple)
            x, y, kwargs["sample_weight"], _ = _pad_inputs(
                x, y, kwargs.get("sample_weight"), multiple)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._place_for_distribution()
        self._check_features(x)
        multiple = _batch_multiple()
        if multiple > 1 and isinstance(x, dict):
            kwargs = _bind(("batch_size", "verbose", "steps", "callbacks"), args, kwargs)
            kwargs["batch_size"] = padded_rows(kwargs.get("batch_size") or 32, multiple)
            x, _, _, rows = _pad_inputs(x, multiple=multiple)
            outputs = super().predict(x, **kwargs)
            return outputs if rows is None else keras.tree.map_structure(
                lambda a: a[:rows], outputs)
        return super().predict(x, *args, **kwargs)

    def train_step(self, *args, **kwargs):
        # JAX: row-sparse gradients for the tables read row by row (keras_yt.backend.jax).
        if keras.backend.backend() == "jax" and getattr(
            self.optimizer, "takes_row_gradients", False
        ):
            from keras_yt.backend import jax as jax_backend

            result = jax_backend.train_step(self, *args, **kwargs)
            if result is not None:
                return result
        return super().train_step(*args, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, *args, **kwargs):
        self._check_inputs(x, y, sample_weight)
        if isinstance(x, dict):
            x, y, sample_weight, _ = _pad_inputs(x, y, sample_weight)
        self._build_before_tracing()
        logs = super().train_on_batch(x, y, sample_weight, *args, **kwargs)
        loss = logs.get("loss") if isinstance(logs, dict) else np.ravel(logs)[0]
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"training loss became {float(loss)}: the model's weights are no longer usable"
            )
        return logs

    def test_on_batch(self, x, y=None, sample_weight=None, *args, **kwargs):
        self._check_inputs(x, y, sample_weight)
        if isinstance(x, dict):
            x, y, sample_weight, _ = _pad_inputs(x, y, sample_weight)
        return super().test_on_batch(x, y, sample_weight, *args, **kwargs)

    def predict_on_batch(self, x):
        self._place_for_distribution()
        self._check_features(x)
        if runs_on_several_replicas(self):
            return predict_split_over_replicas(self, x)
        rows = None
        if isinstance(x, dict):
            x, _, _, rows = _pad_inputs(x)
        outputs = super().predict_on_batch(x)
        return outputs if rows is None else keras.tree.map_structure(lambda a: a[:rows], outputs)


def _bind(names, args, kwargs) -> dict:
    """`kwargs` with the positional `args` (after x, y) bound to `names`, in order."""
    if len(args) > len(names):
        raise TypeError(f"too many positional arguments: {len(args) + 2}")
    return {**dict(zip(names, args)), **kwargs}
