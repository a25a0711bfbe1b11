import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_yt.layers import QuantileNormalization
from tests.testing import assert_saved_model_reproduces, run_layer_test


def interp_reference(layer, x):
    q = keras.ops.convert_to_numpy(layer.quantiles).astype("float64")
    return np.interp(np.asarray(x, dtype="float64"), q, np.linspace(0, 1, len(q)))


def call(layer, x):
    return keras.ops.convert_to_numpy(layer(np.asarray(x, dtype="float32")))


def test_quantiles_are_numpy_quantiles():
    data = np.random.default_rng(0).lognormal(size=5000)
    layer = QuantileNormalization(num_quantiles=50, powers=False)
    layer.adapt(data)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.quantiles),
        np.quantile(data, np.linspace(0, 1, 51)),
        rtol=1e-6,
    )
    assert not layer.quantiles.trainable


def test_exact_against_np_interp_continuous():
    rng = np.random.default_rng(1)
    data = rng.lognormal(size=4000).astype("float32")  # heavy right tail
    layer = QuantileNormalization(num_quantiles=100, powers=False)
    layer.adapt(data)
    q = keras.ops.convert_to_numpy(layer.quantiles)
    x = np.concatenate([rng.lognormal(size=500), q, [-1.0, 0.0, q[-1] * 2, 1e9]]).astype("float32")
    out = call(layer, x)
    assert out.shape == (len(x), 1)
    np.testing.assert_allclose(out[:, 0], interp_reference(layer, x), atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0


def test_close_to_empirical_cdf():
    rng = np.random.default_rng(2)
    data = rng.normal(size=20000)
    n = 200
    layer = QuantileNormalization(num_quantiles=n, powers=False)
    layer.adapt(data)
    x = rng.normal(size=2000)
    ecdf = scipy.stats.ecdf(data).cdf.evaluate(x)
    np.testing.assert_allclose(call(layer, x)[:, 0], ecdf, atol=1.5 / n)


def test_discrete_feature_with_tied_quantiles():
    # A count feature that is mostly zero: many duplicated quantiles.
    rng = np.random.default_rng(3)
    data = np.where(rng.uniform(size=3000) < 0.7, 0, rng.poisson(3, size=3000)).astype("float32")
    layer = QuantileNormalization(num_quantiles=100, powers=False)
    layer.adapt(data)
    q = keras.ops.convert_to_numpy(layer.quantiles)
    assert len(np.unique(q)) < len(q) / 4  # really tied
    x = np.concatenate([np.arange(-1, 15), np.arange(-1, 15) + 0.5, q]).astype("float32")
    out = call(layer, x)[:, 0]
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, interp_reference(layer, x), atol=1e-6)
    # At an integer value the result is the right-continuous CDF P(X <= x), up to 1/n.
    for v in range(0, 6):
        np.testing.assert_allclose(out[v + 1], np.mean(data <= v), atol=1.0 / 100)
    # Monotone in x.
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)


def test_constant_feature():
    layer = QuantileNormalization(num_quantiles=10, powers=False)
    layer.adapt(np.full(100, 3.0))
    out = call(layer, [2.0, 3.0, 4.0])[:, 0]
    np.testing.assert_array_equal(out, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(out, interp_reference(layer, [2.0, 3.0, 4.0]))


def test_powers_and_shapes():
    data = np.random.default_rng(4).uniform(size=1000)
    layer = QuantileNormalization(num_quantiles=20)
    layer.adapt(data[:, None])
    x = np.linspace(-0.2, 1.2, 30)
    out = call(layer, x)
    assert out.shape == (30, 3)
    cdf = interp_reference(layer, x)
    np.testing.assert_allclose(out, np.stack([cdf, cdf**2, np.sqrt(cdf)], axis=1), atol=1e-6)
    np.testing.assert_allclose(call(layer, x[:, None]), out)
    assert tuple(layer(keras.Input(shape=(1,))).shape) == (None, 3)
    assert tuple(layer(keras.Input(shape=())).shape) == (None, 3)
    with pytest.raises(ValueError, match=r"shape \(batch,\) or \(batch, 1\), got \(None, 2\)"):
        QuantileNormalization()(keras.Input(shape=(2,)))


def test_adapt_streams_over_dataset_generator_and_list():
    data = np.random.default_rng(5).exponential(size=999).astype("float32")
    expected = np.quantile(data.astype("float64"), np.linspace(0, 1, 33))
    sources = [
        tf.data.Dataset.from_tensor_slices(data).batch(100),
        (data[i : i + 250] for i in range(0, len(data), 250)),
        data.tolist(),
        tf.constant(data),
    ]
    for source in sources:
        layer = QuantileNormalization(num_quantiles=32)
        layer.adapt(source)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.quantiles), expected, rtol=1e-5)
    layer = QuantileNormalization(num_quantiles=32)
    layer.adapt(tf.data.Dataset.from_tensor_slices(data).batch(100), steps=2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.quantiles),
        np.quantile(data[:200].astype("float64"), np.linspace(0, 1, 33)),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "data, match",
    [
        (np.array([]), r"empty data"),
        (tf.data.Dataset.from_tensor_slices(np.zeros(0, "float32")).batch(4), r"empty data"),
        (np.array([1.0, np.nan, 2.0, np.nan]), r"contains 2 NaN and 0 infinite values out of 4"),
        (np.array([1.0, np.inf]), r"contains 0 NaN and 1 infinite values"),
        (np.ones((5, 2)), r"shape \(n,\) or \(n, 1\), got shape \(5, 2\)"),
        (tf.data.Dataset.from_tensor_slices((np.ones(4), np.ones(4))), r"feature values only"),
    ],
)
def test_adapt_rejects_bad_data(data, match):
    layer = QuantileNormalization(num_quantiles=4)
    with pytest.raises(ValueError, match=match):
        layer.adapt(data)
    assert not layer.is_adapted


def test_call_before_adapt_raises():
    layer = QuantileNormalization()
    with pytest.raises(RuntimeError, match=r"is not adapted: call `layer.adapt\(data\)`"):
        layer(np.array([1.0, 2.0]))


def test_fit_step_and_save_load_without_readapt(tmp_path):
    rng = np.random.default_rng(6)
    data = rng.gamma(2.0, size=(500, 1)).astype("float32")
    norm = QuantileNormalization(num_quantiles=50)
    norm.adapt(data)
    inputs = keras.Input(shape=(1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(norm(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    quantiles = keras.ops.convert_to_numpy(norm.quantiles).copy()
    history = model.fit(data, rng.normal(size=(500, 1)), batch_size=500, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.quantiles), quantiles)
    assert_saved_model_reproduces(model, data[:20], tmp_path)
    restored = keras.saving.load_model(tmp_path / "model.keras")
    restored_norm = [layer for layer in restored.layers if isinstance(layer, QuantileNormalization)]
    assert restored_norm[0].is_adapted
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored_norm[0].quantiles), quantiles)


@pytest.mark.parametrize("powers", [True, False])
def test_run_layer_test(powers):
    data = np.random.default_rng(6).gamma(2.0, size=(500, 1)).astype("float32")
    x = data[:8]
    expected = QuantileNormalization(num_quantiles=64, powers=powers)
    expected.adapt(data)
    run_layer_test(QuantileNormalization,
                   {"num_quantiles": 64, "powers": powers, "name": "watch_time"}, x,
                   (8, 3 if powers else 1), setup=lambda layer: layer.adapt(data),
                   expected_output_data=call(expected, x), expected_num_trainable_weights=0,
                   expected_num_non_trainable_weights=1)
    assert expected.get_config()["num_quantiles"] == 64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_quantiles": 0}, r"num_quantiles must be an integer >= 1, got 0"),
        ({"num_quantiles": 10.0}, r"num_quantiles must be an integer >= 1, got 10\.0"),
        ({"num_quantiles": True}, r"num_quantiles must be an integer >= 1, got True"),
        ({"powers": "yes"}, r"powers must be True or False, got 'yes'"),
    ],
)
def test_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantileNormalization(**kwargs)


# ------------------------------------------------------------- issue 13: no silent wrong answers


def test_non_finite_values_and_wide_inputs_raise():
    # Regression (issue 13, item 9): NaN came out as NaN and a (2, 3) input was read as (6, 1).
    layer = QuantileNormalization(num_quantiles=4, powers=False)
    layer.adapt(np.arange(9.0))
    with pytest.raises(ValueError, match=r"inputs must hold finite numbers, got 1 invalid "
                                         r"value\(s\), e\.g\. \[nan\]"):
        layer(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"expects a feature of shape \(batch,\) or \(batch, 1\), "
                                         r"got \(2, 3\)"):
        layer(np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"got \(2, 3\)"):
        layer(tf.ones((2, 3)))


@settings(max_examples=15, deadline=None)
@given(
    data=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=200),
    x=st.lists(st.floats(-2e3, 2e3), min_size=1, max_size=20),
    num_quantiles=st.integers(1, 20),
)
def test_property_matches_np_interp(data, x, num_quantiles):
    layer = QuantileNormalization(num_quantiles=num_quantiles, powers=True)
    layer.adapt(np.asarray(data))
    out = keras.ops.convert_to_numpy(layer(np.asarray(x, "float32")))
    # float32 quantiles and inputs, as the layer stores and computes them
    cdf = interp_reference(layer, np.asarray(x, "float32"))
    q = keras.ops.convert_to_numpy(layer.quantiles)
    ties = np.isin(np.asarray(x, "float32"), q)  # np.interp averages ties; the layer steps
    np.testing.assert_allclose(out[~ties, 0], cdf[~ties], atol=1e-4)
    np.testing.assert_allclose(out[:, 1], out[:, 0] ** 2, atol=1e-6)
    np.testing.assert_allclose(out[:, 2], np.sqrt(out[:, 0]), atol=1e-6)
    assert np.all((out >= 0) & (out <= 1))
