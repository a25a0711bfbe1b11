"""`QuantileNormalization`: continuous features scaled to [0, 1] by their empirical CDF."""

import keras
import numpy as np
from keras import ops

from keras_yt import _checks


@keras.saving.register_keras_serializable(package="keras_yt")
class QuantileNormalization(keras.layers.Layer):
    """Maps a continuous feature to its empirical CDF value in `[0, 1]` (plus powers).

    Covington et al. (2016), section 4.1: neural networks are sensitive to the scaling and
    distribution of their inputs, so a continuous feature `x` is normalised to `x̃ ∈ [0, 1)` by
    "the cumulative distribution, `x̃ = ∫_{-∞}^{x} df`", computed by linear interpolation between
    quantiles of the feature's distribution computed in one pass over the data before training.
    The powers `x̃²` and `√x̃` are fed as well, so the network can form super- and sub-linear
    functions of the feature easily.

    `adapt(data)` computes `num_quantiles + 1` quantiles (`np.quantile` at
    `linspace(0, 1, num_quantiles + 1)`) and stores them in the non-trainable weight `quantiles`,
    which is saved with the model (no re-adapt after loading a `.keras` file).

    The call is exactly `np.interp(x, quantiles, linspace(0, 1, num_quantiles + 1))`:

    * values below the smallest quantile give `0`, above the largest give `1`;
    * ties (duplicated quantiles, e.g. a count feature that is mostly `0`) give the right-continuous
      empirical CDF `P(X <= x)`: a value equal to a run of duplicated quantiles gets the fraction at
      the end of the run; no division by zero occurs;
    * a constant feature (all quantiles equal to `c`) maps `x < c` to `0` and `x >= c` to `1`.

    Args:
        num_quantiles: number of quantile intervals; `num_quantiles + 1` boundaries are stored.
            The CDF is resolved to about `1 / num_quantiles`.
        powers: if `True`, output `[x̃, x̃², √x̃]` on the last axis; otherwise `x̃` alone.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: feature values of shape `(batch,)` or `(batch, 1)`.

    Returns:
        `(batch, 3)` with `powers=True`, else `(batch, 1)`.

    Raises:
        RuntimeError: when called before `adapt` (or before loading adapted weights).

    Example:

    >>> import numpy as np
    >>> layer = QuantileNormalization(num_quantiles=4, powers=False)
    >>> layer.adapt(np.arange(9.0))              # quantiles 0, 2, 4, 6, 8
    >>> np.asarray(layer(np.array([-1.0, 1.0, 4.0, 100.0]))).ravel().tolist()
    [0.0, 0.125, 0.5, 1.0]
    """

    def __init__(self, num_quantiles: int = 1000, powers: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_quantiles, bool) or not isinstance(num_quantiles, int):
            raise ValueError(f"num_quantiles must be an integer >= 1, got {num_quantiles!r}")
        if num_quantiles < 1:
            raise ValueError(f"num_quantiles must be an integer >= 1, got {num_quantiles!r}")
        if not isinstance(powers, bool):
            raise ValueError(f"powers must be True or False, got {powers!r}")
        self.num_quantiles = num_quantiles
        self.powers = powers
        self._adapted = False

    def build(self, input_shape=None):
        if input_shape is not None:
            _check_feature_shape(input_shape)
        self.quantiles = self.add_weight(
            shape=(self.num_quantiles + 1,),
            initializer="zeros",
            trainable=False,
            name="quantiles",
        )
        self.built = True

    @property
    def is_adapted(self) -> bool:
        """Whether the quantiles have been computed (`adapt`) or loaded."""
        return self._adapted

    def adapt(self, data, steps: int | None = None) -> None:
        """Computes the quantiles of `data` (one pass) and stores them in `quantiles`.

        Args:
            data: feature values: a numpy array or list of shape `(n,)` or `(n, 1)`, a backend
                tensor, or an iterable of such batches (e.g. a `tf.data.Dataset` yielding only
                the feature, or a Python generator). Batches are accumulated, then
                `np.quantile` is taken over all of them.
            steps: for an iterable, the number of batches to read (default: all of them).

        Raises:
            ValueError: if `data` is empty, contains NaN or infinite values, or has more than
                one feature per example.
        """
        values = np.concatenate([_flat_values(b) for b in _batches(data, steps)] or [[]])
        if values.size == 0:
            raise ValueError("QuantileNormalization.adapt got empty data (0 values)")
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"QuantileNormalization.adapt data contains {int(np.isnan(values).sum())} NaN "
                f"and {int(np.isinf(values).sum())} infinite values out of {values.size}"
            )
        quantiles = np.quantile(values, np.linspace(0.0, 1.0, self.num_quantiles + 1))
        if not self.built:
            self.build()
        self.quantiles.assign(quantiles.astype(self.quantiles.dtype))
        self._adapted = True

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self._adapted = True

    def __call__(self, inputs, **kwargs):
        if _checks.is_numpy_like(inputs):  # values checked once, outside the graph
            inputs = _checks.float_array(f"{self.name} inputs", inputs).astype("float32")
        shape = tuple(np.shape(inputs)) if _checks.is_numpy_like(inputs) else tuple(
            getattr(inputs, "shape", ())
        )
        _check_feature_shape(shape)
        return super().__call__(inputs, **kwargs)

    def call(self, inputs):
        if not self._adapted:
            raise RuntimeError(
                f"QuantileNormalization layer '{self.name}' is not adapted: call "
                "`layer.adapt(data)` (or load a saved model) before using it"
            )
        x = ops.convert_to_tensor(inputs)
        if "float" not in keras.backend.standardize_dtype(x.dtype):
            x = ops.cast(x, self.compute_dtype)
        x = ops.reshape(x, (-1,))
        q = ops.cast(self.quantiles, x.dtype)
        n = self.num_quantiles
        # j = index of the last quantile <= x, kept inside [0, n - 1] (interval [q_j, q_{j+1}]).
        j = ops.searchsorted(q, x, side="right") - 1
        j = ops.clip(j, 0, n - 1)
        lo = ops.take(q, j)
        hi = ops.take(q, j + 1)
        width = hi - lo
        flat = width <= 0
        # In a zero-width interval (tied quantiles) step from j / n to (j + 1) / n at lo.
        frac = ops.where(
            flat,
            ops.cast(x >= hi, x.dtype),
            (x - lo) / ops.where(flat, ops.ones_like(width), width),
        )
        cdf = ops.clip((ops.cast(j, x.dtype) + frac) / n, 0.0, 1.0)
        cdf = ops.expand_dims(cdf, -1)
        if self.powers:
            return ops.concatenate([cdf, ops.square(cdf), ops.sqrt(cdf)], axis=-1)
        return cdf

    def compute_output_shape(self, input_shape):
        _check_feature_shape(input_shape)
        return (input_shape[0], 3 if self.powers else 1)

    def get_config(self):
        config = super().get_config()
        config.update({"num_quantiles": self.num_quantiles, "powers": self.powers})
        return config


def _check_feature_shape(shape) -> None:
    shape = tuple(shape)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] in (1, None)):
        return
    raise ValueError(
        f"QuantileNormalization expects a feature of shape (batch,) or (batch, 1), got {shape}"
    )


def _batches(data, steps):
    """Yields the batches of `data`: the array itself, or the items of an iterable of batches."""
    if isinstance(data, (np.ndarray, list, tuple, int, float)) or hasattr(data, "__array__"):
        yield data
        return
    if hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset
        data = data.as_numpy_iterator()
    for i, batch in enumerate(data):
        if steps is not None and i >= steps:
            break
        if isinstance(batch, (tuple, dict)):
            raise ValueError(
                "QuantileNormalization.adapt expects a dataset of feature values only, got "
                f"elements of type {type(batch).__name__}"
            )
        yield batch


def _flat_values(batch) -> np.ndarray:
    values = np.asarray(keras.ops.convert_to_numpy(batch), dtype="float64")
    if values.ndim > 2 or (values.ndim == 2 and values.shape[1] != 1):
        raise ValueError(
            "QuantileNormalization.adapt expects values of shape (n,) or (n, 1), got shape "
            f"{values.shape}"
        )
    return values.reshape(-1)
