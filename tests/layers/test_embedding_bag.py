import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_yt.layers import EmbeddingBag
from tests.gradients import gradients
from tests.testing import run_layer_test

INPUT_DIM, OUTPUT_DIM = 20, 4


def reference_bag(table, ids, weights=None, combiner="mean"):
    """Python loop over rows: valid ids are 1 <= id < len(table); the rest contribute nothing."""
    ids = np.asarray(ids)
    weights = np.ones(ids.shape) if weights is None else np.asarray(weights, dtype="float64")
    out = np.zeros((ids.shape[0], table.shape[1]))
    for r in range(ids.shape[0]):
        total, wsum, w2sum = np.zeros(table.shape[1]), 0.0, 0.0
        for i, w in zip(ids[r], weights[r]):
            if 1 <= i < len(table):
                total += w * table[i]
                wsum += w
                w2sum += w * w
        if combiner == "sum":
            out[r] = total
        elif combiner == "mean":
            out[r] = total / wsum if wsum > 0 else 0.0
        else:
            out[r] = total / np.sqrt(w2sum) if w2sum > 0 else 0.0
    return out


def make_layer(combiner="mean", seed=0):
    layer = EmbeddingBag(
        INPUT_DIM,
        OUTPUT_DIM,
        combiner=combiner,
        embeddings_initializer=keras.initializers.RandomNormal(seed=seed),
    )
    layer.build((None, None))
    return layer


@pytest.fixture
def ids():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, INPUT_DIM, size=(6, 5))
    ids[0] = 0  # all padding
    ids[1, 2:] = 0  # partial padding
    ids[2, 0] = -3  # out of range: negative
    ids[3, 1] = INPUT_DIM  # out of range: too large
    ids[4, :] = [INPUT_DIM + 5, -1, 0, INPUT_DIM, 0]  # only invalid ids
    return ids


@pytest.mark.parametrize("combiner", ["mean", "sum", "sqrtn"])
def test_matches_reference_without_and_with_weights(ids, combiner):
    layer = make_layer(combiner)
    table = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_allclose(
        _traced(layer, ids),  # out-of-range ids: eager calls reject them
        reference_bag(table, ids, combiner=combiner),
        rtol=1e-5,
        atol=1e-6,
    )
    weights = np.random.default_rng(2).uniform(0.1, 3.0, size=ids.shape)
    np.testing.assert_allclose(
        _traced(layer, ids, weights),
        reference_bag(table, ids, weights, combiner=combiner),
        rtol=1e-5,
        atol=1e-6,
    )


def test_mean_is_plain_average_of_rows():
    layer = make_layer("mean")
    table = keras.ops.convert_to_numpy(layer.embeddings)
    out = keras.ops.convert_to_numpy(layer(np.array([[3, 5, 0, 0]])))
    np.testing.assert_allclose(out[0], (table[3] + table[5]) / 2, rtol=1e-6)


def _traced(layer, ids, weights=None):
    """The layer called inside a traced function (predict), where values are not checked."""
    inputs = keras.Input((ids.shape[1],), dtype="int64")
    if weights is None:
        return keras.Model(inputs, layer(inputs)).predict(ids, verbose=0)
    w = keras.Input((ids.shape[1],))
    return keras.Model([inputs, w], layer(inputs, w)).predict([ids, weights], verbose=0)


def test_out_of_range_ids_act_like_padding_inside_the_graph(ids):
    layer = make_layer("mean")
    cleaned = np.where((ids > 0) & (ids < INPUT_DIM), ids, 0)
    np.testing.assert_array_equal(_traced(layer, ids), keras.ops.convert_to_numpy(layer(cleaned)))
    # Row 4 holds only out-of-range ids and padding: zero vector.
    np.testing.assert_array_equal(_traced(layer, ids)[4], 0.0)


def test_one_dimensional_ids_are_bags_of_one():
    layer = make_layer("mean")
    table = keras.ops.convert_to_numpy(layer.embeddings)
    flat = np.array([3, 0, 7])
    out = keras.ops.convert_to_numpy(layer(flat))
    np.testing.assert_allclose(out, [table[3], np.zeros(OUTPUT_DIM), table[7]], rtol=1e-6)
    np.testing.assert_array_equal(out, keras.ops.convert_to_numpy(layer(flat[:, None])))
    assert layer.compute_output_shape((None,)) == (None, OUTPUT_DIM)


def test_float_ids_are_cast():
    layer = make_layer("sum")
    ids = np.array([[1, 2, 0]])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(ids.astype("float32"))),
        keras.ops.convert_to_numpy(layer(ids)),
    )


@pytest.mark.parametrize("combiner", ["mean", "sum", "sqrtn"])
def test_all_padding_row_is_zero_with_finite_gradients(combiner):
    layer = make_layer(combiner)
    ids = np.array([[0, 0, 0], [2, 0, 5]])
    weights = keras.Variable([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    out = keras.ops.convert_to_numpy(layer(ids, weights))
    grads = gradients(lambda: keras.ops.sum(layer(ids, weights)), [layer.embeddings, weights])
    assert np.all(out[0] == 0.0)
    # Row 1: ids 2 and 5 with weights 0 -> zero weight sum -> zero vector, not NaN.
    assert np.all(out[1] == 0.0)
    for g in grads:
        assert np.all(np.isfinite(g))


@pytest.mark.tf_only
def test_gradient_wrt_embeddings_is_row_sparse():
    layer = make_layer("mean")
    ids = tf.constant([[1, 4, 0], [4, 9, 9]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(ids) ** 2)
    grad = tape.gradient(loss, layer.trainable_variables)[0]
    assert isinstance(grad, tf.IndexedSlices)
    dense = tf.convert_to_tensor(grad).numpy()
    # Only rows 1, 4, 9 receive gradient; padding row 0 receives exactly zero.
    touched = np.flatnonzero(np.abs(dense).sum(axis=1) > 0)
    np.testing.assert_array_equal(touched, [1, 4, 9])


@pytest.mark.tf_only
def test_ragged_ids_match_padded_dense():
    layer = make_layer("mean")
    ragged = tf.ragged.constant([[3, 1], [7], [], [2, 2, 8]])
    dense = np.array([[3, 1, 0], [7, 0, 0], [0, 0, 0], [2, 2, 8]])
    np.testing.assert_allclose(layer(ragged).numpy(), layer(dense).numpy(), rtol=1e-6)
    ragged_w = tf.ragged.constant([[1.0, 3.0], [2.0], [], [0.5, 0.5, 4.0]])
    dense_w = np.array([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0], [0.0] * 3, [0.5, 0.5, 4.0]])
    table = layer.embeddings.numpy()
    np.testing.assert_allclose(
        layer(ragged, ragged_w).numpy(), reference_bag(table, dense, dense_w), rtol=1e-5
    )


def test_ragged_ids_raise_a_clear_error_off_tensorflow():
    if keras.backend.backend() == "tensorflow":
        pytest.skip("ragged ids are accepted on TensorFlow")
    with pytest.raises(ValueError, match="padded with id 0"):
        make_layer("mean")(tf.ragged.constant([[3, 1], [7]]))


def test_shared_table_between_two_inputs():
    shared = EmbeddingBag(INPUT_DIM, OUTPUT_DIM)
    impression = keras.Input(shape=(1,), dtype="int32")
    history = keras.Input(shape=(5,), dtype="int32")
    out = keras.layers.Concatenate()([shared(impression), shared(history)])
    model = keras.Model([impression, history], out)
    assert len(model.weights) == 1
    imp = np.array([[3], [4]])
    hist = np.array([[3, 0, 0, 0, 0], [1, 2, 0, 0, 0]])
    pred = model.predict([imp, hist], verbose=0)
    table = shared.embeddings.numpy()
    np.testing.assert_allclose(pred[0], np.concatenate([table[3], table[3]]), rtol=1e-6)
    np.testing.assert_allclose(pred[1, OUTPUT_DIM:], (table[1] + table[2]) / 2, rtol=1e-6)


@pytest.mark.parametrize("combiner", ["mean", "sum", "sqrtn"])
def test_run_layer_test(combiner):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, INPUT_DIM, size=(5, 4))
    weights = rng.uniform(0, 2, size=(5, 4)).astype("float32")
    init = {"input_dim": INPUT_DIM, "output_dim": OUTPUT_DIM, "combiner": combiner,
            "embeddings_regularizer": "l2", "name": "history"}
    run_layer_test(EmbeddingBag, init, ids, (5, OUTPUT_DIM), expected_num_trainable_weights=1,
                   expected_num_non_trainable_weights=0)
    run_layer_test(EmbeddingBag, init, ids, (5, OUTPUT_DIM), call_kwargs={"weights": weights})
    assert EmbeddingBag(INPUT_DIM, OUTPUT_DIM).compute_output_shape((3, 7)) == (3, OUTPUT_DIM)


def test_regularizer_adds_loss():
    layer = EmbeddingBag(10, 3, embeddings_regularizer=keras.regularizers.L2(0.5))
    layer(np.array([[1, 2]]))
    expected = 0.5 * np.sum(layer.embeddings.numpy() ** 2)
    np.testing.assert_allclose(float(sum(layer.losses)), expected, rtol=1e-5)


def test_fit_step_updates_only_looked_up_rows():
    ids_in = keras.Input(shape=(3,), dtype="int32")
    bag = EmbeddingBag(INPUT_DIM, OUTPUT_DIM)
    model = keras.Model(ids_in, keras.layers.Dense(1)(bag(ids_in)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = bag.embeddings.numpy().copy()
    x = np.array([[1, 2, 0], [2, 3, 0]])
    history = model.fit(x, np.ones((2, 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = np.flatnonzero(np.abs(bag.embeddings.numpy() - before).sum(axis=1) > 0)
    np.testing.assert_array_equal(changed, [1, 2, 3])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_dim": 0, "output_dim": 4}, r"input_dim must be a positive integer, got 0"),
        ({"input_dim": 2.5, "output_dim": 4}, r"input_dim must be a positive integer, got 2\.5"),
        ({"input_dim": 5, "output_dim": -1}, r"output_dim must be a positive integer, got -1"),
        (
            {"input_dim": 5, "output_dim": 4, "combiner": "max"},
            r"combiner must be one of \('mean', 'sum', 'sqrtn'\), got 'max'",
        ),
    ],
)
def test_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingBag(**kwargs)


# ------------------------------------------------------------- issue 13: no silent wrong answers


@pytest.mark.parametrize(
    "ids, weights, match",
    [
        ([[1, 2]], [[1.0, -1.0]], r"EmbeddingBag weights must hold finite weights >= 0.0, got 1 "
                                   r"invalid value\(s\), e.g. \[-1.0\]"),
        ([[1, 2]], [[1.0, np.nan]], r"EmbeddingBag weights must hold finite weights >= 0.0"),
        ([[1.0, 2.5]], None, r"EmbeddingBag ids must hold integer ids in \[0, 20\), got "
                             r"non-integer values \[2.5\]"),
        ([[1.0, np.nan]], None, r"EmbeddingBag ids must hold integer ids in \[0, 20\), got "
                                r"non-integer values \[nan\]"),
        ([["a", "b"]], None, r"EmbeddingBag ids must hold integer ids.*, got dtype <U1"),
        (np.ones((2, 3, 4), "int32"), None, r"ids must have shape \(batch, L\) or \(batch,\), "
                                            r"got shape \(2, 3, 4\)"),
        ([[1, 2, 3]], [[1.0, 1.0]], r"weights must have the shape of the ids \(1, 3\), "
                                    r"got \(1, 2\)"),
    ],
)
def test_bad_numpy_inputs_raise(ids, weights, match):
    # Regression (issue 13, items 8 and 15): negative weights gave row1 - row2, fractional ids
    # were truncated, NaN ids became padding, 3-D ids failed deep in TF.
    layer = make_layer("mean")
    with pytest.raises(ValueError, match=match):
        layer(np.asarray(ids), None if weights is None else np.asarray(weights))


def test_string_and_float_tensors_raise():
    layer = make_layer("mean")
    with pytest.raises(ValueError, match="ids must have an integer dtype, got string"):
        layer(tf.constant([["a", "b"]]))
    with pytest.raises(ValueError, match="ids must have an integer dtype, got float32"):
        layer(keras.Input(shape=(3,), dtype="float32"))


def test_whole_float_numpy_ids_are_accepted():
    layer = make_layer("sum")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(np.array([[1.0, 2.0, 0.0]]))),
        keras.ops.convert_to_numpy(layer(np.array([[1, 2, 0]]))),
    )


@pytest.mark.tf_only  # ragged ids are TensorFlow's (a clear error on JAX, tested above)
def test_ragged_weights_must_match_the_ids_row_lengths():
    # Regression (issue 13, item 8): row lengths [2, 1] vs [1, 2] were silently misaligned.
    layer = make_layer("mean")
    ids = tf.ragged.constant([[1, 2], [3]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same row lengths as the ids"):
        layer(ids, tf.ragged.constant([[1.0], [1.0, 2.0]]))
    ok = layer(ids, tf.ragged.constant([[1.0, 3.0], [2.0]]))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ok), [(table[1] + 3 * table[2]) / 4, table[3]], rtol=1e-6
    )


@settings(max_examples=15, deadline=None)
@given(
    data=st.data(),
    combiner=st.sampled_from(["mean", "sum", "sqrtn"]),
    batch=st.integers(1, 4),
    length=st.integers(1, 6),
)
def test_property_matches_numpy_reference_with_weights(data, combiner, batch, length):
    ids = np.array(
        data.draw(st.lists(st.lists(st.integers(-2, INPUT_DIM + 2), min_size=length,
                                    max_size=length), min_size=batch, max_size=batch))
    )
    weights = np.array(
        # 0 or a normal float32: subnormal weights (1e-38) are flushed to zero by TensorFlow.
        data.draw(st.lists(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 10.0)),
                                    min_size=length, max_size=length),
                           min_size=batch, max_size=batch)),
        dtype="float32",
    )
    layer = make_layer(combiner)
    table = keras.ops.convert_to_numpy(layer.embeddings).astype("float64")
    outside = (ids < 0) | (ids >= INPUT_DIM)
    if outside.any():  # eager calls name them; in the graph they count as padding
        with pytest.raises(ValueError, match="outside it"):
            layer(ids, weights)
        ids = np.where(outside, 0, ids)
    out = keras.ops.convert_to_numpy(layer(ids, weights))
    np.testing.assert_allclose(out, reference_bag(table, ids, weights, combiner), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("bad", [-1, -3, INPUT_DIM, INPUT_DIM + 5, 2**32 + 2])
def test_eager_calls_reject_ids_outside_the_table(bad):
    """A direct call with numpy ids names the out-of-range id instead of dropping it."""
    layer = make_layer("mean")
    ids = np.array([[1, 2, 0], [3, bad, 0]], dtype=np.int64)
    with pytest.raises(ValueError, match=rf"EmbeddingBag ids must hold .*\[0, {INPUT_DIM}\).*"
                                         rf"{bad}"):
        layer(ids)
    if keras.backend.backend() == "tensorflow":
        tensor = tf.constant(ids)
    elif abs(bad) < 2**31:  # JAX without x64 makes int32 arrays: 2**32 + 2 cannot be one
        tensor = keras.ops.convert_to_tensor(ids)
    else:
        return
    with pytest.raises(ValueError, match=rf"{bad}"):  # eager tensors are checked too
        layer(tensor)
