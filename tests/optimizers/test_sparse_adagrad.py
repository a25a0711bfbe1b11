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


@pytest.mark.tf_only
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


def test_embedding_model_fit_equals_keras_adagrad():
    """On every backend (row-wise on TensorFlow, dense elsewhere) the steps equal Adagrad's."""

    def train(optimizer):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((2,), dtype="int32"),
                                  keras.layers.Embedding(200, 4), keras.layers.Flatten(),
                                  keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse")
        # No id twice in a batch: Keras' Adagrad squares each repeat of a row-sparse row.
        x = np.array([[5, 17], [9, 150], [33, 2]])
        model.fit(x, np.ones((3, 1)), batch_size=3, epochs=3, verbose=0)
        return [keras.ops.convert_to_numpy(v) for v in model.weights]

    ours = train(SparseAdagrad(0.3))
    reference = train(keras.optimizers.Adagrad(0.3, initial_accumulator_value=0.1))
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.any(ours[0] != train(keras.optimizers.SGD(0.0))[0])  # the table did train


@pytest.mark.tf_only
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


# --- CandidateGenerator: every large table is updated row-wise and never read whole --------------

NUM_VIDEOS, SEARCH_BINS = 997, 503  # primes: no other dimension of the model equals them


def _candidate_generator_and_data(optimizer=None):
    from keras_yt.models import CandidateGenerator

    keras.utils.set_random_seed(0)
    model = CandidateGenerator(num_videos=NUM_VIDEOS, video_embedding_dim=8, max_history=6,
                               search_num_bins=SEARCH_BINS, search_embedding_dim=4, max_queries=2,
                               hidden_units=(16, 8), num_sampled=32, seed=0)
    model.compile(optimizer=optimizer)
    rng = np.random.default_rng(0)
    history = rng.integers(1, NUM_VIDEOS, (24, 6)).astype("int32")
    history[:, 4:] = 0  # padding
    x = {"watch_history": history,
         "example_age": rng.random(24).astype("float32"),
         "search_history": np.array([["funny cat videos", "dog"], ["news", ""]] * 12)}
    y = rng.integers(1, NUM_VIDEOS, 24).astype("int32")
    return model, x, y


def _big_tables(model):
    return {
        model.watch_embedding.embeddings.path: (NUM_VIDEOS, 8),
        model.search_embedding.embeddings.path: (SEARCH_BINS, 4),
        model.softmax.output_embeddings.path: (NUM_VIDEOS, 8),
        model.softmax.output_biases.path: (NUM_VIDEOS,),
    }


@pytest.mark.tf_only
def test_candidate_generator_fit_updates_every_big_table_row_wise(monkeypatch):
    from keras_yt import backend

    updated = {}
    for function in ("scatter_sub_rows", "scatter_assign_rows"):  # SparseAdam's tables: assign
        def spy(variable, indices, rows, _original=getattr(backend, function)):
            updated[variable.name.split(":")[0]] = tuple(variable.shape)
            return _original(variable, indices, rows)

        monkeypatch.setattr(backend, function, spy)
    model, x, y = _candidate_generator_and_data()
    model.build()
    watch_before = keras.ops.convert_to_numpy(model.watch_embedding.embeddings).copy()
    tower_before = keras.ops.convert_to_numpy(model.tower[0].kernel).copy()
    model.fit(x, y, batch_size=24, epochs=1, verbose=0)

    # The watch-history and search-token tables and the head's W and b got row-sparse gradients
    # and went through the row-wise update; the dense tower did not (but was trained).
    trainable = {v.path for v in model.trainable_variables}
    assert {k: v for k, v in updated.items() if k in trainable} == _big_tables(model)
    assert np.any(keras.ops.convert_to_numpy(model.tower[0].kernel) != tower_before)
    watch_after = keras.ops.convert_to_numpy(model.watch_embedding.embeddings)
    changed = np.flatnonzero(np.any(watch_after != watch_before, axis=1))
    watched = np.setdiff1d(np.unique(x["watch_history"]), [0])
    # Only watched rows move (a watched row may keep a zero gradient behind dead ReLUs).
    assert set(changed) <= set(watched) and len(changed) >= 0.8 * len(watched)


def _shapes_in_graph(graph, seen):
    """(op type, op name, static shape) of every op output, nested functions included."""
    for op in graph.get_operations():
        for output in op.outputs:
            yield op.type, op.name, output.shape
        for attr in ("f", "then_branch", "else_branch", "body", "cond"):
            try:
                name = op.get_attr(attr).name
            except (ValueError, AttributeError):
                continue
            function = graph._get_function(name)
            if name not in seen and function is not None:
                seen.add(name)
                yield from _shapes_in_graph(function.graph, seen)


@pytest.mark.tf_only
def test_candidate_generator_train_step_builds_no_table_sized_tensor():
    from keras_yt import backend

    model, x, y = _candidate_generator_and_data()
    model.fit(x, y, batch_size=24, epochs=1, verbose=0)  # builds the optimizer
    step = tf.function(lambda x, y: model.train_step((x, y)))
    graph = step.get_concrete_function(backend.strings_to_tensors(x), tf.constant(y)).graph
    table_sized = [
        (op_type, name, shape)
        for op_type, name, shape in _shapes_in_graph(graph, set())
        if shape.rank and shape[0] in (NUM_VIDEOS, SEARCH_BINS)
    ]
    # No full read of a table (ReadVariableOp), no densified gradient, no O(num_videos) sampler.
    assert table_sized == []


@pytest.mark.tf_only
@pytest.mark.parametrize("optimizer, slots", [(None, 2), ("adagrad", 1)])
def test_candidate_generator_fit_never_reads_a_row_wise_updated_variable_whole(optimizer, slots):
    # After Grappler's rewrites (what actually runs): a variable updated with scatters is in
    # TensorFlow's copy-on-read mode, where each full read (ReadVariableOp) copies the table.
    # Default optimizer (SparseAdam): 2 moment slots per table; SparseAdagrad: 1 accumulator.
    from tensorflow.python.eager import context

    model, x, y = _candidate_generator_and_data(
        SparseAdagrad(0.2) if optimizer == "adagrad" else None
    )
    context.enable_run_metadata()  # records the graphs of the functions instantiated from now on
    try:
        model.fit(x, y, batch_size=24, epochs=2, verbose=0)
        metadata = context.export_run_metadata()
    finally:
        context.disable_run_metadata()
    scattered, read_whole = set(), set()
    for i, function in enumerate(metadata.function_graphs):
        for node in function.post_optimization_graph.node:
            if node.op.startswith("ResourceScatter"):
                scattered.add((i, node.input[0]))
            elif node.op == "ReadVariableOp":
                read_whole.add((i, node.input[0]))
    assert len(scattered) == 4 * (1 + slots)  # 4 tables and their optimizer slots
    assert read_whole  # the tower's variables are read whole
    assert scattered.isdisjoint(read_whole)


@pytest.mark.tf_only
@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"global_clipnorm": 0.7},
                                  {"clipvalue": 0.2}])
def test_clipping_stays_row_wise_and_equals_clipping_the_dense_gradient(monkeypatch, clip):
    from keras_yt import backend

    rows_updated = []
    scatter_sub_rows = backend.scatter_sub_rows

    def spy(variable, indices, rows):
        rows_updated.append(tuple(variable.shape))
        return scatter_sub_rows(variable, indices, rows)

    monkeypatch.setattr(backend, "scatter_sub_rows", spy)
    rng = np.random.default_rng(1)
    table, dense_var = rng.normal(size=(40, 3)).astype("float32"), np.ones((3,), "float32")
    indices = np.array([2, 9, 2, 31, 9], "int32")  # repeated rows: clip their sum
    values = rng.normal(size=(5, 3)).astype("float32")
    sparse = tf.IndexedSlices(values, indices, dense_shape=(40, 3))
    other = np.array([0.4, -2.0, 0.3], "float32")

    ours = SparseAdagrad(0.3, **clip)
    reference = keras.optimizers.Adagrad(0.3, initial_accumulator_value=0.1, **clip)
    ours_vars = [keras.Variable(table), keras.Variable(dense_var)]
    ref_vars = [keras.Variable(table), keras.Variable(dense_var)]
    ours.apply([sparse, other], ours_vars)
    reference.apply([tf.convert_to_tensor(sparse), other], ref_vars)
    for a, b in zip(ours_vars, ref_vars):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                   rtol=1e-5, atol=1e-6)
    assert rows_updated == [(40, 3)]
