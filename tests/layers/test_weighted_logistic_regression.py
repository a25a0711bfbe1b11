"""Tests for `keras_yt.layers.WeightedLogisticRegression` (the ranking head)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_yt.layers import WeightedLogisticRegression
from keras_yt.losses import WeightedLogisticLoss
from tests.testing import assert_saved_model_reproduces, run_layer_test


def _x(batch=6, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, d)).astype("float32")


def test_logit_in_training_and_exp_at_inference_match_numpy():
    head = WeightedLogisticRegression()
    x = _x()
    head(x)
    kernel, bias = (np.asarray(v) for v in head.dense.weights)
    logit = x @ kernel + bias
    assert logit.shape == (6, 1)
    np.testing.assert_allclose(head(x, training=True), logit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.logit(x), logit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head(x, training=False), np.exp(logit), rtol=1e-5)
    np.testing.assert_allclose(head(x), np.exp(logit), rtol=1e-5)


def test_run_layer_test():
    x = _x()
    run_layer_test(WeightedLogisticRegression, {"name": "ranking_head"}, x, (6, 1),
                   expected_num_trainable_weights=2, expected_num_non_trainable_weights=0)
    run_layer_test(WeightedLogisticRegression, {}, x, (6, 1), call_kwargs={"training": True})


def _model(d=5):
    inputs = keras.Input((d,))
    return keras.Model(inputs, WeightedLogisticRegression()(keras.layers.Dense(4)(inputs)))


def test_one_fit_step_and_predict_exp(tmp_path):
    model = _model()
    x = _x(32)
    watch_time = np.where(np.arange(32) % 4 == 0, 60.0, 0.0).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=WeightedLogisticLoss())
    before = [np.asarray(w) for w in model.weights]
    history = model.fit(x, watch_time, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(a, np.asarray(b)) for a, b in zip(before, model.weights))
    head = model.layers[-1]
    hidden = model.layers[-2](x)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.exp(head.logit(hidden)), rtol=1e-5)
    assert_saved_model_reproduces(model, x, tmp_path)


def test_exp_logit_tracks_expected_watch_time():
    """Paper section 4.2: with a low click rate, exp(logit) ≈ E[T | x] (watch time per impression).

    Four buckets of a one-hot feature, 25,000 impressions each, click rates P of 3-8% and
    exponential watch times for clicks. After fitting the head with `WeightedLogisticLoss`:
    * exp(logit) equals the exact weighted-LR odds Σ T_i / (N - k) of each bucket within 2%;
    * it equals the sample E[T](1 + P) within 3% (the first-order form of those odds);
    * it is within 10% of the sample E[T] (the gap is about P <= 8%) and within 15% of the
      true E[T | x] = P * mean watch time (adding sampling noise of about 5% per bucket).
    """
    rng = np.random.default_rng(2016)
    click_rate = np.array([0.03, 0.05, 0.05, 0.08])
    mean_watch = np.array([300.0, 120.0, 60.0, 200.0])
    n = 25_000
    bucket = np.repeat(np.arange(4), n)
    clicked = rng.random(4 * n) < click_rate[bucket]
    watch_time = np.where(clicked, rng.exponential(mean_watch[bucket]), 0.0).astype("float32")
    x = np.eye(4, dtype="float32")[bucket]

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, WeightedLogisticRegression()(inputs))
    model.compile(
        optimizer=keras.optimizers.Adam(0.1), loss=WeightedLogisticLoss(), steps_per_execution=50
    )
    # Full-batch steps (deterministic, converges to the optimum; ~0.1% after 150 steps).
    full_batch = tf.data.Dataset.from_tensors((x, watch_time)).repeat()
    model.fit(full_batch, steps_per_epoch=200, epochs=1, shuffle=False, verbose=0)
    predicted = model.predict(np.eye(4, dtype="float32"), verbose=0)[:, 0]

    exact_odds = np.array(
        [watch_time[bucket == i].sum() / (n - clicked[bucket == i].sum()) for i in range(4)]
    )
    sample_mean = np.array([watch_time[bucket == i].mean() for i in range(4)])
    sample_rate = np.array([clicked[bucket == i].mean() for i in range(4)])
    true_mean = click_rate * mean_watch
    np.testing.assert_allclose(predicted, exact_odds, rtol=0.02)
    np.testing.assert_allclose(predicted, sample_mean * (1 + sample_rate), rtol=0.03)
    np.testing.assert_allclose(predicted, sample_mean, rtol=0.10)
    np.testing.assert_allclose(predicted, true_mean, rtol=0.15)
    # An unweighted logistic regression would learn the click odds instead, far from E[T].
    assert np.all(predicted > 20 * sample_rate / (1 - sample_rate))


@pytest.mark.parametrize("bad", [{"units": 2}, {"activation": "relu"}])
def test_rejects_unknown_arguments(bad):
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):
        WeightedLogisticRegression(**bad)


def test_eager_calls_reject_nan_inputs_and_overflowing_watch_times():
    head = WeightedLogisticRegression()
    x = np.ones((2, 3), "float32")
    head(x)
    with pytest.raises(ValueError, match=r"WeightedLogisticRegression inputs must hold finite"):
        head(np.array([[1.0, np.nan, 0.0], [0.0, 0.0, 0.0]], "float32"))
    head.dense.kernel.assign(np.full((3, 1), 1e30, "float32"))
    with pytest.raises(ValueError, match=r"watch time overflow"):
        head(x)
