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
