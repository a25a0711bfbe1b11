
import keras
import numpy as np
import pytest

from keras_yt.metrics import auc
from keras_yt.models import Ranker
from tests.testing import run_layer_test

NUM_VIDEOS = 40


def make_model(**overrides):
    config = dict(
        num_videos=NUM_VIDEOS,
        video_embedding_dim=4,
        max_history=5,
        categorical_features={"video_language": {"input_dim": 4, "output_dim": 2}},
        continuous_features=["time_since_last_watch", "previous_impressions"],
        num_quantiles=50,
        hidden_units=(16, 8),
        seed=0,
    )
    config.update(overrides)
    return Ranker(**config)


def make_impressions(n=4000, seed=0):
    """Clicks depend on the video and on recency; watch time on the video."""
    rng = np.random.default_rng(seed)
    video = rng.integers(1, NUM_VIDEOS, size=n).astype("int32")
    since = rng.exponential(5.0, size=n).astype("float32")
    previous = rng.poisson(1.0, size=n).astype("float32")
    p_click = 0.02 + 0.25 * (video % 4 == 0) + 0.1 * (since < 2)
    clicked = rng.uniform(size=n) < p_click
    watch_time = np.where(clicked, rng.exponential(30 + 5 * (video % 7)), 0.0).astype("float32")
    x = {
        "video_id": video,
        "watch_history": rng.integers(0, NUM_VIDEOS, size=(n, 5)).astype("int32"),
        "video_language": (video % 4).astype("int32"),
        "time_since_last_watch": since,
        "previous_impressions": previous,
    }
    return x, watch_time


def test_run_layer_test():
    x, watch_time = make_impressions(400)
    small = {name: value[:8] for name, value in x.items()}
    init = dict(num_videos=NUM_VIDEOS, video_embedding_dim=4, max_history=5,
                categorical_features={"video_language": {"input_dim": 4, "output_dim": 2}},
                continuous_features=["time_since_last_watch", "previous_impressions"],
                num_quantiles=50, hidden_units=(16, 8), seed=0)
    # The call is the expected watch time exp(logit) at inference; fit trains the weighted
    # logistic regression. The quantiles are adapted to the 400 impressions first.
    run_layer_test(Ranker, init, small, (8, 1), setup=lambda model: model.adapt(x),
                   train_data=(small, watch_time[:8]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_quantiles": 1}, "num_quantiles must be an integer >= 2, got 1"),
        ({"continuous_features": "age"}, "continuous_features must be a list of feature names"),
        ({"video_embedding_dim": 0}, "video_embedding_dim must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(**kwargs)


def test_fit_before_adapt_fails_clearly_and_leaves_the_model_usable():
    model = make_model()
    model.compile()
    x, watch_time = make_impressions(256)
    with pytest.raises(ValueError, match=r"Ranker is not adapted: call model.adapt\(features\)"):
        model.fit(x, watch_time, verbose=0)
    with pytest.raises(ValueError, match="not adapted"):
        model.predict(x, verbose=0)
    model.adapt(x)
    history = model.fit(x, watch_time, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


def test_every_missing_feature_is_named_at_once():
    model = make_model()
    x, _ = make_impressions(16)
    model.adapt(x)
    del x["video_language"], x["previous_impressions"]
    with pytest.raises(ValueError, match=r"missing input feature\(s\) \['video_language', "
                                         r"'previous_impressions'\]"):
        model.predict(x, verbose=0)


def test_impression_and_history_share_one_video_table():
    model = make_model()
    model.build()
    tables = [w for w in model.weights if "video_embedding" in w.path]
    assert len(tables) == 1 and tuple(tables[0].shape) == (NUM_VIDEOS, 4)


def test_fit_predict_expected_watch_time_and_save_load(tmp_path):
    keras.utils.set_random_seed(0)  # 4 epochs from a random start: make the run reproducible
    x, watch_time = make_impressions()
    model = make_model()
    model.adapt(x)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(x, watch_time, batch_size=256, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    predicted = model.predict(x, verbose=0)
    logits = model(x, training=True)
    np.testing.assert_allclose(predicted, np.exp(keras.ops.convert_to_numpy(logits)), rtol=1e-5)
    assert np.all(predicted > 0)
    # exp(logit) ranks clicked impressions above the others.
    assert auc(watch_time > 0, predicted[:, 0]) > 0.7

    # evaluate's loss is the weighted logistic loss of the logits (not of exp(logit)).
    z = keras.ops.convert_to_numpy(logits)[:, 0]
    label = (watch_time > 0).astype("float64")
    weight = np.where(label > 0, watch_time, 1.0)
    bce = np.maximum(z, 0) - z * label + np.log1p(np.exp(-np.abs(z)))
    expected = np.sum(weight * bce) / len(z)
    results = model.evaluate(x, watch_time, batch_size=len(z), verbose=0, return_dict=True)
    np.testing.assert_allclose(results["loss"], expected, rtol=1e-3)

    path = tmp_path / "ranker.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), predicted, rtol=1e-5)


# ------------------------------------------------------------- issue 13: no silent wrong answers


@pytest.mark.parametrize(
    "feature, value, match",
    [
        ("time_since_last_watch", np.nan, r"feature 'time_since_last_watch' must hold finite "
                                          r"numbers, got 1 invalid value\(s\), e\.g\. \[nan\]"),
        ("previous_impressions", np.inf, r"feature 'previous_impressions' must hold finite"),
        ("video_id", 2**31 + 3, r"feature 'video_id' must hold integer ids in \[0, 40\)"),
    ],
)
def test_bad_features_raise_before_fit(feature, value, match):
    # Regression (issue 13, item 1): the Ranker trained NaN weights from a NaN feature.
    x, watch_time = make_impressions(50)
    model = make_model()
    model.adapt(x)
    model.compile()
    x[feature] = x[feature].astype("float64" if isinstance(value, float) else "int64")
    x[feature][7] = value
    with pytest.raises(ValueError, match=match):
        model.fit(x, watch_time, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.predict(x, verbose=0)


@pytest.mark.parametrize("bad", [-5.0, np.nan, np.inf])
def test_negative_or_non_finite_watch_times_raise(bad):
    # Regression (issue 13, item 6): a NaN or negative watch time was a silent non-click.
    x, watch_time = make_impressions(50)
    model = make_model()
    model.adapt(x)
    model.compile()
    watch_time = watch_time.copy()
    watch_time[3] = bad
    with pytest.raises(ValueError, match=r"y \(the watch times\) must hold finite numbers >= "
                                         r"0\.0, got 1 invalid value\(s\)"):
        model.fit(x, watch_time, verbose=0)
