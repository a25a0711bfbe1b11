"""`keras_yt.backend.jax`: row updates and gradients taken with respect to the rows read."""

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="needs KERAS_BACKEND=jax"
)


def test_scatter_sub_rows_adds_up_repeated_rows():
    from keras_yt.backend import jax as yt_jax

    variable = keras.Variable(np.zeros((5, 2), "float32"))
    yt_jax.scatter_sub_rows(variable, np.array([1, 3, 1]), np.ones((3, 2), "float32"))
    yt_jax.scatter_assign_rows(variable, np.array([4]), np.full((1, 2), 7.0, "float32"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(variable), [[0, 0], [-2, -2], [0, 0], [-1, -1], [7, 7]]
    )


def test_captured_row_gradients_scatter_to_the_dense_gradient():
    """Gradients w.r.t. the rows read (`capture_rows`), summed into their rows, equal `jax.grad`
    w.r.t. the whole tables, for a bag + sampled softmax with shared negatives."""
    import jax
    import jax.numpy as jnp

    from keras_yt.backend import jax as yt_jax
    from keras_yt.layers import EmbeddingBag, SampledSoftmax

    bag = EmbeddingBag(50, 4, embeddings_initializer=keras.initializers.RandomNormal(seed=1))
    head = SampledSoftmax(50, num_sampled=7, seed=3)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(6, 5))
    labels = rng.integers(1, 50, size=6)
    bag(ids)
    head.build((None, 4))
    negatives = head.sample_negatives()
    tables = [bag.embeddings, head.output_embeddings, head.output_biases]

    def forward():
        return jnp.sum(head.sampled_loss(bag(ids), labels, sampled_ids=negatives))

    def loss(values, deltas=None):
        with keras.StatelessScope(state_mapping=list(zip(tables, values))):
            with yt_jax.capture_rows(tables, deltas) as capture:
                total = forward()
        return total, [(next(k for k, t in enumerate(tables) if t is v), i)
                       for v, i in capture.lookups]

    def plain_loss(values):
        with keras.StatelessScope(state_mapping=list(zip(tables, values))):
            return forward()

    values = [t.value for t in tables]
    dense = jax.grad(plain_loss)(values)
    assert np.any(np.asarray(dense[0]) != 0)
    # Same loss with the rows' deltas; lookups recorded by a first, shape-only pass.
    _, lookups = loss(values)
    deltas = [jnp.zeros((len(i), *tables[k].shape[1:])) for k, i in lookups]
    row_grads = jax.grad(lambda d: loss(values, d)[0])(deltas)
    for k, table in enumerate(tables):
        scattered = jnp.zeros(table.shape)
        for (t, i), g in zip(lookups, row_grads):
            if t == k:
                scattered = scattered.at[i].add(g)
        np.testing.assert_allclose(scattered, dense[k], rtol=1e-5, atol=1e-6)
    assert [k for k, _ in lookups].count(1) == 2  # W: labels and negatives


def test_row_sparse_adagrad_steps_equal_fit_with_sparse_adagrad():
    """`RowSparseAdagrad` (row-wise updates of the tables) trains a `CandidateGenerator` exactly
    like `model.fit` with `SparseAdagrad` (dense gradients on JAX), same sampled negatives."""
    from keras import ops

    from keras_yt.backend.jax import RowSparseAdagrad
    from keras_yt.models import CandidateGenerator
    from keras_yt.optimizers import SparseAdagrad

    def make():
        model = CandidateGenerator(num_videos=300, video_embedding_dim=8, max_history=6,
                                   hidden_units=(16, 8), num_sampled=20, seed=4)
        model.build()
        return model

    keras.utils.set_random_seed(0)
    fitted, stepped = make(), make()
    stepped.set_weights(fitted.get_weights())
    rng = np.random.default_rng(0)
    x = {"watch_history": rng.integers(0, 300, size=(32, 6)).astype("int32"),
         "example_age": rng.uniform(0, 30, size=32).astype("float32")}
    y = rng.integers(1, 300, size=32).astype("int32")

    fitted.compile(optimizer=SparseAdagrad(0.2))
    fitted.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)

    tables = [stepped.watch_embedding.embeddings, stepped.softmax.output_embeddings,
              stepped.softmax.output_biases]

    def loss_fn(model, x, y):
        return ops.mean(model.softmax(model(x, training=True), labels=y, training=True))

    initial = ops.convert_to_numpy(stepped.softmax.output_embeddings).copy()
    trainer = RowSparseAdagrad(stepped, tables, loss_fn, learning_rate=0.2)
    state = trainer.initial_state()
    for _ in range(3):
        _, state = trainer.step(state, x, y)
    trainer.write_back(state)
    for a, b in zip(fitted.trainable_variables, stepped.trainable_variables):
        np.testing.assert_allclose(
            ops.convert_to_numpy(b), ops.convert_to_numpy(a), rtol=1e-4, atol=1e-5,
            err_msg=a.path,
        )
    moved = np.any(ops.convert_to_numpy(stepped.softmax.output_embeddings) != initial, axis=1)
    assert set(y.tolist()) <= set(np.flatnonzero(moved).tolist())


# --- table_initializer: large tables drawn a block of rows at a time -----------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    """Tables of 1,000 elements and more drawn by blocks of 1,000 values (62 rows of 16)."""
    from keras_yt.backend import jax as yt_jax

    monkeypatch.setattr(yt_jax, "ROW_BLOCK_INIT_MIN_SIZE", 1000)
    monkeypatch.setattr(yt_jax, "_ROW_BLOCK_ELEMENTS", 1000)
    return yt_jax


def _reference(name_or_initializer, shape):
    """The distribution a Keras initializer draws from, written out with scipy and numpy."""
    from scipy import stats

    fan_in, fan_out = shape
    init = keras.initializers.get(name_or_initializer)
    if isinstance(init, keras.initializers.RandomUniform):
        return stats.uniform(init.minval, init.maxval - init.minval)
    if isinstance(init, keras.initializers.RandomNormal):
        return stats.norm(init.mean, init.stddev)
    if isinstance(init, keras.initializers.TruncatedNormal):
        return stats.truncnorm(-2, 2, loc=init.mean, scale=init.stddev)
    limit = np.sqrt(6 / (fan_in + fan_out))  # glorot_uniform
    if name_or_initializer == "he_normal":  # truncated at 2 of its own stddev
        return stats.truncnorm(-2, 2, scale=np.sqrt(2 / fan_in) / 0.87962566103423978)
    if name_or_initializer == "lecun_uniform":
        limit = np.sqrt(3 / fan_in)
    return stats.uniform(-limit, 2 * limit)


@pytest.mark.parametrize("initializer", [
    keras.initializers.RandomUniform(-0.05, 0.05, seed=1),
    keras.initializers.RandomNormal(0.1, 0.02, seed=2),
    keras.initializers.TruncatedNormal(0.0, 0.3, seed=3),
    "glorot_uniform", "he_normal", "lecun_uniform",
], ids=lambda i: i if isinstance(i, str) else type(i).__name__)
def test_table_initializer_draws_by_blocks_from_the_initializers_distribution(
        small_blocks, initializer):
    from scipy import stats

    shape = (3000, 16)  # 48 blocks of 62 rows, the last one overlapping
    table = np.asarray(small_blocks.table_initializer(initializer)(shape, "float32"))
    assert table.shape == shape and table.dtype == np.float32
    # Every block drawn with its own key: no row repeats another.
    assert len(np.unique(table, axis=0)) == shape[0]
    reference = _reference(initializer, shape)
    assert stats.kstest(table.ravel(), reference.cdf).pvalue > 1e-3
    keras_own = np.asarray(keras.initializers.get(initializer)(shape, "float32"))
    assert stats.kstest(keras_own.ravel(), reference.cdf).pvalue > 1e-3  # the reference holds


def test_table_initializer_is_seeded_and_keras_own_below_the_size(small_blocks):
    def draw(seed, shape=(3000, 16)):
        init = keras.initializers.RandomUniform(seed=seed)
        return np.asarray(small_blocks.table_initializer(init)(shape))

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))
    # Below ROW_BLOCK_INIT_MIN_SIZE: Keras' own draw, unchanged.
    np.testing.assert_array_equal(
        draw(7, (10, 16)), keras.initializers.RandomUniform(seed=7)((10, 16)))
    # A seed generator advances: two tables differ.
    generator = keras.initializers.RandomUniform(seed=keras.random.SeedGenerator(3))
    draw_generated = small_blocks.table_initializer(generator)
    first, second = draw_generated((3000, 16)), draw_generated((3000, 16))
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    # Under a keras.distribution (tables may be sharded): Keras' own draw.
    with keras.distribution.DataParallel().scope():
        np.testing.assert_array_equal(
            draw(7), keras.initializers.RandomUniform(seed=7)((3000, 16)))
    # Initializers without a known distribution are Keras' own, whatever the size.
    orthogonal = keras.initializers.Orthogonal(seed=1)
    assert small_blocks.table_initializer(orthogonal) is orthogonal


def test_large_tables_of_the_layers_are_drawn_by_blocks(small_blocks, monkeypatch):
    from keras_yt.layers import EmbeddingBag, HistoryEncoder, SampledSoftmax

    drawn = []
    fill = small_blocks._fill_by_blocks
    monkeypatch.setattr(small_blocks, "_fill_by_blocks",
                        lambda key, shape, *a: drawn.append(shape) or fill(key, shape, *a))
    bag = EmbeddingBag(500, 8, embeddings_initializer=keras.initializers.RandomUniform(seed=4))
    bag.build(None)
    expected = small_blocks.table_initializer(keras.initializers.RandomUniform(seed=4))((500, 8))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bag.embeddings), expected)
    SampledSoftmax(num_classes=300, num_sampled=10).build((None, 8))
    HistoryEncoder(num_videos=200, embedding_dim=8, max_length=5).build(None)
    assert drawn == [(500, 8), (500, 8), (300, 8), (200, 8)]
