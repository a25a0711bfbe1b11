import json

import keras
import numpy as np
import pytest

from keras_yt.models import CandidateGenerator
from tests.conftest import assert_config_round_trip

NUM_VIDEOS = 60
MAX_HISTORY = 6


def make_model(**overrides):
    config = dict(
        num_videos=NUM_VIDEOS,
        video_embedding_dim=8,
        max_history=MAX_HISTORY,
        search_num_bins=32,
        search_embedding_dim=4,
        max_queries=2,
        categorical_features={"geography": {"input_dim": 5, "output_dim": 3}},
        continuous_features=["user_age"],
        hidden_units=(16, 8),
        num_sampled=12,
        seed=1,
    )
    config.update(overrides)
    return CandidateGenerator(**config)


def make_features(n=32, seed=0):
    rng = np.random.default_rng(seed)
    history = rng.integers(1, NUM_VIDEOS, size=(n, MAX_HISTORY)).astype("int32")
    lengths = rng.integers(0, MAX_HISTORY + 1, size=n)
    history[np.arange(MAX_HISTORY)[None, :] >= lengths[:, None]] = 0  # padded tails
    words = np.array(["funny cats", "cat video", "", "guitar lesson", "news today"])
    return {
        "watch_history": history,
        "search_history": words[rng.integers(0, len(words), size=(n, 2))],
        "example_age": rng.uniform(0, 30, size=n).astype("float32"),
        "geography": rng.integers(0, 5, size=n).astype("int32"),
        "user_age": rng.uniform(0, 1, size=n).astype("float32"),
    }


def numpy_logits(model, user_vectors):
    W, b = model.get_output_embeddings()
    return user_vectors @ W.T + b


def test_config_round_trip_is_json():
    model = make_model(dropout=0.1, class_counts=None)
    json.dumps(model.get_config())
    assert_config_round_trip(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_videos": 1}, "num_videos must be an integer >= 2, got 1"),
        ({"hidden_units": []}, "hidden_units must be a non-empty list"),
        ({"dropout": 1.5}, r"dropout must be a float in \[0, 1\), got 1.5"),
        ({"tie_output_embeddings": True, "video_embedding_dim": 4}, "needs video_embedding_dim =="),
        ({"categorical_features": {"geo": 5}}, r"categorical_features\['geo'\] must be a dict"),
        ({"num_sampled": NUM_VIDEOS}, "num_sampled"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model(**kwargs)


def test_missing_feature_is_named():
    model = make_model()
    x = make_features(4)
    del x["geography"]
    with pytest.raises(ValueError, match=r"missing input feature\(s\) \['geography'\]"):
        model.predict(x, verbose=0)


def test_fit_reports_sampled_loss_and_evaluate_reports_full_softmax():
    model = make_model()
    model.compile()
    x, y = make_features(64), np.random.default_rng(1).integers(1, NUM_VIDEOS, 64)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert set(history.history) == {"loss"}  # no retrieval metric during training
    assert np.all(np.isfinite(history.history["loss"]))

    results = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    u = model.predict(x, verbose=0)
    logits = numpy_logits(model, u)
    logits[:, 0] = -np.inf  # the padding class is never a candidate
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    full_ce = -log_probs[np.arange(len(y)), y].mean()
    np.testing.assert_allclose(results["loss"], full_ce, rtol=1e-4)
    ranks = (logits > logits[np.arange(len(y)), y][:, None]).sum(axis=1)
    np.testing.assert_allclose(results["recall_at_10"], np.mean(ranks < 10), atol=1e-6)


def test_user_model_fixes_example_age_at_serving_value():
    model = make_model()
    x = make_features(8)
    user_tower = model.user_model()
    assert "example_age" not in user_tower.input
    served = user_tower.predict({k: v for k, v in x.items() if k != "example_age"}, verbose=0)
    old = dict(x, example_age=np.full(8, 25.0, "float32"))
    np.testing.assert_allclose(model.predict(old, verbose=0), served, atol=1e-6)
    zero = dict(x, example_age=np.zeros(8, "float32"))
    np.testing.assert_allclose(model(zero, training=True), served, atol=1e-6)


def test_recommend_matches_brute_force_and_excludes_watched():
    model = make_model()
    x = make_features(10)
    ids, scores = model.recommend(x, k=5, exclude_watched=True)
    logits = numpy_logits(model, model.predict(x, verbose=0))
    for row in range(10):
        watched = set(x["watch_history"][row]) - {0}
        allowed = [j for j in range(1, NUM_VIDEOS) if j not in watched]
        expected = sorted(allowed, key=lambda j: -logits[row, j])[:5]
        np.testing.assert_array_equal(ids[row], expected)
        np.testing.assert_allclose(scores[row], logits[row, expected], rtol=1e-5, atol=1e-5)
        assert not watched & set(ids[row])


def test_recommend_small_and_large_batches_agree():
    # up to 1024 users take one compiled step (predict_on_batch), more go through predict()
    model = make_model()
    x = make_features(1030)
    ids, scores = model.recommend(x, k=5)
    head = {name: value[:7] for name, value in x.items()}
    small_ids, small_scores = model.recommend(head, k=5)
    np.testing.assert_array_equal(small_ids, ids[:7])
    np.testing.assert_allclose(small_scores, scores[:7], rtol=1e-5, atol=1e-5)


def test_recommend_takes_python_lists_of_query_strings():
    model = make_model()
    x = make_features(4)
    as_lists = dict(x, search_history=x["search_history"].tolist())
    np.testing.assert_array_equal(model.recommend(as_lists, k=5)[0], model.recommend(x, k=5)[0])
    tower = model.user_model()
    served = {k: v for k, v in as_lists.items() if k != "example_age"}
    np.testing.assert_allclose(
        tower.predict_on_batch(served), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_keras_save_load_reproduces_user_vectors_and_output_embeddings(tmp_path):
    model = make_model()
    model.compile()
    x = make_features(16)
    model.fit(x, np.arange(1, 17), verbose=0)
    path = tmp_path / "candidate.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    for a, b in zip(restored.get_output_embeddings(), model.get_output_embeddings()):
        np.testing.assert_array_equal(a, b)


def test_tied_output_embeddings_are_the_watch_history_table(tmp_path):
    model = make_model(video_embedding_dim=8, tie_output_embeddings=True)
    model.build()
    W, _ = model.get_output_embeddings()
    np.testing.assert_array_equal(W, keras.ops.convert_to_numpy(model.watch_embedding.embeddings))
    model.compile()
    model.fit(make_features(16), np.arange(1, 17), verbose=0)
    W, _ = model.get_output_embeddings()
    np.testing.assert_array_equal(W, keras.ops.convert_to_numpy(model.watch_embedding.embeddings))
    path = tmp_path / "tied.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    W2, _ = restored.get_output_embeddings()
    np.testing.assert_array_equal(W2, W)


def test_learns_a_next_watch_rule_better_than_popularity():
    # The next video is always (last watched + 1): only a model that reads the history can know.
    rng = np.random.default_rng(0)
    n = 2048
    last = rng.integers(1, NUM_VIDEOS - 1, size=n)
    history = np.zeros((n, MAX_HISTORY), "int32")
    history[:, 0] = last
    history[:, 1] = rng.integers(1, NUM_VIDEOS, size=n)
    x = {"watch_history": history, "example_age": np.zeros(n, "float32")}
    y = last + 1
    model = CandidateGenerator(
        num_videos=NUM_VIDEOS, video_embedding_dim=16, max_history=MAX_HISTORY,
        hidden_units=(64, 32), num_sampled=20, seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(x, y, batch_size=64, epochs=15, verbose=0)
    recall = model.evaluate(x, y, verbose=0, return_dict=True)["recall_at_10"]
    popularity_recall = 10 / (NUM_VIDEOS - 2)  # labels are near-uniform over ids 2..59
    assert recall > 0.8 > 3 * popularity_recall


def test_fit_on_a_tf_data_dataset_matches_numpy_inputs():
    import tensorflow as tf

    x, y = make_features(64), np.random.default_rng(2).integers(1, NUM_VIDEOS, 64)
    dataset = tf.data.Dataset.from_tensor_slices((dict(x), y)).batch(16)
    model = make_model()
    model.compile()
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    from_dataset = model.evaluate(dataset, verbose=0, return_dict=True)
    from_numpy = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    for key in ("loss", "recall_at_10"):
        np.testing.assert_allclose(from_dataset[key], from_numpy[key], rtol=1e-5)


def test_num_sampled_auto_is_the_full_softmax_for_small_catalogues():
    small = CandidateGenerator(num_videos=10_000, hidden_units=(8,))
    assert small.softmax.num_sampled is None and small.get_config()["num_sampled"] == "auto"
    large = CandidateGenerator(num_videos=10_001, hidden_units=(8,))
    assert large.softmax.num_sampled == 4096
    with pytest.raises(ValueError, match="num_sampled must be an integer in .* or 'auto', "
                                         "got 'all'"):
        make_model(num_sampled="all")


def test_recent_history_is_a_second_bag_of_the_last_watches():
    d = 4
    model = CandidateGenerator(num_videos=NUM_VIDEOS, video_embedding_dim=d,
                               max_history=MAX_HISTORY, recent_history=2, use_example_age=False,
                               hidden_units=(2 * d,), seed=0)
    model.build()
    rng = np.random.default_rng(0)
    table = rng.uniform(0.1, 1.0, size=(NUM_VIDEOS, d)).astype("float32")
    table[0] = 0.0
    model.watch_embedding.embeddings.assign(table)
    model.tower[0].kernel.assign(np.eye(2 * d, dtype="float32"))  # the tower passes its input
    history = np.array([[0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]], "int32")
    u = model.predict({"watch_history": history}, verbose=0)
    expected = np.stack([
        np.concatenate([table[[3, 4, 5, 6]].mean(0), table[[5, 6]].mean(0)]),
        np.concatenate([table[[9]].mean(0), table[[9]].mean(0)]),
    ])
    np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-6)
    assert_config_round_trip(model)
    with pytest.raises(ValueError, match=r"recent_history must be <= max_history \(6\), got 7"):
        make_model(recent_history=7)


def test_video_scores_are_every_videos_logit():
    model = make_model()
    x = make_features(5)
    scores = model.video_scores(x, batch_size=2)
    u = model.predict(x, verbose=0)
    assert scores.shape == (5, NUM_VIDEOS) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, numpy_logits(model, u), rtol=1e-5, atol=1e-5)


def test_recommend_excludes_the_whole_history_given_in_exclude():
    model = CandidateGenerator(num_videos=12, video_embedding_dim=4, max_history=2,
                               hidden_units=(8,), num_sampled=3, use_example_age=False, seed=0)
    features = {"watch_history": np.array([[3, 4], [0, 5]], "int32")}
    exclude = [[1, 2, 6], [7]]  # e.g. older watches, beyond max_history
    ids, scores = model.recommend(features, k=6, exclude=exclude)
    u = model.predict(features, verbose=0)
    W, b = model.get_output_embeddings()
    reference = u @ W.T + b
    for row, banned in enumerate([{0, 1, 2, 3, 4, 6}, {0, 5, 7}]):
        ref = reference[row].copy()
        ref[list(banned)] = -np.inf
        expected = np.argsort(-ref, kind="stable")[:6]
        np.testing.assert_array_equal(np.sort(ids[row]), np.sort(expected))
        assert not banned & set(ids[row].tolist())
    with pytest.raises(ValueError, match="k must be at most num_videos - 1 = 11"):
        model.recommend(features, k=12)
