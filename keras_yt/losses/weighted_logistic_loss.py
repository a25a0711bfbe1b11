"""`WeightedLogisticLoss`: the ranking loss (weighted logistic regression on watch time)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_yt import _checks


@keras.saving.register_keras_serializable(package="keras_yt")
class WeightedLogisticLoss(keras.losses.Loss):
    """Weighted logistic regression loss with the watch-time weighting built in.

    `y_true` is the **watch time** of each impression, `0` for impressions that were not clicked;
    `y_pred` is the **logit** (the training output of
    `keras_yt.layers.WeightedLogisticRegression`). The click label is `y_true > 0` and the
    example weight is the watch time for positives and `1` for negatives, so
    `model.fit(x, watch_time)` trains the paper's weighted logistic regression directly:

        loss_i = w_i * BCE(click_i, sigmoid(logit_i)),  w_i = T_i if T_i > 0 else 1.

    A `sample_weight` given to `fit` multiplies these weights. The batch reduction is Keras'
    (`"sum_over_batch_size"` by default: the weighted sum divided by the batch size).
    `watch_time_weights` gives the same weights as an array, for pipelines that keep clicks and
    watch times apart and train with plain binary cross-entropy.

    Note: the loss expects logits. Evaluating a model whose inference output is
    `exp(logit)` with this loss is wrong; compute it on the training output (the logit).

    Args:
        name: Name of the loss instance.
        reduction: Keras reduction (default `"sum_over_batch_size"`).
        dtype: Dtype of the loss computation.

    Call arguments:
        y_true: Watch times `(batch,)` or `(batch, 1)`, non-negative; `0` = not clicked. A
            negative or NaN watch time raises a ValueError (numpy input) or gives a NaN loss
            (tensors), never a silent non-click.
        y_pred: Logits, same number of elements as `y_true`.
        sample_weight: Optional extra per-example weights.

    Returns:
        The reduced loss (a scalar with the default reduction).

    Example:

    >>> import numpy as np
    >>> loss = WeightedLogisticLoss()
    >>> watch_time = np.array([[0.0], [120.0], [0.0]])
    >>> logits = np.array([[-2.0], [1.0], [0.5]])
    >>> round(float(loss(watch_time, logits)), 4)
    12.8975
    """

    def __init__(
        self,
        name: str = "weighted_logistic_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if _checks.is_numpy_like(y_true):  # numpy targets: checked once, outside the graph
            _checks.float_array("y_true (watch times)", y_true, low=0.0)
        logits = _checks.concrete(y_pred)  # eager calls only: never inside a traced graph
        if logits is not None:
            _checks.float_array("y_pred (logits)", logits)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.cast(y_true, y_pred.dtype)
        y_true = ops.reshape(y_true, ops.shape(y_pred))
        clicked = y_true > 0
        labels = ops.cast(clicked, y_pred.dtype)
        # A negative or NaN watch time is not a non-click: its weight (and so the loss) is NaN,
        # which stops `fit` (numpy targets are rejected before that).
        invalid = ops.logical_not(ops.logical_or(clicked, ops.equal(y_true, 0)))
        weights = ops.where(
            clicked, y_true, ops.where(invalid, float("nan"), ops.ones_like(y_true))
        )
        # Stable binary cross-entropy from logits: max(z, 0) - z y + log(1 + exp(-|z|)).
        bce = ops.relu(y_pred) - y_pred * labels + ops.log1p(ops.exp(-ops.abs(y_pred)))
        per_example = weights * bce
        if len(per_example.shape) > 1:
            per_example = ops.mean(per_example, axis=-1)
        return per_example

    def get_config(self) -> dict:
        return super().get_config()


def watch_time_weights(clicked, watch_time) -> np.ndarray:
    """Example weights of the weighted logistic regression: watch time for clicks, 1 otherwise.

    Args:
        clicked: Array-like of click labels (0/1 or booleans).
        watch_time: Array-like of watch times broadcastable with `clicked`, non-negative.

    Returns:
        Float32 numpy array with the broadcast shape: `watch_time` where clicked, else `1`.
        (A clicked impression with zero watch time gets weight 0.)

    Raises:
        ValueError: If a watch time is negative or not finite, a click label is not 0/1, or
            the shapes do not broadcast.

    Example:

    >>> watch_time_weights([1, 0, 1], [30.0, 0.0, 5.5]).tolist()
    [30.0, 1.0, 5.5]
    """
    clicked = np.asarray(clicked)
    watch_time = np.asarray(watch_time, dtype="float64")
    if not np.all(np.isin(clicked, (0, 1))):
        raise ValueError(f"clicked must hold 0/1 labels, got values {np.unique(clicked)[:10]}")
    if not np.all(np.isfinite(watch_time)) or np.any(watch_time < 0):
        bad = watch_time[~np.isfinite(watch_time) | (watch_time < 0)]
        raise ValueError(
            f"watch_time must be finite and non-negative, got {bad.size} invalid values "
            f"(e.g. {bad[:5].tolist()})"
        )
    try:
        clicked, watch_time = np.broadcast_arrays(clicked.astype(bool), watch_time)
    except ValueError as error:
        raise ValueError(
            f"clicked with shape {clicked.shape} and watch_time with shape {watch_time.shape} "
            "do not broadcast"
        ) from error
    return np.where(clicked, watch_time, 1.0).astype("float32")
