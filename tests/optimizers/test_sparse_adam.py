import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_yt.optimizers import SparseAdam


def _lazy_adam_reference(initial, gradients, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                         store=lambda moment: moment, dtype=np.float64):
    """numpy lazy Adam: only the rows with a (summed) gradient are updated at each step; the
    step uses the new moments, which are kept through `store` (e.g. a rounding to bfloat16)."""
    theta = initial.astype(dtype).copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, (indices, values) in enumerate(gradients, start=1):
        dense = np.zeros_like(theta)
        np.add.at(dense, indices, values)
        rows = np.unique(indices)
        g = dense[rows]
        new_m = beta_1 * m[rows] + (1 - beta_1) * g
        new_v = beta_2 * v[rows] + (1 - beta_2) * g**2
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        theta[rows] -= alpha * new_m / (np.sqrt(new_v) + epsilon)
        m[rows], v[rows] = store(new_m), store(new_v)
    return theta


@pytest.mark.tf_only
def test_row_sparse_steps_equal_a_numpy_lazy_adam():
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(50, 4)).astype("float32")
    # Duplicate rows (a video in several users' histories) must be summed first; the touched rows
    # change from step to step, so untouched rows must keep their moments.
    steps = [np.array([3, 7, 3, 49, 7, 7]), np.array([7, 11]), np.array([3, 3, 20])]
    gradients = [(idx, rng.normal(size=(len(idx), 4)).astype("float32")) for idx in steps]
    variable = keras.Variable(initial)
    optimizer = SparseAdam(0.05)
    for indices, values in gradients:
        sparse = tf.IndexedSlices(values, indices.astype("int64"), dense_shape=(50, 4))
        optimizer.apply([sparse], [variable])
    expected = _lazy_adam_reference(initial, gradients, 0.05)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5,
                               atol=1e-6)
    untouched = np.setdiff1d(np.arange(50), np.concatenate(steps))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable)[untouched],
                                  initial[untouched])


@pytest.mark.tf_only
def test_bfloat16_table_moments_equal_a_numpy_lazy_adam_rounding_them():
    import ml_dtypes

    from keras_yt._table_marks import mark_embedding_table

    rng = np.random.default_rng(2)
    initial = rng.normal(size=(50, 4)).astype("float32")
    steps = [np.array([3, 7, 3, 49]), np.array([7, 11]), np.array([3, 3, 20]), np.array([7])]
    gradients = [(idx, rng.normal(size=(len(idx), 4)).astype("float32")) for idx in steps]
    table, plain = keras.Variable(initial), keras.Variable(initial)
    mark_embedding_table(table)  # an embedding table of keras_yt's layers; `plain` is not one
    optimizer = SparseAdam(0.05, table_moment_dtype="bfloat16")
    for indices, values in gradients:
        sparse = tf.IndexedSlices(values, indices.astype("int64"), dense_shape=(50, 4))
        optimizer.apply([sparse, sparse], [table, plain])
    assert [slot.dtype for slot in optimizer._momentums + optimizer._velocities] == [
        "bfloat16", "float32", "bfloat16", "float32"]

    def bfloat16(moment):
        return moment.astype(ml_dtypes.bfloat16).astype(np.float32)

    expected = _lazy_adam_reference(initial, gradients, 0.05, store=bfloat16, dtype=np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(table), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain),
                               _lazy_adam_reference(initial, gradients, 0.05),
                               rtol=1e-5, atol=1e-6)
    # And the rounding matters: float32 moments would have given another table.
    assert not np.allclose(expected, _lazy_adam_reference(initial, gradients, 0.05), rtol=1e-6,
                           atol=1e-7)


def test_bfloat16_table_moments_are_float32_on_jax():
    from keras_yt._table_marks import mark_embedding_table

    table = keras.Variable(np.ones((10, 4), "float32"))
    mark_embedding_table(table)
    optimizer = SparseAdam(0.05, table_moment_dtype="bfloat16")
    optimizer.build([table])
    # XLA:CPU scatters into a bfloat16 array by converting all of it: float32 slots on JAX.
    expected = "float32" if keras.backend.backend() == "jax" else "bfloat16"
    assert [optimizer._momentums[0].dtype, optimizer._velocities[0].dtype] == [expected] * 2


@pytest.mark.tf_only
def test_rows_touched_every_step_get_keras_adams_update():
    rng = np.random.default_rng(1)
    initial = rng.normal(size=(6, 3)).astype("float32")
    ours, reference = SparseAdam(0.1), keras.optimizers.Adam(0.1)
    variable_ours, variable_ref = keras.Variable(initial), keras.Variable(initial)
    for _ in range(4):
        values = rng.normal(size=(6, 3)).astype("float32")
        sparse = tf.IndexedSlices(values, np.arange(6, dtype="int64"), dense_shape=(6, 3))
        ours.apply([sparse], [variable_ours])
        reference.apply([values], [variable_ref])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable_ours),
                               keras.ops.convert_to_numpy(variable_ref), rtol=1e-5, atol=1e-5)


def test_dense_gradients_take_adams_path():
    initial = np.ones((3, 2), "float32")
    gradient = np.full((3, 2), 0.5, "float32")
    results = []
    for optimizer in (SparseAdam(0.1), keras.optimizers.Adam(0.1)):
        variable = keras.Variable(initial)
        optimizer.apply([gradient], [variable])
        results.append(keras.ops.convert_to_numpy(variable))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


@pytest.mark.tf_only
def test_clipnorm_clips_the_summed_rows_like_the_dense_gradient():
    indices = np.array([1, 1, 4], "int64")
    values = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 3.0]], "float32")  # summed norm = 5
    sparse = tf.IndexedSlices(values, indices, dense_shape=(6, 2))
    ours, reference = SparseAdam(0.1, clipnorm=1.0), keras.optimizers.Adam(0.1, clipnorm=1.0)
    variable_ours, variable_ref = keras.Variable(np.zeros((6, 2), "float32")), keras.Variable(
        np.zeros((6, 2), "float32"))
    ours.apply([sparse], [variable_ours])
    reference.apply([tf.convert_to_tensor(sparse)], [variable_ref])
    # One Adam step moves every non-zero coordinate by about lr: compare the touched rows.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable_ours)[[1, 4]],
                               keras.ops.convert_to_numpy(variable_ref)[[1, 4]], rtol=1e-5)


@pytest.mark.tf_only
def test_candidate_generator_default_optimizer_updates_tables_row_wise(monkeypatch):
    from keras_yt import backend
    from keras_yt.models import CandidateGenerator

    updated = []
    for function in ("scatter_sub_rows", "scatter_assign_rows"):
        def spy(variable, indices, rows, _original=getattr(backend, function)):
            updated.append(tuple(variable.shape))
            return _original(variable, indices, rows)

        monkeypatch.setattr(backend, function, spy)
    model = CandidateGenerator(num_videos=997, video_embedding_dim=8, max_history=4,
                               hidden_units=(16, 8), num_sampled=16, seed=0)
    model.compile()
    assert isinstance(model.optimizer, SparseAdam)
    rng = np.random.default_rng(0)
    x = {"watch_history": rng.integers(1, 997, (8, 4)).astype("int32"),
         "example_age": np.zeros(8, "float32")}
    model.fit(x, rng.integers(1, 997, 8), verbose=0)
    assert set(updated) == {(997, 8), (997,)}  # watch table and W: (997, 8); biases b: (997,)


@pytest.mark.tf_only
def test_compact_table_moments_are_bfloat16_and_row_wise():
    from keras_yt.models import CandidateGenerator

    model = CandidateGenerator(num_videos=997, video_embedding_dim=8, max_history=4,
                               hidden_units=(16, 8), num_sampled=16, seed=0)
    model.compile(optimizer=SparseAdam(0.01, compact_table_moments=True))
    rng = np.random.default_rng(0)
    x = {"watch_history": rng.integers(1, 997, (8, 4)).astype("int32"),
         "example_age": np.zeros(8, "float32")}
    model.fit(x, rng.integers(1, 997, 8), verbose=0)
    optimizer = model.optimizer
    slots = {v.path: (m, s) for v, m, s in zip(model.trainable_variables, optimizer._momentums,
                                               optimizer._velocities)}
    m, v = slots[model.watch_embedding.embeddings.path]
    assert m.dtype == "bfloat16" and tuple(v.shape) == (997, 1)
    # Only the rows of the watched videos got a (row-wise) second moment.
    touched = np.flatnonzero(keras.ops.convert_to_numpy(v)[:, 0])
    assert set(touched) <= set(np.unique(x["watch_history"])) and len(touched) > 0
    m, v = slots[model.softmax.output_biases.path]  # a vector: element-wise float32 moments
    assert m.dtype == "float32" and tuple(v.shape) == (997,)


def test_config_round_trip_and_validation():
    optimizer = SparseAdam(0.002, beta_1=0.8, clipnorm=2.0)
    config = json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, SparseAdam)
    assert restored.get_config() == optimizer.get_config()
    with pytest.raises(ValueError, match=r"beta_2 must be a number in \[0, 1\), got 1.5"):
        SparseAdam(beta_2=1.5)
    with pytest.raises(ValueError, match="amsgrad"):
        SparseAdam(amsgrad=True)
    with pytest.raises(ValueError, match=r"table_moment_dtype must be one of .*got 'float16'"):
        SparseAdam(table_moment_dtype="float16")
    bfloat16 = SparseAdam(table_moment_dtype="bfloat16")
    assert keras.optimizers.deserialize(
        keras.optimizers.serialize(bfloat16)).table_moment_dtype == "bfloat16"


@pytest.mark.tf_only
def test_bfloat16_table_moments_survive_a_keras_save_and_load(tmp_path):
    from keras_yt.models import CandidateGenerator

    model = CandidateGenerator(num_videos=997, video_embedding_dim=8, max_history=4,
                               hidden_units=(16, 8), num_sampled=16, seed=0)
    model.compile(optimizer=SparseAdam(0.01, table_moment_dtype="bfloat16"))
    rng = np.random.default_rng(0)
    x = {"watch_history": rng.integers(1, 997, (8, 4)).astype("int32"),
         "example_age": np.zeros(8, "float32")}
    model.fit(x, rng.integers(1, 997, 8), verbose=0)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.optimizer.table_moment_dtype == "bfloat16"
    saved, loaded = model.optimizer.variables, restored.optimizer.variables
    assert [v.dtype for v in loaded] == [v.dtype for v in saved]
    assert "bfloat16" in [v.dtype for v in loaded]
    for before, after in zip(saved, loaded, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(after).astype("float32"),
                                      keras.ops.convert_to_numpy(before).astype("float32"))
