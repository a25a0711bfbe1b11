"""Training under `tf.distribute.MirroredStrategy` on two logical CPU devices.

`tests/conftest.py` splits the CPU into two logical devices before TensorFlow initialises them.
Each test builds and compiles the model in `strategy.scope()` with its default optimizer
(`SparseAdam` for `CandidateGenerator`, `SparseAdagrad` for `Ranker`), whose row-wise updates
must reach every replica's copy of the tables and of the optimizer's slots.

Tolerance of the single-device vs two-replica comparison: the two runs do the same float32
arithmetic except for the order of the gradient sums (two half-batch sums added across replicas
vs one sum over the batch), a few float32 ulps per step. Measured after 5 steps with these data:
`CandidateGenerator` at most 3e-8 (weights and Adam moments), `Ranker` 6e-8 (weights) and 6e-6
on Adagrad accumulators of size ~20 (3e-7 relative): at most 3% of `atol=1e-6, rtol=1e-5`. What
the tests are there to catch is 100x to 1000x larger: gradients summed over replicas without the
division by the global batch size (weights off by 3e-4; Adam is nearly scale-invariant),
per-replica weight sums (1e-3), row-wise updates that reach one replica's copy only (5e-3).
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_yt.models import CandidateGenerator, Ranker

pytestmark = pytest.mark.tf_only

STEPS, BATCH = 5, 16
NUM_VIDEOS = 40
RTOL, ATOL = 1e-5, 1e-6


@functools.cache
def two_replicas() -> tf.distribute.MirroredStrategy:
    """One strategy for the whole test process.

    A second `MirroredStrategy` in the same process starts its collective keys where the first
    one did, and TensorFlow's collective executor keeps the first one's shapes under those keys:
    its all-reduces fail with "Shape mismatch in the collective instance 100" (TensorFlow issue
    62790). One strategy, used for several models, allocates new keys for each.
    """
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices (TensorFlow was initialised before conftest)")
    return tf.distribute.MirroredStrategy(devices[:2])


def replica_copies(variable) -> list[np.ndarray]:
    """The value of each replica's copy of a (mirrored) variable."""
    value = variable.value
    return [np.asarray(copy.numpy()) for copy in getattr(value, "values", (value,))]


def all_variables(model) -> list:
    return [*model.weights, *model.optimizer.variables]


def assert_trained_alike(reference, distributed) -> float:
    """Every variable (weights and optimizer slots) of `distributed`, on every replica, matches
    `reference`; returns the largest absolute difference."""
    worst = 0.0
    pairs = list(zip(all_variables(reference), all_variables(distributed), strict=True))
    for ref, dist in pairs:
        assert dist.path.replace(distributed.name, reference.name) == ref.path
        (expected,) = replica_copies(ref)
        copies = replica_copies(dist)
        assert len(copies) == 2, dist.path
        for copy in copies:
            np.testing.assert_allclose(copy, expected, rtol=RTOL, atol=ATOL, err_msg=dist.path)
            worst = max(worst, float(np.max(np.abs(copy - expected), initial=0.0)))
    return worst


def assert_weights_changed(model, before) -> None:
    for variable, initial in zip(model.trainable_weights, before, strict=True):
        assert np.max(np.abs(replica_copies(variable)[0] - initial)) > 1e-4, variable.path


# ------------------------------------------------------------------------------------ data

def watch_data(n=STEPS * BATCH, seed=0):
    rng = np.random.default_rng(seed)
    words = np.array(["cats", "dogs", "funny cats", "news", ""])
    x = {
        "watch_history": rng.integers(0, NUM_VIDEOS, size=(n, 6)).astype("int32"),
        "search_history": words[rng.integers(0, len(words), size=(n, 2))],
        "example_age": rng.uniform(0, 60, size=n).astype("float32"),
        "device": rng.integers(0, 3, size=n).astype("int32"),
    }
    return x, rng.integers(1, NUM_VIDEOS, size=n).astype("int32")


def impressions(n=STEPS * BATCH, seed=0):
    rng = np.random.default_rng(seed)
    video = rng.integers(1, NUM_VIDEOS, size=n).astype("int32")
    clicked = rng.uniform(size=n) < 0.3
    x = {
        "video_id": video,
        "watch_history": rng.integers(0, NUM_VIDEOS, size=(n, 5)).astype("int32"),
        "video_language": (video % 4).astype("int32"),
        "time_since_last_watch": rng.exponential(5.0, size=n).astype("float32"),
    }
    return x, np.where(clicked, rng.exponential(30.0, size=n), 0.0).astype("float32")


def candidate_generator(num_sampled=None):
    keras.utils.set_random_seed(1)  # the same initial weights in every run
    model = CandidateGenerator(
        num_videos=NUM_VIDEOS, video_embedding_dim=8, max_history=6, search_num_bins=50,
        search_embedding_dim=4, max_queries=2,
        categorical_features={"device": {"input_dim": 3, "output_dim": 2}},
        hidden_units=(16, 8), num_sampled=num_sampled, seed=3,
    )
    model.build()
    model.compile()
    return model


def ranker(x):
    keras.utils.set_random_seed(1)
    model = Ranker(
        num_videos=NUM_VIDEOS, video_embedding_dim=4, max_history=5,
        categorical_features={"video_language": {"input_dim": 4, "output_dim": 2}},
        continuous_features=["time_since_last_watch"], num_quantiles=20, hidden_units=(16, 8),
        seed=0,
    )
    model.adapt(x)
    model.build()
    model.compile()
    return model


def fit(model, x, y, **kwargs):
    return model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, **kwargs)


# ------------------------------------------------------------------------------------ tests

def test_candidate_generator_on_two_replicas_trains_as_on_one_device():
    x, y = watch_data()
    # Weighted: the loss divides by the weight sum of the global batch, not of each replica's half.
    weights = np.random.default_rng(1).uniform(0.1, 3.0, size=len(y)).astype("float32")
    reference = candidate_generator()
    before = [np.asarray(w.numpy()) for w in reference.trainable_weights]
    fit(reference, x, y, sample_weight=weights)
    with two_replicas().scope():
        distributed = candidate_generator()
    fit(distributed, x, y, sample_weight=weights)

    assert int(distributed.optimizer.iterations.numpy()) == STEPS
    assert_weights_changed(reference, before)
    assert_trained_alike(reference, distributed)


def test_ranker_on_two_replicas_trains_as_on_one_device():
    x, y = impressions()
    reference = ranker(x)
    before = [np.asarray(w.numpy()) for w in reference.trainable_weights]
    fit(reference, x, y)
    with two_replicas().scope():
        distributed = ranker(x)
    fit(distributed, x, y)

    assert int(distributed.optimizer.iterations.numpy()) == STEPS
    assert_weights_changed(reference, before)
    assert_trained_alike(reference, distributed)


@pytest.fixture(scope="module")
def sampled_model():
    """A CandidateGenerator with 10 sampled negatives trained on two replicas, and its data."""
    x, y = watch_data()
    strategy = two_replicas()
    with strategy.scope():
        model = candidate_generator(num_sampled=10)
    before = [np.asarray(w.numpy()) for w in model.trainable_weights]
    history = fit(model, x, y)
    return model, strategy, x, y, before, history


def test_sampled_softmax_trains_on_two_replicas(sampled_model):
    model, _, x, y, before, history = sampled_model
    assert np.all(np.isfinite(history.history["loss"]))
    assert_weights_changed(model, before)
    for variable in all_variables(model):
        first, second = replica_copies(variable)
        np.testing.assert_array_equal(first, second, err_msg=variable.path)
    # The replicas draw the same negatives as one device would (the sampler's seed state is
    # mirrored), so the run also matches single-device training.
    reference = candidate_generator(num_sampled=10)
    fit(reference, x, y)
    assert_trained_alike(reference, model)


def test_keras_file_of_a_model_trained_on_two_replicas(sampled_model, tmp_path):
    model, strategy, x, y, _, _ = sampled_model
    expected = model.predict(x, verbose=0)
    assert model.predict_on_batch(x).shape == expected.shape == (len(y), 8)
    expected_ids, expected_scores = model.recommend(x, k=5)
    path = tmp_path / "model.keras"
    model.save(path)

    outside = keras.saving.load_model(path)
    with strategy.scope():
        inside = keras.saving.load_model(path)
    # Evaluation (full softmax, Recall@k over the corpus) on two replicas = on one device.
    metrics = outside.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    for name, value in model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True).items():
        assert value == pytest.approx(metrics[name], rel=1e-5), name
    for loaded in (outside, inside):
        np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
        ids, scores = loaded.recommend(x, k=5)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-6, atol=1e-6)
        for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables,
                                   strict=True):
            for copy in replica_copies(restored):
                np.testing.assert_array_equal(copy, replica_copies(saved)[0])
    assert len(replica_copies(inside.softmax.output_embeddings)) == 2
