"""Tests for `keras_yt.losses.WeightedLogisticLoss` and `watch_time_weights`."""

import keras
import numpy as np
import pytest

from keras_yt.losses import WeightedLogisticLoss, watch_time_weights
from tests.testing import assert_config_round_trip


def _np_loss(watch_time, logits):
    """Per-example weighted binary cross-entropy, computed naively in float64."""
    watch_time = np.asarray(watch_time, "float64").reshape(-1)
    z = np.asarray(logits, "float64").reshape(-1)
    y = (watch_time > 0).astype("float64")
    p = 1 / (1 + np.exp(-z))
    weight = np.where(y > 0, watch_time, 1.0)
    return -weight * (y * np.log(p) + (1 - y) * np.log(1 - p))


def _data(seed=0, n=12):
    rng = np.random.default_rng(seed)
    watch_time = np.where(rng.random(n) < 0.4, rng.exponential(100, n), 0.0).astype("float32")
    logits = rng.normal(0, 2, (n, 1)).astype("float32")
    return watch_time, logits


def test_matches_numpy_reference():
    watch_time, logits = _data()
    assert (watch_time > 0).any() and (watch_time == 0).any()
    loss = WeightedLogisticLoss()
    expected = _np_loss(watch_time, logits)
    np.testing.assert_allclose(loss(watch_time[:, None], logits), expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(loss(watch_time, logits), expected.mean(), rtol=1e-5)  # (B,) y
    sample_weight = np.linspace(0.5, 2.0, len(watch_time)).astype("float32")
    np.testing.assert_allclose(
        loss(watch_time, logits, sample_weight=sample_weight),
        (expected * sample_weight).mean(),
        rtol=1e-5,
    )
    per_example = WeightedLogisticLoss(reduction=None)(watch_time[:, None], logits)
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)


def test_equals_keras_bce_with_watch_time_weights():
    watch_time, logits = _data(seed=1, n=20)
    clicked = (watch_time > 0).astype("float32")
    reference = keras.losses.BinaryCrossentropy(from_logits=True)(
        clicked[:, None], logits, sample_weight=watch_time_weights(clicked, watch_time)
    )
    np.testing.assert_allclose(WeightedLogisticLoss()(watch_time, logits), reference, rtol=1e-5)


def test_large_logits_are_stable():
    watch_time = np.array([0.0, 0.0, 50.0, 50.0], "float32")
    logits = np.array([[-200.0], [200.0], [200.0], [-200.0]], "float32")
    per_example = np.asarray(WeightedLogisticLoss(reduction=None)(watch_time, logits))
    # Exact values: log(1 + e^-200) ≈ 0 and 200 + log(1 + e^-200) ≈ 200.
    np.testing.assert_allclose(per_example, [0.0, 200.0, 0.0, 50 * 200.0], rtol=1e-6, atol=1e-6)


def test_config_round_trip_and_serialization():
    assert_config_round_trip(WeightedLogisticLoss(name="wlr", reduction="sum"))
    restored = keras.losses.deserialize(keras.losses.serialize(WeightedLogisticLoss()))
    assert isinstance(restored, WeightedLogisticLoss)


def test_fit_with_watch_time_as_target_and_reload(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 3)).astype("float32")
    watch_time = np.where(x[:, 0] > 1.0, 90.0, 0.0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=WeightedLogisticLoss())
    history = model.fit(x, watch_time, batch_size=64, epochs=20, verbose=0).history["loss"]
    assert history[-1] < history[0]
    np.testing.assert_allclose(
        model.evaluate(x, watch_time, batch_size=64, verbose=0),
        _np_loss(watch_time, model.predict(x, verbose=0)).mean(),
        rtol=1e-4,
    )
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(restored.loss, WeightedLogisticLoss)


def test_watch_time_weights():
    np.testing.assert_array_equal(
        watch_time_weights([1, 0, 1, 0], [30.0, 0.0, 5.5, 7.0]), [30.0, 1.0, 5.5, 1.0]
    )
    weights = watch_time_weights(np.array([[True], [False]]), np.array([[12.0], [0.0]]))
    assert weights.dtype == np.float32 and weights.shape == (2, 1)
    with pytest.raises(ValueError, match="watch_time must be finite and non-negative"):
        watch_time_weights([1, 0], [-1.0, 0.0])
    with pytest.raises(ValueError, match="watch_time must be finite and non-negative"):
        watch_time_weights([1], [np.nan])
    with pytest.raises(ValueError, match="clicked must hold 0/1 labels"):
        watch_time_weights([2, 0], [1.0, 0.0])
    with pytest.raises(ValueError, match="do not broadcast"):
        watch_time_weights([1, 0, 1], [1.0, 2.0])


# ------------------------------------------------------------- issue 13: no silent wrong answers


@pytest.mark.parametrize("bad", [-5.0, np.nan])
def test_negative_or_nan_watch_time_is_never_a_non_click(bad):
    # Regression (issue 13, item 6): the loss treated them as non-clicks (weight 1, label 0),
    # while watch_time_weights rejected the same values.
    loss = WeightedLogisticLoss()
    y = np.array([[0.0], [bad], [12.0]], "float32")
    logits = np.array([[0.1], [0.2], [0.3]], "float32")
    with pytest.raises(ValueError, match=r"y_true \(watch times\) must hold finite numbers >= "
                                         r"0\.0, got 1 invalid value\(s\)"):
        loss(y, logits)
    with pytest.raises(ValueError, match="watch_time must be finite and non-negative"):
        watch_time_weights([0, 0, 1], y.ravel())
    # Tensors (values born in the graph) give a NaN loss, which stops training.
    out = loss(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(logits))
    assert np.isnan(keras.ops.convert_to_numpy(out))


def test_nan_logits_are_rejected_in_eager_calls():
    loss = WeightedLogisticLoss()
    with pytest.raises(ValueError, match=r"y_pred \(logits\) must hold finite"):
        loss(np.array([[1.0], [0.0]]), np.array([[np.nan], [0.5]], "float32"))
