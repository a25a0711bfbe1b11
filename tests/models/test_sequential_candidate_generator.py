"""CandidateGenerator(history_encoder="attention"): all-position loss, serving, saving, export."""

import json

import keras
import numpy as np
import pytest

from keras_yt.data import Vocabulary, sequence_examples
from keras_yt.models import CandidateGenerator
from tests.testing import assert_config_round_trip, assert_saved_model_reproduces

NUM_VIDEOS, LENGTH = 40, 6


def make_model(**kwargs):
    args = dict(num_videos=NUM_VIDEOS, video_embedding_dim=8, max_history=LENGTH,
                history_encoder="attention", hidden_units=(16, 8), num_sampled=None,
                categorical_features={"gender": {"input_dim": 3, "output_dim": 2}},
                continuous_features=["user_age"], seed=0)
    model = CandidateGenerator(**{**args, **kwargs})
    model.build()
    return model


def windows(seed=0, users=12):
    rng = np.random.default_rng(seed)
    rows = [(u, rng.integers(1, NUM_VIDEOS), t) for u in range(1, users + 1)
            for t in range(rng.integers(2, 2 * LENGTH))]
    log = {"user": [r[0] for r in rows], "video": [r[1] for r in rows],
           "timestamp": [float(r[2]) * 86400 for r in rows]}
    ex = sequence_examples(log, max_history=LENGTH, max_windows_per_user=None)
    ex["gender"] = (ex["user"] % 3).astype("int32")
    ex["user_age"] = (ex["user"] / 20.0).astype("float32")
    return ex


def features(ex):
    return {k: ex[k] for k in ("watch_history", "example_age", "gender", "user_age")}


def test_all_position_loss_matches_numpy_reference():
    model = make_model(user_vector_activation="linear")
    ex = windows()
    x = features(ex)
    u = keras.ops.convert_to_numpy(model.user_vector(x, all_positions=True))
    assert u.shape == (len(ex["label"]), LENGTH, 8)
    W, b = model.get_output_embeddings()
    logits = u @ W.T + b
    logits[..., 0] = -np.inf  # padding is never a class
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = ex["label"] > 0
    rows, cols = np.nonzero(real)
    expected = -log_probs[rows, cols, ex["label"][rows, cols]].mean()
    loss = model.compute_loss(x, ex["label"], keras.ops.convert_to_tensor(u), training=False)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # The user vector served (after the last watch) is the last position's.
    served = model.predict(x, verbose=0)
    np.testing.assert_allclose(served, u[:, -1], atol=1e-5)


def weights_after_one_step(num_sampled=None, jit_compile=False):
    """Weights of a fresh model (no dropout, seeded) after one SGD step on `windows(seed=2)`."""
    ex = windows(seed=2)
    keras.utils.set_random_seed(3)  # the same initial weights and negatives
    # No dropout: unseeded TensorFlow ops draw from the graph's op count, which differs.
    model = make_model(num_sampled=num_sampled, encoder_dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=jit_compile)
    assert model.jit_compile is jit_compile
    model.train_on_batch(features(ex), ex["label"])
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.parametrize("num_sampled", [None, 7])
def test_a_step_on_the_real_positions_only_equals_a_step_on_every_position(monkeypatch,
                                                                            num_sampled):
    import keras_yt.models.candidate_generator as module
    from keras_yt.backend import generic

    assert (windows(seed=2)["label"] == 0).mean() > 0.2  # padding positions to leave out
    compact = weights_after_one_step(num_sampled)
    monkeypatch.setattr(module.backend, "rows_where", generic.rows_where)
    every = weights_after_one_step(num_sampled)
    for a, b in zip(compact, every):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(w, keras.ops.convert_to_numpy(v), atol=1e-6)
               for w, v in zip(compact, make_model(num_sampled=num_sampled).weights))


def test_an_xla_compiled_step_keeps_every_position():
    # TensorFlow on a GPU compiles the step with XLA by default: the real positions kept by
    # `rows_where` have a data-dependent shape, which XLA bounds; the step is the same.
    for xla, plain in zip(weights_after_one_step(jit_compile=True), weights_after_one_step()):
        np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_sampled", [pytest.param(None, marks=pytest.mark.slow), 7])
def test_fit_on_sequences_lowers_the_loss(num_sampled):
    from keras_yt.optimizers import SparseAdam

    model = make_model(num_sampled=num_sampled)
    model.compile(optimizer=SparseAdam(0.01))
    ex = windows(seed=1)
    x = features(ex)
    before = model.evaluate(x, ex["label"], verbose=0, return_dict=True)["loss"]
    history = model.fit(x, ex["label"], epochs=5, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = model.evaluate(x, ex["label"], verbose=0, return_dict=True)["loss"]
    assert after < before
    # One-label examples (validation, candidate_examples) train too: the last position's u.
    last = {**x, "example_age": ex["example_age"][:, -1]}
    other = make_model(num_sampled=num_sampled)
    other.compile()
    assert np.isfinite(other.fit(last, ex["label"][:, -1], verbose=0).history["loss"][0])


def test_user_vector_does_not_depend_on_padding():
    model = make_model()
    left = np.array([[0, 0, 0, 5, 6, 7], [0, 0, 0, 0, 0, 9], [0] * LENGTH])
    right = np.array([[5, 6, 7, 0, 0, 0], [9, 0, 0, 0, 0, 0], [0] * LENGTH])
    other = {"gender": np.array([1, 2, 0]), "user_age": np.array([0.1, 0.5, 0.3], "float32")}
    u_left = model.predict({"watch_history": left, **other}, verbose=0)
    u_right = model.predict({"watch_history": right, **other}, verbose=0)
    np.testing.assert_allclose(u_right, u_left, atol=1e-5)


def test_config_saving_and_bad_arguments(tmp_path):
    model = make_model(tie_output_embeddings=True, hidden_units=(8,), encoder_blocks=1,
                       encoder_heads=2, encoder_dropout=0.1, user_vector_activation="linear")
    assert_config_round_trip(model)
    config = model.get_config()
    json.dumps(config)
    assert config["history_encoder"] == "attention" and config["encoder_heads"] == 2
    ex = windows()
    assert_saved_model_reproduces(model, features(ex), tmp_path, atol=1e-5)
    assert CandidateGenerator(num_videos=5).history_encoder == "bag"  # backward compatible
    for kwargs, message in [
        ({"history_encoder": "rnn"}, "history_encoder"),
        ({"recent_history": 2}, "recent_history"),
        ({"encoder_heads": 3}, "encoder_heads"),
        ({"encoder_dropout": 1.0}, "encoder_dropout"),
        ({"user_vector_activation": "tanh"}, "user_vector_activation"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_model(**kwargs)
    with pytest.raises(ValueError, match="labels per position"):
        model.fit(features(ex), ex["label"] + NUM_VIDEOS, verbose=0)


def test_no_tower_and_no_output_bias_score_the_encoder_state_against_the_video_table(tmp_path):
    # The anchor's head (docs/sequential.md): u is the attention state itself and a video's
    # score is u·W_j with W the watch-history table, no bias.
    model = make_model(categorical_features=None, continuous_features=None,
                       use_example_age=False, hidden_units=(), tie_output_embeddings=True,
                       output_bias=False)
    assert model.user_vector_dim == 8 and model.tower == []
    assert model.softmax.output_biases is None
    assert [v.path for v in model.trainable_variables if "softmax" in v.path] == []
    x = {"watch_history": windows()["watch_history"]}
    u = model.predict(x, verbose=0)
    state = keras.ops.convert_to_numpy(model.encoder(x["watch_history"], return_sequences=False))
    np.testing.assert_allclose(u, state, atol=1e-5)
    W, b = model.get_output_embeddings()
    np.testing.assert_array_equal(b, 0)
    table = keras.ops.convert_to_numpy(model.watch_embedding.embeddings)
    np.testing.assert_array_equal(W, table)
    scores = keras.ops.convert_to_numpy(model.video_scores(x))
    np.testing.assert_allclose(scores[:, 1:], (u @ table.T)[:, 1:], rtol=1e-5, atol=1e-5)
    config = model.get_config()
    assert config["hidden_units"] == [] and config["output_bias"] is False
    assert_config_round_trip(model)
    assert_saved_model_reproduces(model, x, tmp_path, atol=1e-5)


def test_no_tower_with_side_features_concatenates_them_into_the_user_vector():
    model = make_model(hidden_units=(), output_bias=False)
    # The state, example age, gender (2-d), user age and its square and root:
    assert model.user_vector_dim == 8 + 1 + 2 + 3
    x = features(windows())
    u = model.predict(x, verbose=0)
    state = keras.ops.convert_to_numpy(model.encoder(x["watch_history"], return_sequences=False))
    np.testing.assert_allclose(u[:, :8], state, atol=1e-5)
    age = np.clip(x["user_age"], 0, None)
    np.testing.assert_allclose(u[:, -3:], np.stack([age, age ** 2, np.sqrt(age)], 1), rtol=1e-5)


def test_export_with_raw_ids_gives_the_keras_user_vector(tmp_path):
    from keras_yt.serving import export_saved_model
    from tests.serving.test_export import reload_in_fresh_process

    videos = Vocabulary.from_ids([1000 + i for i in range(NUM_VIDEOS - 1)])
    model = make_model(categorical_features=None, continuous_features=None)
    raw = np.array([[-1, -1, 1003, 1007, 1001, 1020], [1005, 1006, -1, -1, -1, -1],
                    [-1, 1002, 55555, 1004, -1, 1009]], dtype=np.int64)  # 55555: unknown
    out = reload_in_fresh_process(export_saved_model(model, tmp_path / "t", vocabulary=videos),
                                  "user_vector", {"watch_history": raw}, tmp_path)
    expected = model.predict({"watch_history": videos.lookup(raw).astype("int32")}, verbose=0)
    np.testing.assert_allclose(out["user_vector"], expected, atol=1e-5)
