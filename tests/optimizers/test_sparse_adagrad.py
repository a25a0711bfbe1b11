import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_yt.optimizers import SparseAdagrad


def step(optimizer, gradient, initial):
    variable = keras.Variable(initial)
    optimizer.apply([gradient], [variable])
    return keras.ops.convert_to_numpy(variable)


def test_row_sparse_step_equals_keras_adagrad_on_the_dense_gradient():
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(50, 4)).astype("float32")
    # Duplicate rows (a video in several users' histories) must be summed before squaring.
    indices = np.array([3, 7, 3, 49, 7, 7], "int64")
    values = rng.normal(size=(6, 4)).astype("float32")
    sparse = tf.IndexedSlices(values, indices, dense_shape=(50, 4))
    dense = tf.convert_to_tensor(sparse)

    ours = SparseAdagrad(0.3)
    reference = keras.optimizers.Adagrad(0.3, initial_accumulator_value=0.1)
    variable_ours, variable_ref = keras.Variable(initial), keras.Variable(initial)
    for _ in range(3):
        ours.apply([sparse], [variable_ours])
        reference.apply([dense], [variable_ref])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(variable_ours), keras.ops.convert_to_numpy(variable_ref),
        rtol=1e-5, atol=1e-6,
    )
    untouched = np.setdiff1d(np.arange(50), indices)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable_ours)[untouched],
                                  initial[untouched])


def test_dense_gradients_take_adagrads_path():
    initial = np.ones((3, 2), "float32")
    gradient = np.full((3, 2), 0.5, "float32")
    ours = step(SparseAdagrad(0.1), gradient, initial)
    reference = step(keras.optimizers.Adagrad(0.1), gradient, initial)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_embedding_model_fit_takes_the_row_wise_path(monkeypatch):
    from keras_yt import backend

    updated_shapes = []
    scatter_sub_rows = backend.scatter_sub_rows

    def spy(variable, indices, rows):
        updated_shapes.append(tuple(variable.shape))
        return scatter_sub_rows(variable, indices, rows)

    monkeypatch.setattr(backend, "scatter_sub_rows", spy)
    model = keras.Sequential([keras.Input((1,), dtype="int32"),
                              keras.layers.Embedding(1000, 4), keras.layers.Flatten(),
                              keras.layers.Dense(1)])
    model.compile(optimizer=SparseAdagrad(0.5), loss="mse")
    before = keras.ops.convert_to_numpy(model.layers[0].embeddings).copy()
    model.fit(np.array([[5], [17]]), np.ones((2, 1)), verbose=0)
    after = keras.ops.convert_to_numpy(model.layers[0].embeddings)
    changed = np.flatnonzero(np.any(after != before, axis=1))
    np.testing.assert_array_equal(changed, [5, 17])
    assert set(updated_shapes) == {(1000, 4)}  # the table, row-wise; the Dense layer densely


def test_config_round_trip_and_validation():
    optimizer = SparseAdagrad(0.2, initial_accumulator_value=0.5)
    config = json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, SparseAdagrad)
    assert restored.get_config() == optimizer.get_config()
    with pytest.raises(ValueError, match="initial_accumulator_value must be >= 0, got -1"):
        SparseAdagrad(initial_accumulator_value=-1)
