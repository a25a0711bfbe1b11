"""HistoryEncoder against a numpy reference of causal self-attention; causality, padding."""

import keras
import numpy as np
import pytest

from keras_yt.layers import EmbeddingBag, HistoryEncoder
from tests.gradients import gradients
from tests.testing import assert_config_round_trip, assert_saved_model_reproduces

NUM_VIDEOS, DIM, LENGTH = 30, 8, 7


def numpy(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


def layer_norm(x, norm):
    gamma, beta = numpy(norm.gamma), numpy(norm.beta)
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.epsilon) * gamma + beta


def reference(encoder, ids):
    """Pure numpy, one user at a time: only the real watches, oldest -> newest, are kept."""
    table = numpy(encoder.embeddings)
    positions = numpy(encoder.position_embeddings)
    d = encoder.embedding_dim
    heads = encoder.num_heads
    sequences, last = [], []
    for row in np.asarray(ids):
        real_cols = [c for c, v in enumerate(row) if 0 < v < encoder.num_videos]
        n = len(real_cols)
        x = np.stack([table[row[c]] * np.sqrt(d) + positions[min(n - 1 - i, encoder.max_length
                                                                   - 1)]
                      for i, c in enumerate(real_cols)]) if n else np.zeros((0, d))
        for i in range(encoder.num_blocks if n else 0):
            att = encoder.attentions[i]
            wq, bq = numpy(att._query_dense.kernel), numpy(att._query_dense.bias)
            wk, bk = numpy(att._key_dense.kernel), numpy(att._key_dense.bias)
            wv, bv = numpy(att._value_dense.kernel), numpy(att._value_dense.bias)
            wo, bo = numpy(att._output_dense.kernel), numpy(att._output_dense.bias)
            h = layer_norm(x, encoder.attention_norms[i])
            out = np.zeros_like(x)
            for head in range(heads):
                q = h @ wq[:, head] + bq[head]
                k = h @ wk[:, head] + bk[head]
                v = h @ wv[:, head] + bv[head]
                logits = q @ k.T / np.sqrt(q.shape[-1])
                logits[np.triu_indices(n, 1)] = -np.inf  # a query sees keys at or before it
                weights = np.exp(logits - logits.max(-1, keepdims=True))
                weights /= weights.sum(-1, keepdims=True)
                out += (weights @ v) @ wo[head]
            x = x + out + bo
            h = layer_norm(x, encoder.feed_forward_norms[i])
            ff_in, ff_out = encoder.feed_forward_ins[i], encoder.feed_forward_outs[i]
            h = np.maximum(h @ numpy(ff_in.kernel) + numpy(ff_in.bias), 0.0)
            x = x + h @ numpy(ff_out.kernel) + numpy(ff_out.bias)
        x = layer_norm(x, encoder.final_norm) if n else x
        full = np.zeros((len(row), d))
        full[real_cols] = x
        sequences.append(full)
        last.append(x[-1] if n else np.zeros(d))
    return np.stack(sequences), np.stack(last)


def random_ids(rng, batch=6, length=LENGTH, layout="left"):
    ids = np.zeros((batch, length), np.int64)
    for r in range(batch):
        n = rng.integers(0, length + 1)
        values = rng.integers(1, NUM_VIDEOS, size=n)
        if layout == "left":
            ids[r, length - n:] = values
        elif layout == "right":
            ids[r, :n] = values
        else:  # padding anywhere
            cols = np.sort(rng.choice(length, size=n, replace=False))
            ids[r, cols] = values
    return ids


def make_encoder(**kwargs):
    args = {"num_videos": NUM_VIDEOS, "embedding_dim": DIM, "max_length": LENGTH, "seed": 1}
    encoder = HistoryEncoder(**{**args, **kwargs})
    encoder.build((None, LENGTH))
    rng = np.random.default_rng(3)
    for w in encoder.weights:  # non-trivial LayerNorm / bias values too
        w.assign(rng.normal(scale=0.3, size=w.shape).astype("float32"))
    return encoder


@pytest.mark.parametrize("num_blocks,num_heads,layout", [(2, 1, "left"), (1, 2, "anywhere"),
                                                         (3, 4, "right"), (0, 1, "left")])
def test_matches_numpy_reference(num_blocks, num_heads, layout):
    encoder = make_encoder(num_blocks=num_blocks, num_heads=num_heads)
    ids = random_ids(np.random.default_rng(num_blocks), layout=layout)
    ids[0] = 0  # an empty history
    ids[1, -1] = NUM_VIDEOS + 3  # out of range: padding
    seq_ref, last_ref = reference(encoder, ids)
    np.testing.assert_allclose(numpy(encoder(ids)), seq_ref, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(numpy(encoder(ids, return_sequences=False)), last_ref, atol=2e-4,
                               rtol=1e-4)


def test_causal_a_later_watch_never_changes_an_earlier_state():
    encoder = make_encoder(num_blocks=2, num_heads=2)
    rng = np.random.default_rng(5)
    ids = rng.integers(1, NUM_VIDEOS, size=(8, LENGTH))
    ids[:, :2] = 0
    base = numpy(encoder(ids))
    for t in range(2, LENGTH):
        changed = ids.copy()
        changed[:, t] = (changed[:, t] % (NUM_VIDEOS - 1)) + 1  # another real video
        out = numpy(encoder(changed))
        np.testing.assert_allclose(out[:, :t], base[:, :t], atol=1e-5)
        assert np.abs(out[:, t:] - base[:, t:]).max() > 1e-3


def test_padding_anywhere_gives_the_same_states():
    encoder = make_encoder()
    rng = np.random.default_rng(8)
    left = random_ids(rng, batch=20, layout="left")
    right, anywhere = np.zeros_like(left), np.zeros_like(left)
    for r, row in enumerate(left):
        real = row[row > 0]
        right[r, : len(real)] = real
        cols = np.sort(rng.choice(LENGTH, size=len(real), replace=False))
        anywhere[r, cols] = real
    outs = [numpy(encoder(x, return_sequences=False)) for x in (left, right, anywhere)]
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)
    np.testing.assert_allclose(outs[2], outs[0], atol=1e-5)
    seq_left, seq_any = numpy(encoder(left)), numpy(encoder(anywhere))
    for r in range(len(left)):
        np.testing.assert_allclose(seq_any[r][anywhere[r] > 0], seq_left[r][left[r] > 0],
                                   atol=1e-5)
        np.testing.assert_array_equal(seq_any[r][anywhere[r] == 0], 0.0)
    # A shorter window holding the same watches gives the same user state.
    short = left[:, -4:]
    full = left.copy()
    full[:, :-4] = 0
    np.testing.assert_allclose(numpy(encoder(short, return_sequences=False)),
                               numpy(encoder(full, return_sequences=False)), atol=1e-5)


def test_shared_embeddings_and_gradients():
    bag = EmbeddingBag(NUM_VIDEOS, DIM)
    encoder = HistoryEncoder(NUM_VIDEOS, DIM, max_length=LENGTH, num_blocks=1)
    encoder.share_embeddings(bag)
    ids = np.array([[0, 0, 3, 4, 5, 6, 7]])
    encoder(ids)
    assert encoder.embeddings is bag.embeddings
    assert all(w is not bag.embeddings for w in encoder.weights)  # saved by its owner
    grads = gradients(lambda: keras.ops.sum(keras.ops.square(encoder(ids))), [bag.embeddings])
    touched = np.flatnonzero(np.abs(grads[0]).sum(1))
    assert set(touched.tolist()) == {3, 4, 5, 6, 7}
    with pytest.raises(ValueError, match="embedding_layer"):
        HistoryEncoder(NUM_VIDEOS, DIM + 1).share_embeddings(bag)
    with pytest.raises(RuntimeError, match="before"):
        encoder.share_embeddings(bag)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="num_heads"):
        HistoryEncoder(10, embedding_dim=6, num_heads=4)
    with pytest.raises(ValueError, match="dropout"):
        HistoryEncoder(10, dropout=1.5)
    with pytest.raises(ValueError, match="max_length"):
        HistoryEncoder(10, max_length=0)
    encoder = HistoryEncoder(10, embedding_dim=4, max_length=3)
    with pytest.raises(ValueError, match="max_length=3"):
        encoder(np.ones((2, 4), "int32"))
    with pytest.raises(ValueError, match=r"\(batch, L\)"):
        encoder(np.ones((2,), "int32"))


def test_mixed_precision_close_to_float32():
    ids = random_ids(np.random.default_rng(0), batch=4)
    encoder = make_encoder()
    mixed = HistoryEncoder.from_config({**encoder.get_config(), "dtype": "mixed_float16"})
    mixed.build((None, LENGTH))
    for w_mixed, w in zip(mixed.weights, encoder.weights):
        w_mixed.assign(w)
    out = mixed(ids, return_sequences=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(numpy(out), numpy(encoder(ids, return_sequences=False)),
                               atol=0.05, rtol=0.05)


def test_config_and_saving(tmp_path):
    encoder = make_encoder(num_blocks=2, num_heads=2, feed_forward_dim=16, dropout=0.1)
    assert_config_round_trip(encoder)
    inputs = keras.Input((LENGTH,), dtype="int32")
    model = keras.Model(inputs, [encoder(inputs), encoder(inputs, return_sequences=False)])
    ids = random_ids(np.random.default_rng(2), batch=5)
    assert_saved_model_reproduces(model, ids, tmp_path, atol=1e-5)


def test_dropout_only_in_training():
    encoder = make_encoder(dropout=0.5)
    ids = random_ids(np.random.default_rng(4), batch=4)
    np.testing.assert_allclose(numpy(encoder(ids)), numpy(encoder(ids)))
    assert np.abs(numpy(encoder(ids, training=True)) - numpy(encoder(ids))).max() > 1e-3
