"""`WeightedLogisticRegression`: the ranking head of the YouTube recommender."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_yt import _checks


@keras.saving.register_keras_serializable(package="keras_yt")
class WeightedLogisticRegression(keras.layers.Layer):
    """Ranking head: a logistic-regression logit, served as `exp(logit)` ≈ expected watch time.

    A `Dense(1)` sublayer maps the last hidden layer of the ranking tower to a logit. It is trained
    with weighted logistic regression (`keras_yt.losses.WeightedLogisticLoss`): clicked
    impressions are positives weighted by their watch time `T_i`, impressions that were not
    clicked are negatives with unit weight. Section 4.2 of Covington et al. (2016): with `N`
    impressions of which `k` were clicked, the odds learned by this weighted regression are
    `Σ T_i / (N - k)`. Writing `E[T] = Σ T_i / N` for the expected watch time per impression and
    `P = k / N` for the click rate, this is `E[T] / (1 - P) ≈ E[T] (1 + P) ≈ E[T]` when `P` is
    small. So at serving time `exp(logit)`, the odds, closely estimates the expected watch time
    of the impression, and ranking by it ranks by expected watch time.

    Args:
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        x: Float tensor `(batch, d)`, the last hidden layer of the ranking tower.
        training: Python boolean. `True` returns the logit (what the loss needs); `False` or
            `None` returns `exp(logit)`.

    Returns:
        Tensor `(batch, 1)`: the logit in training, `exp(logit)` (expected watch time) otherwise.

    Example:

    >>> import numpy as np
    >>> head = WeightedLogisticRegression()
    >>> x = np.random.rand(8, 32).astype("float32")
    >>> tuple(head(x, training=True).shape)
    (8, 1)
    >>> watch_time = head(x)
    >>> bool(np.allclose(watch_time, np.exp(head.logit(x)), rtol=1e-6))
    True
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1, dtype=self.dtype_policy, name="logit")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def __call__(self, x, *args, **kwargs):
        values = _checks.concrete(x)  # eager calls only: never inside a traced graph
        if values is not None:
            _checks.float_array(f"{type(self).__name__} inputs", values)
        out = super().__call__(x, *args, **kwargs)
        result = None if values is None else _checks.concrete(out)
        if result is not None and not np.isfinite(result).all():
            raise ValueError(
                f"{type(self).__name__}: watch time overflow: the output is not finite "
                f"(e.g. {result[~np.isfinite(result)].ravel()[:3].tolist()}) for finite inputs; "
                "the layer's weights are too large"
            )
        return out

    def logit(self, x):
        """The logit `(batch, 1)`, whatever the mode.

        Args:
            x: Float tensor `(batch, d)`.

        Returns:
            The logit, shape `(batch, 1)`.
        """
        return self.dense(x)

    def call(self, x, training=None):
        logit = self.dense(x)
        if training:
            return logit
        return ops.exp(logit)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def get_config(self) -> dict:
        return super().get_config()
