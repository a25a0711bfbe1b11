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


def _row_sparse(indices, values, num_rows):
    """The backend's row-sparse gradient: `tf.IndexedSlices`, or on JAX a `RowGradient` (its
    rows summed per id, as the JAX train step makes it)."""
    if keras.backend.backend() != "jax":
        return tf.IndexedSlices(values, indices.astype("int64"),
                                dense_shape=(num_rows, values.shape[1]))
    from keras_yt.backend.jax import RowGradient

    rows, inverse = np.unique(indices, return_inverse=True)
    summed = np.zeros((len(rows), values.shape[1]), values.dtype)
    np.add.at(summed, inverse, values)
    return RowGradient(rows.astype("int32"), summed, num_rows)


def test_bfloat16_table_moments_equal_a_numpy_lazy_adam_rounding_them():
    import ml_dtypes

    from keras_yt import backend
    from keras_yt._table_marks import mark_embedding_table

    rng = np.random.default_rng(2)
    initial = rng.normal(size=(50, 4)).astype("float32")
    steps = [np.array([3, 7, 3, 49]), np.array([7, 11]), np.array([3, 3, 20]), np.array([7])]
    gradients = [(idx, rng.normal(size=(len(idx), 4)).astype("float32")) for idx in steps]
    table, plain = keras.Variable(initial), keras.Variable(initial)
    mark_embedding_table(table)  # an embedding table of keras_yt's layers; `plain` is not one
    optimizer = SparseAdam(0.05, table_moment_dtype="bfloat16")
    for indices, values in gradients:
        sparse = _row_sparse(indices, values, 50)
        optimizer.apply([sparse, sparse], [table, plain])
    # bfloat16 slots (on JAX their bits: XLA:CPU scatters into a bfloat16 array by converting
    # all of it).
    stored = "uint16" if keras.backend.backend() == "jax" else "bfloat16"
    assert backend.bfloat16_storage_dtype() == stored
    assert [slot.dtype for slot in optimizer._momentums + optimizer._velocities] == [
        stored, "float32", stored, "float32"]

    def bfloat16(moment):
        return moment.astype(ml_dtypes.bfloat16).astype(np.float32)

    expected = _lazy_adam_reference(initial, gradients, 0.05, store=bfloat16, dtype=np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(table), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain),
                               _lazy_adam_reference(initial, gradients, 0.05),
                               rtol=1e-5, atol=1e-6)
    # The stored moments are the reference's, rounded the same way (bits on JAX read as such).
    m = np.asarray(optimizer._momentums[0].numpy())
    m = m.view(ml_dtypes.bfloat16) if m.dtype == np.uint16 else m
    touched = np.unique(np.concatenate(steps))
    assert np.all(m.astype(np.float32)[touched] != 0)
    assert np.all(m.astype(np.float32)[np.setdiff1d(np.arange(50), touched)] == 0)
    # And the rounding matters: float32 moments would have given another table.
    assert not np.allclose(expected, _lazy_adam_reference(initial, gradients, 0.05), rtol=1e-6,
                           atol=1e-7)


def test_auto_table_moments_are_bfloat16_from_2_to_the_24_elements():
    from keras_yt import backend
    from keras_yt._table_marks import mark_embedding_table
    from keras_yt.optimizers.sparse_adam import BFLOAT16_MOMENTS_MIN_SIZE

    assert BFLOAT16_MOMENTS_MIN_SIZE == 2**24
    big = keras.Variable(np.zeros((2**16, 256), "float32"))  # 2**24 elements: 64 MiB each
    small = keras.Variable(np.zeros((2**16 - 1, 256), "float32"))
    vector = keras.Variable(np.zeros((2**25,), "float32"))  # biases: rank 1, never a table
    for variable in (big, small, vector):
        mark_embedding_table(variable)
    unmarked = keras.Variable(np.zeros((2**16, 256), "float32"))
    optimizer = SparseAdam()
    assert optimizer.table_moment_dtype == "auto"
    optimizer.build([big, small, vector, unmarked])
    stored = backend.bfloat16_storage_dtype()
    assert [m.dtype for m in optimizer._momentums] == [stored, "float32", "float32", "float32"]
    assert [v.dtype for v in optimizer._velocities] == [stored, "float32", "float32", "float32"]
    forced = SparseAdam(table_moment_dtype="float32")
    forced.build([big])
    assert forced._momentums[0].dtype == "float32"


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


def _trained_with_bfloat16_moments():
    from keras_yt.models import CandidateGenerator

    model = CandidateGenerator(num_videos=997, video_embedding_dim=8, max_history=4,
                               hidden_units=(16, 8), num_sampled=16, seed=0)
    model.compile(optimizer=SparseAdam(0.01, table_moment_dtype="bfloat16"))
    rng = np.random.default_rng(0)
    x = {"watch_history": rng.integers(1, 997, (8, 4)).astype("int32"),
         "example_age": np.zeros(8, "float32")}
    model.fit(x, rng.integers(1, 997, 8), verbose=0)
    return model


def _moment_values(optimizer) -> list:
    """Every optimizer variable's values as float32 (bfloat16 bits on JAX read as bfloat16)."""
    return [optimizer.variable_numbers(v).astype("float32") for v in optimizer.variables]


def _saved_optimizer_dtypes(path) -> list:
    """The dtypes an optimizer's variables have in a `.keras` file (as Keras records them)."""
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as weights:
        with h5py.File(weights) as h5:
            group = h5["optimizer/vars"]
            return [group[key].attrs.get("dtype", str(group[key].dtype))
                    for key in sorted(group, key=int)]


def test_bfloat16_table_moments_survive_a_keras_save_and_load(tmp_path):
    model = _trained_with_bfloat16_moments()
    model.save(tmp_path / "model.keras")
    # Saved as bfloat16 on every backend (JAX holds the bits), so a file moves between backends.
    assert "bfloat16" in _saved_optimizer_dtypes(tmp_path / "model.keras")
    assert "uint16" not in _saved_optimizer_dtypes(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.optimizer.table_moment_dtype == "bfloat16"
    saved, loaded = model.optimizer.variables, restored.optimizer.variables
    assert [v.dtype for v in loaded] == [v.dtype for v in saved]
    for before, after in zip(_moment_values(model.optimizer), _moment_values(restored.optimizer),
                             strict=True):
        np.testing.assert_array_equal(after, before)
    assert any(np.any(values != 0) for values in _moment_values(restored.optimizer))


@pytest.mark.tf_only
def test_bfloat16_table_moments_saved_on_tensorflow_load_on_jax(tmp_path):
    """A file written on TensorFlow (bfloat16 slots) loads on JAX (bits) to the same values."""
    pytest.importorskip("jax")
    from tests.conftest import run_python

    model = _trained_with_bfloat16_moments()
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "moments.npy", np.concatenate(
        [v.ravel() for v in _moment_values(model.optimizer)]))
    code = (
        "import sys, numpy as np, keras, keras_yt.models\n"
        "from tests.optimizers.test_sparse_adam import _moment_values\n"
        "model = keras.saving.load_model(sys.argv[1] + '/model.keras')\n"
        "assert 'uint16' in [v.dtype for v in model.optimizer.variables]\n"
        "got = np.concatenate([v.ravel() for v in _moment_values(model.optimizer)])\n"
        "np.testing.assert_array_equal(got, np.load(sys.argv[1] + '/moments.npy'))\n"
    )
    result = run_python(code, str(tmp_path), backend="jax")
    assert result.returncode == 0, result.stderr[-2000:]
