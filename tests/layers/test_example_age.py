import keras
import numpy as np
import pytest

from keras_yt.layers import ExampleAge
from tests.testing import assert_saved_model_reproduces, run_layer_test

AGES = np.array([[0.0], [3.5], [14.0], [-2.0], [30.0]], dtype="float32")


def reference(age, scale, powers):
    a = np.asarray(age, dtype="float64").reshape(-1, 1)
    a = np.maximum(a, 0.0) / scale
    return np.concatenate([a, a**2], axis=1) if powers else a


@pytest.mark.parametrize("powers", [False, True])
def test_training_output_is_clipped_scaled_age(powers):
    layer = ExampleAge(scale=7.0, powers=powers)
    out = keras.ops.convert_to_numpy(layer(AGES, training=True))
    np.testing.assert_allclose(out, reference(AGES, 7.0, powers), rtol=1e-6)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("training", [True, False])
def test_non_finite_numpy_ages_raise(bad, training):
    # Regression (issue 13, item 9): ExampleAge(inf) returned inf and NaN became 0 silently.
    layer = ExampleAge(scale=7.0)
    with pytest.raises(ValueError, match=r"ExampleAge age must hold finite numbers, got 1 "):
        layer(np.array([1.0, bad, 2.0]), training=training)


def test_graph_nan_ages_are_still_clipped():
    # Values born in the graph are not checked: NaN is clipped to 0 there (documented).
    layer = ExampleAge(scale=2.0)
    age = keras.ops.convert_to_tensor(np.array([[np.nan], [4.0]], "float32"))
    out = keras.ops.convert_to_numpy(layer(age, training=True))
    np.testing.assert_allclose(out, [[0.0], [2.0]])


@pytest.mark.parametrize("training", [False, None])
@pytest.mark.parametrize("powers", [False, True])
def test_inference_output_is_serving_value(training, powers):
    layer = ExampleAge(scale=7.0, serving_value=-0.05, powers=powers)
    out = keras.ops.convert_to_numpy(layer(AGES, training=training))
    expected = np.full((len(AGES), 1), -0.05)
    if powers:
        expected = np.concatenate([expected, expected**2], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_one_dimensional_and_integer_ages():
    layer = ExampleAge(scale=2.0)
    ages = np.array([1, 4, 0])
    out = keras.ops.convert_to_numpy(layer(ages, training=True))
    assert out.shape == (3, 1)
    np.testing.assert_allclose(out[:, 0], [0.5, 2.0, 0.0])
    assert keras.ops.convert_to_numpy(layer(ages)).shape == (3, 1)


@pytest.mark.parametrize("training", [True, False])
def test_run_layer_test(training):
    ages = np.array([[0.0], [3.5], [10.0], [40.0]], "float32")
    init = {"scale": 28, "serving_value": -0.1, "powers": True, "name": "age"}
    expected = reference(ages, 28.0, True) if training else np.tile([[-0.1, 0.01]], (4, 1))
    run_layer_test(ExampleAge, init, ages, (4, 2), call_kwargs={"training": training},
                   expected_output_data=expected, expected_num_trainable_weights=0)
    run_layer_test(ExampleAge, {}, ages[:, 0], (4, 1), call_kwargs={"training": training})


def test_symbolic_call_rejects_wide_inputs():
    layer = ExampleAge(powers=True)
    with pytest.raises(ValueError, match=r"shape \(batch,\) or \(batch, 1\), got \(None, 3\)"):
        layer(keras.Input(shape=(3,)))


def test_fit_uses_age_and_predict_uses_serving_value(tmp_path):
    age_in = keras.Input(shape=(1,))
    dense = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")
    model = keras.Model(age_in, dense(ExampleAge(scale=10.0, serving_value=0.0)(age_in)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.array([[10.0], [20.0]], dtype="float32")
    y = np.array([[0.0], [0.0]], dtype="float32")
    # In training the input is x / 10 = [1, 2]: with kernel 1, bias 0, mse gradient on the
    # kernel is mean(2 * (a - 0) * a) = 5 and on the bias mean(2 * a) = 3.
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], (1.0 + 4.0) / 2, rtol=1e-5)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in dense.weights)
    np.testing.assert_allclose(kernel, [[1.0 - 0.1 * 5.0]], rtol=1e-5)
    np.testing.assert_allclose(bias, [-0.1 * 3.0], rtol=1e-5)
    # predict: the age feature is the serving value 0, so the output is the bias alone.
    np.testing.assert_allclose(model.predict(x, verbose=0), np.full((2, 1), bias[0]), rtol=1e-5)
    assert_saved_model_reproduces(model, x, tmp_path)


def test_saved_model_keeps_training_behaviour(tmp_path):
    age_in = keras.Input(shape=(1,))
    model = keras.Model(age_in, ExampleAge(scale=4.0, serving_value=-0.5, powers=True)(age_in))
    path = tmp_path / "age.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = np.array([[2.0], [8.0]], dtype="float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(x, training=True)), reference(x, 4.0, True)
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(x, training=False)), [[-0.5, 0.25], [-0.5, 0.25]]
    )


def test_config_holds_a_float_scale():
    assert ExampleAge(scale=28).get_config()["scale"] == 28.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": 0.0}, r"scale must be a finite number > 0, got 0\.0"),
        ({"scale": -3}, r"scale must be a finite number > 0, got -3"),
        ({"scale": float("inf")}, r"scale must be a finite number > 0, got inf"),
        ({"scale": "7"}, r"scale must be a finite number > 0, got '7'"),
        ({"serving_value": float("nan")}, r"serving_value must be a finite number, got nan"),
        ({"powers": 1}, r"powers must be True or False, got 1"),
    ],
)
def test_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExampleAge(**kwargs)
