"""`ExampleAge`: the paper's "example age" feature (age in training, a constant at serving)."""

import math

import keras
from keras import ops

from keras_yt import _checks


@keras.saving.register_keras_serializable(package="keras_yt")
class ExampleAge(keras.layers.Layer):
    """Feeds the age of the training example in training and a constant at inference.

    Covington et al. (2016), section 3.3: machine-learning systems show an implicit bias towards
    the past, because they are trained on historical examples to predict future behaviour, while
    the popularity of a video is highly non-stationary (users prefer fresh content). Feeding the
    *age of the training example* as a feature lets the model learn the time-dependence of
    popularity. At serving time the model predicts at the very end of the training window, so the
    feature is set to zero (or slightly negative): this layer returns the constant
    `serving_value` at inference, whatever the input.

    Ages are divided by `scale` (e.g. the length of the training window in days, so that training
    ages fall in `[0, 1]`). Negative ages are clipped to `0`. NaN or infinite ages passed as numpy
    arrays raise a ValueError (the models check their numpy features before `fit` too); in the
    graph, NaN is clipped to `0` and `inf` stays `inf`.

    Args:
        scale: positive number the age is divided by (same unit as the input age).
        serving_value: the (already normalised) value returned at inference; `0.0` means "now",
            the end of the training window; a slightly negative value extrapolates a little
            into the future.
        powers: if `True`, also output the square of the normalised age (and of
            `serving_value` at inference), so the model can fit a non-linear effect of age.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        age: example age of shape `(batch,)` or `(batch, 1)`, e.g. days between the training
            example and the end of the training window.
        training: Python boolean; `True` in training (`fit`), `False` / `None` at inference.

    Returns:
        `(batch, 1)` (`(batch, 2)` with `powers=True`): `max(age, 0) / scale` in training,
        `serving_value` in every row at inference.

    Example:

    >>> import numpy as np
    >>> layer = ExampleAge(scale=28.0)
    >>> age = np.array([[0.0], [14.0], [28.0]])
    >>> np.asarray(layer(age, training=True)).ravel().tolist()
    [0.0, 0.5, 1.0]
    >>> np.asarray(layer(age)).ravel().tolist()
    [0.0, 0.0, 0.0]
    """

    def __init__(
        self,
        scale: float = 1.0,
        serving_value: float = 0.0,
        powers: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
            or scale <= 0
        ):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        if (
            isinstance(serving_value, bool)
            or not isinstance(serving_value, (int, float))
            or not math.isfinite(serving_value)
        ):
            raise ValueError(f"serving_value must be a finite number, got {serving_value!r}")
        if not isinstance(powers, bool):
            raise ValueError(f"powers must be True or False, got {powers!r}")
        self.scale = float(scale)
        self.serving_value = float(serving_value)
        self.powers = powers

    def build(self, input_shape=None):
        if input_shape is not None:
            _check_age_shape(input_shape)
        self.built = True

    def __call__(self, age, training=None, **kwargs):
        if _checks.is_numpy_like(age):  # values checked once, outside the graph
            age = _checks.float_array("ExampleAge age", age).astype("float32")
        return super().__call__(age, training=training, **kwargs)

    def call(self, age, training=None):
        age = ops.convert_to_tensor(age)
        if "float" not in keras.backend.standardize_dtype(age.dtype):
            age = ops.cast(age, self.compute_dtype)
        if len(age.shape) == 1:
            age = ops.expand_dims(age, -1)
        if training:
            keep = ops.logical_and(age > 0, ops.logical_not(ops.isnan(age)))
            value = ops.where(keep, age, ops.zeros_like(age)) / self.scale
        else:
            value = ops.ones_like(age) * self.serving_value
        if self.powers:
            value = ops.concatenate([value, ops.square(value)], axis=-1)
        return value

    def compute_output_shape(self, input_shape):
        _check_age_shape(input_shape)
        return (input_shape[0], 2 if self.powers else 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"scale": self.scale, "serving_value": self.serving_value, "powers": self.powers}
        )
        return config


def _check_age_shape(shape) -> None:
    shape = tuple(shape)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, None)):
        return
    raise ValueError(f"ExampleAge expects an age of shape (batch,) or (batch, 1), got {shape}")
