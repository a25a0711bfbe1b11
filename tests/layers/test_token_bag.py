import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_yt.layers import TokenBag
from tests.testing import assert_saved_model_reproduces, run_layer_test

NUM_BINS, OUTPUT_DIM = 50, 6


def python_tokens(row, ngrams=(1, 2), max_tokens=None):
    """Independent tokenizer: per query lower() + split(), n-grams within the query, in order."""
    queries = [row] if isinstance(row, str) else list(row)
    tokens = []
    for query in queries:
        words = query.lower().split()
        for n in ngrams:
            tokens += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    return tokens if max_tokens is None else tokens[:max_tokens]


def reference_ids(tokens, num_bins=NUM_BINS, salt=None):
    if not tokens:
        return np.zeros(0, dtype="int64")
    t = tf.constant(tokens)
    if salt is None:
        buckets = tf.strings.to_hash_bucket_fast(t, num_bins - 1)
    else:
        buckets = tf.strings.to_hash_bucket_strong(t, num_bins - 1, key=salt)
    return buckets.numpy() + 1


def reference_bag(table, queries, ngrams=(1, 2), max_tokens=None, salt=None):
    out = np.zeros((len(queries), table.shape[1]))
    for r, row in enumerate(queries):
        ids = reference_ids(python_tokens(row, ngrams, max_tokens), table.shape[0], salt)
        if len(ids):
            out[r] = table[ids].mean(axis=0)
    return out


QUERIES = np.array(
    [
        "Funny Cats",
        "  how   to\tcook pasta ",
        "",
        "single",
        "Café CRÈME brûlée",
        "cats funny",
    ]
)

MULTI = np.array(
    [
        ["funny cats", "cat videos", ""],
        ["", "", ""],
        ["piano lesson beginner", "", "Piano"],
    ]
)


def make_layer(**kwargs):
    kwargs.setdefault("embeddings_initializer", keras.initializers.RandomNormal(seed=0))
    return TokenBag(NUM_BINS, OUTPUT_DIM, **kwargs)


def test_single_queries_match_python_reference():
    layer = make_layer()
    out = keras.ops.convert_to_numpy(layer(QUERIES))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_allclose(out, reference_bag(table, QUERIES), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)
    # Bigrams make word order matter: "funny cats" and "cats funny" share only the unigrams.
    assert not np.allclose(out[0], out[5])


def test_token_ids_match_reference_hashing():
    layer = make_layer()
    ids = keras.ops.convert_to_numpy(layer.token_ids(MULTI))
    for r, row in enumerate(MULTI):
        expected = reference_ids(python_tokens(row))
        np.testing.assert_array_equal(ids[r][: len(expected)], expected)
        np.testing.assert_array_equal(ids[r][len(expected) :], 0)
    assert ids.min() >= 0 and ids.max() < NUM_BINS
    assert (ids[ids > 0] >= 1).all()


def test_bigrams_stay_within_a_query():
    layer = make_layer()
    ids = keras.ops.convert_to_numpy(layer.token_ids(MULTI[:1]))[0]
    # Joining the queries would add the bigram "cats cat" (7 tokens instead of 6).
    within = ["funny", "cats", "funny cats", "cat", "videos", "cat videos"]
    np.testing.assert_array_equal(np.sort(ids[ids > 0]), np.sort(reference_ids(within)))


def test_multiple_queries_match_python_reference():
    layer = make_layer()
    out = keras.ops.convert_to_numpy(layer(MULTI))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_allclose(out, reference_bag(table, MULTI), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ngrams": (1,)},
        {"ngrams": 3},
        {"ngrams": (2,)},
        {"max_tokens": 4},
        {"salt": 1234},
        {"salt": [7, 11], "ngrams": [1, 3]},
    ],
)
def test_options_match_python_reference(kwargs):
    layer = make_layer(**kwargs)
    out = keras.ops.convert_to_numpy(layer(MULTI))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    ngrams = layer.ngrams
    salt = layer.salt
    expected = reference_bag(table, MULTI, ngrams, kwargs.get("max_tokens"), salt)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    if "max_tokens" in kwargs:
        assert keras.ops.convert_to_numpy(layer.token_ids(MULTI)).shape == (3, 4)


def test_sum_combiner():
    layer = make_layer(combiner="sum")
    out = keras.ops.convert_to_numpy(layer(np.array(["a b"])))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    expected = table[reference_ids(["a", "b", "a b"])].sum(axis=0)
    np.testing.assert_allclose(out[0], expected, rtol=1e-5)


def test_symbolic_call_fit_and_save(tmp_path):
    bag = make_layer()
    on_tf = keras.backend.backend() == "tensorflow"
    # On TensorFlow the model takes strings; elsewhere the token ids of `token_ids`.
    shape, dtype = TokenBag.query_feature_spec(3)
    inputs = keras.Input(shape=shape, dtype=dtype)
    assert tuple(bag(inputs).shape) == (None, OUTPUT_DIM)
    model = keras.Model(inputs, keras.layers.Dense(1)(bag(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    before = keras.ops.convert_to_numpy(bag.embeddings).copy()
    # Keras' data adapters reject numpy string arrays in fit.
    x = tf.constant(MULTI) if on_tf else keras.ops.convert_to_numpy(bag.token_ids(MULTI))
    history = model.fit(x, np.ones((3, 1)), batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = np.flatnonzero(
        np.abs(keras.ops.convert_to_numpy(bag.embeddings) - before).sum(axis=1) > 0
    )
    expected_rows = np.unique(np.concatenate([reference_ids(python_tokens(r)) for r in MULTI]))
    np.testing.assert_array_equal(changed, expected_rows)
    assert_saved_model_reproduces(model, x, tmp_path)


def test_strings_and_token_ids_give_the_same_bag():
    bag = make_layer(max_tokens=6)
    ids = keras.ops.convert_to_numpy(bag.token_ids(MULTI))
    assert ids.shape == (3, 6)
    for row, query in zip(ids, MULTI):
        want = reference_ids(python_tokens(query, max_tokens=6))
        np.testing.assert_array_equal(row[: len(want)], want)
        assert np.all(row[len(want) :] == 0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bag(MULTI)), keras.ops.convert_to_numpy(bag(ids)), rtol=1e-6
    )


def test_token_ids_in_a_tf_data_pipeline_feed_fit():
    """On any backend: tokenise in `tf.data` (`dataset.map(token_ids)`), fit on the ids."""
    bag = make_layer(max_tokens=8)
    inputs = keras.Input(shape=(8,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(1)(bag(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    queries = tf.data.Dataset.from_tensor_slices(MULTI).batch(3)
    ids = queries.map(bag.token_ids)
    batch = next(iter(ids))
    assert isinstance(batch, tf.Tensor)
    np.testing.assert_array_equal(batch.numpy(), keras.ops.convert_to_numpy(bag.token_ids(MULTI)))
    before = keras.ops.convert_to_numpy(bag.embeddings).copy()
    dataset = tf.data.Dataset.zip(ids, tf.data.Dataset.from_tensor_slices(np.ones((3, 1))).batch(3))
    model.fit(dataset, epochs=1, verbose=0)
    changed = np.flatnonzero(
        np.abs(keras.ops.convert_to_numpy(bag.embeddings) - before).sum(axis=1) > 0
    )
    expected = np.unique(
        np.concatenate([reference_ids(python_tokens(r, max_tokens=8)) for r in MULTI])
    )
    np.testing.assert_array_equal(changed, expected)


@pytest.mark.tf_only
def test_one_query_per_row_symbolic():
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, make_layer()(inputs))
    assert tuple(model.output.shape) == (None, OUTPUT_DIM)
    pred = model.predict(QUERIES.astype(object), verbose=0)
    assert pred.shape == (len(QUERIES), OUTPUT_DIM)
    np.testing.assert_allclose(pred, keras.ops.convert_to_numpy(model.layers[-1](QUERIES)))


def test_run_layer_test():
    init = {"num_bins": 100, "output_dim": 8, "ngrams": [1, 2, 3], "max_tokens": 32,
            "combiner": "sqrtn", "salt": 5, "name": "search"}
    ids = keras.ops.convert_to_numpy(TokenBag(**init).token_ids(MULTI))
    run_layer_test(TokenBag, init, ids, (3, 8), expected_num_trainable_weights=1,
                   expected_num_non_trainable_weights=0)
    if keras.backend.backend() == "tensorflow":  # strings in (fit's data adapters take none)
        run_layer_test(TokenBag, init, np.array(MULTI), (3, 8), run_training_check=False)


def test_config_holds_lists():
    layer = TokenBag(
        100, 8, ngrams=[1, 2, 3], max_tokens=32, combiner="sqrtn", salt=5, name="search"
    )
    config = layer.get_config()
    assert config["ngrams"] == [1, 2, 3] and config["salt"] == [5, 5]
    assert config["max_tokens"] == 32 and config["num_bins"] == 100


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_bins": 1}, r"num_bins must be an integer >= 2 \(bin 0 is padding\), got 1"),
        ({"output_dim": 0}, r"output_dim must be a positive integer, got 0"),
        ({"ngrams": ()}, r"ngrams must be .*got \(\)"),
        ({"ngrams": (1, 0)}, r"ngrams must be .*got \(1, 0\)"),
        ({"ngrams": (2, 2)}, r"ngrams must be .*distinct.*got \(2, 2\)"),
        ({"max_tokens": 0}, r"max_tokens must be None or a positive integer, got 0"),
        ({"combiner": "max"}, r"combiner must be one of .*got 'max'"),
        ({"salt": "abc"}, r"salt must be None, an integer or a pair of integers, got 'abc'"),
    ],
)
def test_bad_kwargs(kwargs, match):
    args = {"num_bins": 10, "output_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        TokenBag(**args)


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r"shape \(batch,\) or \(batch, num_queries\)"):
        make_layer()(keras.Input(shape=(2, 3), dtype="string"))
