"""Tests for `keras_yt.layers.SampledSoftmax` against numpy and `tf.nn.sampled_softmax_loss`."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_yt.layers import SampledSoftmax
from tests.gradients import gradients
from tests.testing import assert_saved_model_reproduces, run_layer_test

N, D, B = 60, 8, 5


def _np_logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))).squeeze(axis)


def _built_head(num_classes=N, d=D, seed=0, **kwargs):
    """A built head with random W and b (so scores are not all tiny)."""
    kwargs.setdefault("num_sampled", 10)
    head = SampledSoftmax(num_classes, seed=seed, **kwargs)
    head.build((None, d))
    rng = np.random.default_rng(seed)
    head.output_embeddings.assign(rng.normal(0, 0.5, (num_classes, d)).astype("float32"))
    if head.output_biases is not None:
        head.output_biases.assign(rng.normal(0, 0.5, (num_classes,)).astype("float32"))
    return head


def _data(seed=1, batch=B, d=D, num_classes=N):
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 1, (batch, d)).astype("float32")
    labels = rng.integers(1, num_classes, (batch,)).astype("int32")
    return u, labels


def _np_full_loss(u, w, b, labels):
    """Cross-entropy of the softmax over classes 1..N-1 (class 0 reserved), per example."""
    logits = (u @ w.T + b)[:, 1:]
    return _np_logsumexp(logits, 1) - logits[np.arange(len(labels)), labels - 1]


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ({"num_classes": 10.0}, "num_classes must be an integer >= 2, got 10.0"),
        (
            {"num_classes": 1000, "num_sampled": 4096},
            r"num_sampled must be in \[1, num_classes\) = \[1, 1000\) or None \(full softmax\), "
            r"got 4096",
        ),
        ({"num_classes": 1000, "num_sampled": 0}, r"num_sampled must be in .* got 0"),
        ({"num_classes": 10, "num_sampled": 5, "sampler": "zipf"}, "sampler must be one of"),
        (
            {"num_classes": 10, "num_sampled": 5, "sampler": "unigram"},
            "class_counts is required with sampler='unigram'",
        ),
        (
            {"num_classes": 10, "num_sampled": 5, "sampler": "unigram", "class_counts": [1] * 9},
            r"class_counts must have shape \(num_classes,\) = \(10,\), got shape \(9,\)",
        ),
        (
            {"num_classes": 3, "num_sampled": 1, "sampler": "unigram", "class_counts": [1, -1, 2]},
            "class_counts must be finite and non-negative",
        ),
        (
            {"num_classes": 3, "num_sampled": 1, "sampler": "unigram", "class_counts": [5, 0, 0]},
            "positive count for at least one class",
        ),
        ({"num_classes": 10, "num_sampled": 5, "seed": "x"}, "seed must be an integer or None"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SampledSoftmax(**kwargs)


def test_in_batch_ignores_num_sampled_range():
    head = SampledSoftmax(100, sampler="in_batch")  # default num_sampled=4096 is not used
    assert head.sampler == "in_batch"


# ----------------------------------------------------------------------------- scores


@pytest.mark.parametrize("use_bias", [True, False])
def test_logits_and_full_loss_match_numpy(use_bias):
    head = _built_head(use_bias=use_bias)
    u, labels = _data()
    w, b = head.get_output_embeddings()
    if not use_bias:
        np.testing.assert_array_equal(b, np.zeros(N, "float32"))
        assert head.output_biases is None
    np.testing.assert_allclose(head.logits(u), u @ w.T + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head(u), u @ w.T + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head(u, labels), u @ w.T + b, rtol=1e-5, atol=1e-5)  # no training
    np.testing.assert_allclose(
        head.full_loss(u, labels), _np_full_loss(u, w, b, labels), rtol=1e-5, atol=1e-5
    )


def test_top_k_matches_numpy_argsort_with_exclusions():
    head = _built_head()
    u, _ = _data(batch=6)
    w, b = head.get_output_embeddings()
    # Make class 0 the best class for every row, so a top-k that forgot to mask it would fail.
    b = b.copy()
    b[0] = 100.0
    head.output_biases.assign(b)
    scores_np = u @ w.T + b
    scores_np[:, 0] = -np.inf
    exclude = np.zeros((6, 4), "int32")
    for row in range(6):
        best = np.argsort(-scores_np[row])[:3]
        exclude[row, :2] = best[[0, 2]]  # leave out the 1st and 3rd best; keep padding zeros
    exclude[5] = 0  # a row with only padding
    k = 7
    scores, ids = head.top_k(u, k, exclude=exclude)
    scores, ids = np.asarray(scores), np.asarray(ids)
    for row in range(6):
        masked = scores_np[row].copy()
        masked[exclude[row][exclude[row] > 0]] = -np.inf
        expected_ids = np.argsort(-masked, kind="stable")[:k]
        np.testing.assert_array_equal(ids[row], expected_ids)
        np.testing.assert_allclose(scores[row], masked[expected_ids], rtol=1e-5, atol=1e-5)
        assert not set(ids[row]) & set(exclude[row][exclude[row] > 0])
    assert not np.any(ids == 0)
    # Without exclusions: plain top-k of the masked scores.
    _, ids_all = head.top_k(u, k)
    np.testing.assert_array_equal(ids_all, np.argsort(-scores_np, axis=1, kind="stable")[:, :k])
    with pytest.raises(ValueError, match=r"k must be in \[1, num_classes\) = \[1, 60\), got 60"):
        head.top_k(u, N)


# ----------------------------------------------------------------------------- sampled loss


@pytest.mark.parametrize("use_bias", [True, False])
def test_sampled_loss_with_every_class_equals_full_softmax(use_bias):
    """(a) All non-padding classes as negatives, uniform Q: the loss is the full cross-entropy."""
    head = _built_head(sampler="uniform", use_bias=use_bias)
    u, labels = _data()
    w, b = head.get_output_embeddings()
    all_ids = np.arange(1, N, dtype="int32")  # includes each label: an accidental hit, removed
    loss = head.sampled_loss(u, labels, sampled_ids=all_ids)
    np.testing.assert_allclose(loss, _np_full_loss(u, w, b, labels), rtol=1e-5, atol=1e-5)


def _tf_candidates(sampler, labels, num_sampled, num_classes, counts=None, seed=3):
    """Negatives and expected counts from TF's own samplers, shifted by one to skip class 0."""
    true_classes = tf.constant(labels[:, None] - 1, tf.int64)
    common = dict(
        true_classes=true_classes,
        num_true=1,
        num_sampled=num_sampled,
        unique=False,
        range_max=num_classes - 1,
        seed=seed,
    )
    if sampler == "log_uniform":
        sampled, true_exp, sampled_exp = tf.random.log_uniform_candidate_sampler(**common)
    elif sampler == "uniform":
        sampled, true_exp, sampled_exp = tf.random.uniform_candidate_sampler(**common)
    else:
        sampled, true_exp, sampled_exp = tf.random.fixed_unigram_candidate_sampler(
            unigrams=list(counts[1:]), **common
        )
    return sampled.numpy() + 1, true_exp, sampled_exp


@pytest.mark.parametrize("sampler", ["log_uniform", "unigram", "uniform"])
@pytest.mark.parametrize("remove_accidental_hits", [True, False])
def test_sampled_loss_and_gradients_match_tf(sampler, remove_accidental_hits):
    """(b) Same sampled ids, same expected counts: loss and gradients equal TF's."""
    num_sampled = 40
    counts = np.random.default_rng(5).integers(0, 50, N).astype("float64")
    counts[1] += 1  # at least one positive count
    kwargs = {"class_counts": counts} if sampler == "unigram" else {}
    head = _built_head(
        sampler=sampler,
        num_sampled=num_sampled,
        remove_accidental_hits=remove_accidental_hits,
        **kwargs,
    )
    u, labels = _data(batch=8)
    if sampler == "unigram":
        labels = np.flatnonzero(counts[1:])[:8].astype("int32") + 1  # labels with Q > 0
    sampled, true_exp, sampled_exp = _tf_candidates(sampler, labels, num_sampled, N, counts)
    hits = labels[:, None] == sampled[None, :]
    assert hits.any(), "the draw should contain accidental hits for this test to bite"

    # Our expected counts are computed by the layer itself: they must agree with TF's samplers.
    np.testing.assert_allclose(head.expected_count(labels), true_exp.numpy()[:, 0], rtol=1e-5)
    np.testing.assert_allclose(head.expected_count(sampled), sampled_exp.numpy(), rtol=1e-5)

    # TF removes only one occurrence of a label drawn several times (its kernel assumes unique
    # samples); we remove all of them. Keep one occurrence of each label so both agree. Dropping
    # samples rescales our Q(j) = S * p(j) by a factor shared by every logit, which cancels.
    keep = np.ones(len(sampled), bool)
    for label in np.unique(labels):
        keep[np.flatnonzero(sampled == label)[1:]] = False
    sampled, sampled_exp = sampled[keep], tf.boolean_mask(sampled_exp, keep)

    w0, b0 = head.get_output_embeddings()
    u_var = keras.Variable(u)
    loss = keras.ops.convert_to_numpy(head.sampled_loss(u_var, labels, sampled_ids=sampled))
    g_u, g_w, g_b = gradients(
        lambda: keras.ops.sum(head.sampled_loss(u_var, labels, sampled_ids=sampled)),
        [u_var, head.output_embeddings, head.output_biases],
    )

    u_ref, w_ref, b_ref = tf.Variable(u), tf.Variable(w0), tf.Variable(b0)
    with tf.GradientTape() as tape:
        loss_ref = tf.nn.sampled_softmax_loss(
            weights=w_ref,
            biases=b_ref,
            labels=tf.constant(labels[:, None], tf.int64),
            inputs=u_ref,
            num_sampled=len(sampled),
            num_classes=N,
            sampled_values=(tf.constant(sampled, tf.int64), true_exp, sampled_exp),
            remove_accidental_hits=remove_accidental_hits,
        )
        total_ref = tf.reduce_sum(loss_ref)
    r_u, r_w, r_b = tape.gradient(total_ref, [u_ref, w_ref, b_ref])

    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5, atol=1e-5)
    for got, ref in [(g_u, r_u), (g_w, r_w), (g_b, r_b)]:
        np.testing.assert_allclose(got, tf.convert_to_tensor(ref), rtol=1e-4, atol=1e-5)


def test_accidental_hits_contribute_nothing():
    """(c) A sampled id equal to the label changes nothing vs. dropping that sample."""
    head = _built_head(sampler="log_uniform", num_sampled=10)
    keep_hits = _built_head(sampler="log_uniform", num_sampled=10, remove_accidental_hits=False)
    u, labels = _data()
    others = np.array([2, 9, 17, 33, 41], "int32")
    for row in range(B):
        label = labels[row : row + 1]
        negatives = others[others != label[0]]
        with_hit = np.concatenate([negatives[:2], label, label, negatives[2:]])
        got = head.sampled_loss(u[row : row + 1], label, sampled_ids=with_hit)
        dropped = head.sampled_loss(u[row : row + 1], label, sampled_ids=negatives)
        # Dropping samples rescales every Q by the same factor: a shift shared by all logits.
        np.testing.assert_allclose(got, dropped, rtol=1e-5, atol=1e-6)
        not_removed = keep_hits.sampled_loss(u[row : row + 1], label, sampled_ids=with_hit)
        assert float(not_removed[0]) > float(dropped[0]) + 1e-3


def _relative_gradient_error(head, u, labels, num_sampled, repeats):
    u_var = keras.Variable(u)
    (g_full,) = gradients(lambda: keras.ops.sum(head.full_loss(u_var, labels)), [u_var])
    mean = np.zeros_like(g_full)
    for _ in range(repeats):
        ids = head.sample_negatives(num_sampled)
        (g,) = gradients(
            lambda: keras.ops.sum(head.sampled_loss(u_var, labels, sampled_ids=ids)), [u_var]
        )
        mean += g / repeats
    return np.linalg.norm(mean - g_full) / np.linalg.norm(g_full)


@pytest.mark.parametrize("sampler", ["log_uniform", "uniform"])
@pytest.mark.parametrize("remove_accidental_hits", [False, True])
def test_sampled_gradient_approaches_full_softmax_gradient(sampler, remove_accidental_hits):
    """(d) The averaged sampled gradient w.r.t. u converges to the full-softmax gradient.

    499 classes, 16 examples, gradients averaged over 20 draws. The relative error
    |mean sampled gradient - full gradient| / |full gradient| must decrease from 5 to 50 to 2000
    draws (with replacement) and be below 0.06 at 2000 draws (measured: about 0.55 / 0.2 / 0.03).
    The error at large S is mostly the O(1/S) bias of the self-normalised estimate, not variance.
    With accidental hits removed the limit differs from the full gradient by O(p(label | u)),
    small here.
    """
    num_classes = 500
    head = _built_head(
        num_classes=num_classes,
        d=16,
        seed=11,
        sampler=sampler,
        num_sampled=5,
        remove_accidental_hits=remove_accidental_hits,
    )
    u, labels = _data(seed=12, batch=16, d=16, num_classes=num_classes)
    errors = [_relative_gradient_error(head, u, labels, s, repeats=20) for s in (5, 50, 2000)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.06, errors


def _np_sampled_loss(u, w, b, labels, sampled, q_true, q_sampled):
    """Sampled softmax in numpy: log-Q correction and every accidental hit removed."""
    true = np.sum(u * w[labels], 1) + b[labels] - np.log(q_true)
    logits = u @ w[sampled].T + b[sampled] - np.log(q_sampled)[None, :]
    logits = np.where(labels[:, None] == sampled[None, :], -np.inf, logits)
    return _np_logsumexp(np.concatenate([true[:, None], logits], 1), 1) - true


def test_in_batch_sampler_uses_the_batch_labels():
    counts = np.arange(N, dtype="float64")
    p = counts / counts[1:].sum()
    head = _built_head(sampler="in_batch", class_counts=counts)
    w, b = head.get_output_embeddings()
    u, _ = _data(batch=8)
    labels = np.array([5, 9, 13, 22, 31, 40, 47, 58], "int32")
    # Distinct labels: the same as TF given the batch labels as samples, Q = batch * p.
    q = tf.constant(8 * p[labels], tf.float32)
    ref = tf.nn.sampled_softmax_loss(
        weights=w,
        biases=b,
        labels=labels[:, None].astype("int64"),
        inputs=u,
        num_sampled=8,
        num_classes=N,
        sampled_values=(tf.constant(labels, tf.int64), q[:, None], q),
        remove_accidental_hits=True,
    )
    np.testing.assert_allclose(head.sampled_loss(u, labels), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head(u, labels, training=True), ref, rtol=1e-5, atol=1e-5)
    # A duplicated label is an accidental hit for both examples that carry it.
    labels[3] = labels[1]
    expected = _np_sampled_loss(u, w, b, labels, labels, 8 * p[labels], 8 * p[labels])
    np.testing.assert_allclose(head.sampled_loss(u, labels), expected, rtol=1e-5, atol=1e-5)
    # Without class counts Q is uniform and cancels: a softmax over the batch's labels.
    plain = _built_head(sampler="in_batch")
    w, b = plain.get_output_embeddings()
    ones = np.ones(8)
    expected = _np_sampled_loss(u, w, b, labels, labels, ones, ones)
    np.testing.assert_allclose(plain.sampled_loss(u, labels), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not available with sampler='in_batch'"):
        plain.sample_negatives()


# ----------------------------------------------------------------------------- samplers


def _log_uniform_p(num_classes):
    j = np.arange(1, num_classes)
    return np.concatenate([[0.0], np.log((j + 1) / j) / np.log(num_classes)])


@pytest.mark.parametrize("sampler", ["log_uniform", "unigram", "uniform"])
def test_sampler_frequencies_match_target_distribution(sampler):
    num_classes, draws = 50, 200_000
    counts = np.random.default_rng(2).integers(0, 20, num_classes).astype("float64")
    counts[[7, 30]] = 0  # zero-count classes must never be drawn
    if sampler == "unigram":
        p = counts.copy()
        p[0] = 0
        p /= p.sum()
        head = SampledSoftmax(
            num_classes, num_sampled=10, sampler="unigram", class_counts=counts, seed=4
        )
    elif sampler == "log_uniform":
        p = _log_uniform_p(num_classes)
        head = SampledSoftmax(num_classes, num_sampled=10, seed=4)
    else:
        p = np.r_[0.0, np.full(num_classes - 1, 1 / (num_classes - 1))]
        head = SampledSoftmax(num_classes, num_sampled=10, sampler="uniform", seed=4)
    head.build((None, 4))
    ids = np.asarray(head.sample_negatives(draws))
    assert ids.dtype == np.int32 and ids.min() >= 1 and ids.max() < num_classes
    freq = np.bincount(ids, minlength=num_classes) / draws
    # 5 standard deviations of a binomial frequency, per class.
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / draws) + 1e-12)
    if sampler == "unigram":
        assert freq[7] == 0 and freq[30] == 0
    # Chi-square over the classes with p > 0 (df <= 48): well below the 0.999 quantile (~84).
    support = p > 0
    chi2 = np.sum((freq[support] - p[support]) ** 2 / p[support]) * draws
    assert chi2 < 84, chi2
    np.testing.assert_allclose(
        head.expected_count(np.arange(num_classes), 10)[1:], 10 * p[1:], rtol=1e-5
    )


def test_log_uniform_matches_tf_sampler_distribution():
    """TF's log-uniform sampler over [0, N-1), shifted by one, has our expected counts."""
    num_classes = 1000
    head = SampledSoftmax(num_classes, num_sampled=64)
    ids = np.arange(1, num_classes)
    _, true_exp, _ = tf.random.log_uniform_candidate_sampler(
        true_classes=tf.constant(ids[:, None] - 1, tf.int64),
        num_true=1,
        num_sampled=64,
        unique=False,
        range_max=num_classes - 1,
    )
    np.testing.assert_allclose(head.expected_count(ids), true_exp.numpy()[:, 0], rtol=1e-5)


def test_seeded_sampling_is_reproducible():
    a = SampledSoftmax(100, num_sampled=20, seed=7)
    b = SampledSoftmax(100, num_sampled=20, seed=7)
    np.testing.assert_array_equal(a.sample_negatives(), b.sample_negatives())


# ----------------------------------------------------------------------------- training path


@pytest.mark.tf_only
def test_training_path_is_row_sparse_and_never_builds_full_logits():
    num_classes, batch = 5003, 4
    head = SampledSoftmax(num_classes, num_sampled=16, seed=0)
    u, labels = _data(batch=batch, num_classes=num_classes)
    head(u)  # build
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(head(u, labels, training=True))
    g_w, g_b = tape.gradient(loss, [head.output_embeddings, head.output_biases])
    assert isinstance(g_w, tf.IndexedSlices) and isinstance(g_b, tf.IndexedSlices)
    rows = set(np.asarray(g_w.indices).tolist())
    assert set(labels.tolist()) <= rows and len(rows) <= batch + 16

    @tf.function
    def train_loss(u, labels):
        return head(u, labels, training=True)

    graph = train_loss.get_concrete_function(
        tf.TensorSpec((batch, D), tf.float32), tf.TensorSpec((batch,), tf.int32)
    ).graph
    shapes = [tuple(t.shape.as_list()) for op in graph.get_operations() for t in op.outputs]
    assert not [s for s in shapes if len(s) == 2 and s[0] == batch and num_classes in s]
    # ... whereas the inference path does build them.
    infer = tf.function(lambda u: head(u)).get_concrete_function(
        tf.TensorSpec((batch, D), tf.float32)
    )
    shapes = [tuple(t.shape.as_list()) for op in infer.graph.get_operations() for t in op.outputs]
    assert (batch, num_classes) in shapes


def test_eager_training_call_is_a_positive_loss_per_example():
    head = SampledSoftmax(N, num_sampled=10)
    u, labels = _data()
    loss = head(u, labels, training=True)
    assert tuple(loss.shape) == (B,) and np.all(np.isfinite(loss)) and np.all(loss > 0)


class _TinyCandidateModel(keras.Model):
    def __init__(self, head, **kwargs):
        super().__init__(**kwargs)
        self.tower = keras.layers.Dense(D, activation="relu")
        self.head = head

    def call(self, inputs, training=False):
        x, labels = inputs
        return self.head(self.tower(x), labels, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.mean(y_pred)  # y_pred is the per-example sampled loss in training


def test_one_fit_step_updates_label_rows():
    head = SampledSoftmax(N, num_sampled=10, seed=1)
    model = _TinyCandidateModel(head, name="tiny_candidate_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12)).astype("float32")
    labels = rng.integers(1, N, 16).astype("int32")
    model((x, labels))
    w_before, _ = head.get_output_embeddings()
    # A label row's gradient is -(1 - p) u: zero where the ReLU tower gives u = 0 (the tower's
    # initial weights come from the global seed, so which examples those are varies by order).
    active = labels[np.any(keras.ops.convert_to_numpy(model.tower(x)) != 0, axis=1)]
    assert len(active) >= 8
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit((x, labels), epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    w_after, _ = head.get_output_embeddings()
    changed = np.flatnonzero(np.any(w_after != w_before, axis=1))
    assert set(active.tolist()) <= set(changed.tolist())
    assert 0 not in changed or 0 in labels  # class 0 is never sampled
    # Inference returns the full logits.
    assert model.predict((x, labels), verbose=0).shape == (16, N)


def test_consecutive_compiled_train_steps_draw_different_negatives():
    """Under the compiled train step (`jit` on JAX, `tf.function` on TensorFlow) every step draws
    new negatives: the seed generator's state advances, an int seed is not frozen at trace time.

    With SGD only the biases of the labels and of the sampled negatives move (their gradient is
    the softmax probability, never 0, whatever the user vector), so the moved biases (other than
    the label's) are the step's negatives.
    """
    num_classes = 10_000
    head = SampledSoftmax(num_classes, num_sampled=20, sampler="uniform", seed=5)
    model = _TinyCandidateModel(head, name="tiny_candidate_model")
    x = np.ones((2, 12), "float32")
    labels = np.array([1, 1], "int32")
    model((x, labels))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert not model.run_eagerly
    drawn = []
    for _ in range(2):
        _, b_before = head.get_output_embeddings()
        model.train_on_batch((x, labels))
        _, b_after = head.get_output_embeddings()
        moved = set(np.flatnonzero(b_after != b_before).tolist()) - {1}
        assert len(moved) >= 15  # 20 uniform draws out of 9999 ids: few repeats
        drawn.append(moved)
    assert drawn[0] != drawn[1]
    assert len(drawn[0] & drawn[1]) <= 3


# ----------------------------------------------------------------------------- tying


def test_tie_weights_to_embedding_layer():
    embedding = keras.layers.Embedding(N, D)
    head = SampledSoftmax(N, num_sampled=10, seed=0)
    head.tie_weights(embedding)
    u, labels = _data()
    logits = head(u)
    assert head.output_embeddings is embedding.embeddings
    w = np.asarray(embedding.embeddings)
    np.testing.assert_allclose(logits, u @ w.T, rtol=1e-5, atol=1e-5)  # biases start at zero
    assert [v.name for v in head.trainable_weights] == ["output_biases"]
    (grad,) = gradients(
        lambda: keras.ops.sum(head(u, labels, training=True)), [embedding.embeddings]
    )
    assert np.all(np.any(grad[labels] != 0, axis=1))  # the tied table gets the gradient
    if keras.backend.backend() == "tensorflow":
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(head(u, labels, training=True))
        assert isinstance(tape.gradient(loss, embedding.embeddings), tf.IndexedSlices)
    np.testing.assert_array_equal(head.get_output_embeddings()[0], w)
    # A model that uses both trains one table.
    ids_in, u_in = keras.Input((3,), dtype="int32"), keras.Input((D,))
    pooled = keras.layers.GlobalAveragePooling1D()(embedding(ids_in))
    model = keras.Model([ids_in, u_in], head(keras.layers.Add()([pooled, u_in])))
    assert sum(v is embedding.embeddings for v in model.trainable_variables) == 1


def test_tie_weights_errors():
    head = SampledSoftmax(N, num_sampled=10)
    with pytest.raises(ValueError, match=r"must have shape \(num_classes, d\) = \(60, d\), got"):
        head.tie_weights(keras.layers.Embedding(N + 1, D))
    head.tie_weights(keras.layers.Embedding(N, D + 1))
    with pytest.raises(ValueError, match=r"= \(60, 8\), got \(60, 9\)"):
        head(np.zeros((2, D), "float32"))
    built = _built_head()
    with pytest.raises(RuntimeError, match="before .* is built"):
        built.tie_weights(keras.layers.Embedding(N, D))


# ----------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("sampler, training", [
    ("log_uniform", False), ("log_uniform", True), ("unigram", False),
    ("unigram", True)])
def test_run_layer_test(sampler, training):
    u, labels = _data()
    # In training the output is the per-example sampled loss, in float32 under mixed precision.
    shape, call = ((B,), {"labels": labels, "training": True}) if training else ((B, N), {})
    loss_dtype = "float32" if training else None
    if sampler == "log_uniform":
        init = {"num_classes": N, "num_sampled": 7, "seed": 3, "name": "head"}
        weights = 2
    else:
        init = {"num_classes": N, "num_sampled": 5, "sampler": "unigram",
                "class_counts": np.arange(N, dtype="float64"), "remove_accidental_hits": False,
                "use_bias": False, "seed": 3,
                "embeddings_initializer": keras.initializers.RandomNormal(stddev=0.1)}
        weights = 1
    run_layer_test(SampledSoftmax, init, u, shape, call_kwargs=call,
                   expected_num_trainable_weights=weights, precision_output_dtype=loss_dtype)


def test_config_holds_class_counts_and_options():
    counts = np.arange(N, dtype="float64")
    head = SampledSoftmax(
        N,
        num_sampled=5,
        sampler="unigram",
        class_counts=counts,
        remove_accidental_hits=False,
        use_bias=False,
        embeddings_initializer=keras.initializers.RandomNormal(stddev=0.1),
    )
    config = head.get_config()
    assert config["class_counts"] == counts.tolist()
    assert config["sampler"] == "unigram" and config["use_bias"] is False


@pytest.mark.parametrize("sampler", ["log_uniform", "unigram"])
def test_saved_model_reproduces_logits(sampler, tmp_path):
    counts = np.arange(N, dtype="float64") if sampler == "unigram" else None
    u_in = keras.Input((D,))
    head = SampledSoftmax(N, num_sampled=10, sampler=sampler, class_counts=counts, seed=2)
    model = keras.Model(u_in, head(keras.layers.Dense(D)(u_in)))
    rng = np.random.default_rng(0)
    head.output_biases.assign(rng.normal(size=N).astype("float32"))
    assert_saved_model_reproduces(model, rng.normal(size=(4, D)).astype("float32"), tmp_path)
    restored = keras.saving.load_model(tmp_path / "model.keras")
    restored_head = restored.layers[-1]
    np.testing.assert_array_equal(
        restored_head.get_output_embeddings()[0], head.get_output_embeddings()[0]
    )
    if sampler == "unigram":
        np.testing.assert_array_equal(restored_head.sampling_cdf, head.sampling_cdf)


def test_mixed_precision_policy():
    head = SampledSoftmax(N, num_sampled=10, seed=0, dtype="mixed_float16")
    u, labels = _data()
    logits = head(u)
    w, b = head.get_output_embeddings()
    assert logits.dtype == "float16" and head.output_embeddings.dtype == "float32"
    np.testing.assert_allclose(np.asarray(logits, "float32"), u @ w.T + b, atol=1e-2)
    loss = head(u, labels, training=True)
    assert loss.dtype == "float32" and np.all(np.isfinite(loss))
    np.testing.assert_allclose(
        head.full_loss(u, labels), _np_full_loss(u, w, b, labels), rtol=1e-2, atol=1e-2
    )


def test_num_sampled_none_trains_on_the_full_softmax():
    head = SampledSoftmax(num_classes=N, num_sampled=None, seed=0)
    u, labels = _data()
    head.build(u.shape)
    w, b = head.get_output_embeddings()
    np.testing.assert_allclose(head(u, labels, training=True), _np_full_loss(u, w, b, labels),
                               rtol=1e-5, atol=1e-5)
    assert head.get_config()["num_sampled"] is None
    assert SampledSoftmax.from_config(json.loads(json.dumps(head.get_config()))).num_sampled is None
    with pytest.raises(ValueError, match="pass the number of draws"):
        head.sample_negatives()
    assert tuple(head.sample_negatives(7).shape) == (7,)


# ------------------------------------------------------------- issue 13: no silent wrong answers


@pytest.mark.parametrize(
    "labels, match",
    [
        ([0, 3], r"labels must hold video ids in \[1, 60\), got 1 value\(s\) outside it, e\.g\. "
                 r"\[0\]"),
        ([-1, 3], r"labels must hold video ids in \[1, 60\), got 1 value\(s\) outside it, e\.g\. "
                  r"\[-1\]"),
        ([2.7, 3], r"labels must hold video ids in \[1, 60\), got non-integer values \[2\.7\]"),
        ([60, 3], r"labels must hold video ids in \[1, 60\), got 1 value\(s\) outside it, "
                  r"e\.g\. \[60\]"),
    ],
)
def test_bad_labels_raise(labels, match):
    # Regression (issue 13, item 5): 0 trained the padding class, -1 gave the last class's
    # loss, 2.7 was truncated to 2, 60 gave a raw TF gather error.
    head = _built_head()
    u, _ = _data(batch=2)
    labels = np.array(labels)
    with pytest.raises(ValueError, match=match):
        head(u, labels, training=True)
    with pytest.raises(ValueError, match=match):
        head.full_loss(u, labels)
    with pytest.raises(ValueError, match=match):
        head.sampled_loss(u, labels)


def test_non_finite_user_vectors_raise():
    # Regression (issue 13, item 9): a NaN user vector gave a NaN loss and top_k class 0.
    head = _built_head()
    u, labels = _data(batch=2)
    u[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"user vectors u must hold finite numbers, got 1 "):
        head.top_k(u, 3)
    with pytest.raises(ValueError, match=r"user vectors u must hold finite numbers"):
        head(u, labels, training=True)


def test_top_k_never_returns_padding_or_excluded_ids():
    # Regression (issue 13, item 7): with fewer eligible classes than k, top_k filled the row
    # with the padding class 0 and the excluded ids (all at score -inf).
    head = _built_head(num_classes=6, num_sampled=2)
    u, _ = _data(batch=2, num_classes=6)
    exclude = np.array([[1, 2, 3], [0, 0, 0]])
    scores, ids = head.top_k(u, 5, exclude=exclude)
    scores, ids = np.asarray(scores), np.asarray(ids)
    w, b = head.get_output_embeddings()
    expected = u[0] @ w.T + b
    np.testing.assert_array_equal(ids[0, :2], 4 + np.argsort(-expected[4:], kind="stable"))
    np.testing.assert_array_equal(ids[0, 2:], [-1, -1, -1])
    assert np.all(np.isneginf(scores[0, 2:]))
    assert sorted(ids[1].tolist()) == [1, 2, 3, 4, 5]


@settings(max_examples=10, deadline=None)
@given(
    num_classes=st.integers(2, 30),
    d=st.integers(1, 6),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    use_bias=st.booleans(),
)
def test_property_every_class_sampled_equals_full_softmax(num_classes, d, batch, seed, use_bias):
    head = _built_head(num_classes=num_classes, d=d, seed=seed, sampler="uniform",
                       num_sampled=1, use_bias=use_bias)
    u, labels = _data(seed=seed + 1, batch=batch, d=d, num_classes=num_classes)
    w, b = head.get_output_embeddings()
    every_class = np.arange(1, num_classes, dtype="int32")
    sampled = head.sampled_loss(u, labels, sampled_ids=every_class)
    reference = _np_full_loss(u.astype("float64"), w, b, labels)
    np.testing.assert_allclose(sampled, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(head.full_loss(u, labels), reference, rtol=1e-4, atol=1e-4)
