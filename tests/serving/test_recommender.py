"""Recommender: raw ids in and out, the whole watched set excluded, fewer than k, threads."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_yt.run_folder import RunFolder
from keras_yt.serving.recommender import Recommender
from tests.runs import train_run


@pytest.fixture(scope="module")
def recommender(tiny_run):
    return Recommender(tiny_run, warm=True)


def test_movielens_no_recommended_movie_was_rated_in_training(movielens_dir, tmp_path):
    from keras_yt.datasets import movielens

    watches = movielens.load_data("ml-100k", data_dir=str(movielens_dir)).watches
    log = tmp_path / "ratings.csv"
    np.savetxt(log, np.stack([watches["user"], watches["video"], watches["timestamp"]], 1),
               fmt="%d", delimiter=",", header="user,video,timestamp", comments="")
    run = train_run(log, tmp_path / "run", epochs=1)
    rated = {}
    for user, video in zip(watches["user"].tolist(), watches["video"].tolist()):
        rated.setdefault(user, set()).add(video)
    users = sorted(rated)
    assert len(users) == 943 and max(len(v) for v in rated.values()) > 50
    results = Recommender(run, warm=False).recommend_users(users, k=20)
    for user, items in zip(users, results):
        ids = [item["id"] for item in items]
        assert len(ids) == 20 and len(set(ids)) == 20
        assert not rated[user] & set(ids), f"user {user} was recommended movies they rated"


def test_k_larger_than_the_eligible_videos_returns_fewer_never_padding(recommender):
    run, n = recommender.run, len(recommender.videos)
    row = run.user_rows(["u3"])
    watched = set(run.watched(row)[0].tolist())
    assert 0 < len(watched) < n
    items = recommender.recommend(user="u3", k=10_000)
    ids = [item["id"] for item in items]
    assert len(ids) == n - len(watched) == len(set(ids))
    assert not set(recommender.videos.lookup(np.array(ids)).tolist()) & watched
    assert all(np.isfinite(item["score"]) for item in items)
    assert len(recommender.recommend(user="u3", k=10_000, keep_watched=True)) == n
    extra = recommender.recommend(user="u3", k=10_000, exclude=[ids[0], "unknown-video"])
    assert [item["id"] for item in extra] == ids[1:]


def test_watch_history_request_matches_a_brute_force_reference(recommender):
    run, videos = recommender.run, recommender.videos
    history = ["v5", "v6", "no-such-video", "v7"]
    items = recommender.recommend(watch_history=history, k=5, exclude=["v8"])
    model = run.load_model()
    model_ids = videos.lookup(np.array(history))
    padded = np.zeros((1, model.max_history), "int32")
    padded[0, -3:] = model_ids[model_ids > 0]
    u = model.user_model().predict({"watch_history": padded}, verbose=0)[0]
    W, b = model.get_output_embeddings()
    scores = W @ u + b
    scores[[0, *model_ids[model_ids > 0], *videos.lookup(["v8"])]] = -np.inf
    best = np.argsort(-scores, kind="stable")[:5]
    assert [item["id"] for item in items] == videos.raw_ids(best).tolist()
    np.testing.assert_allclose([item["score"] for item in items], scores[best], rtol=1e-5)


def test_stored_user_vectors_equal_the_user_tower(recommender):
    run = recommender.run
    rows = np.arange(1, len(recommender.users) + 1)
    stored = run.serving_arrays()["user_vectors"][rows]
    features = run.latest_features(rows)
    np.testing.assert_allclose(recommender.user_vectors(features), stored, atol=1e-5)


def test_concurrent_requests_equal_serial_ones(recommender):
    users = recommender.users.ids.tolist()
    requests = [{"user": users[i % len(users)], "k": 1 + i % 7} for i in range(40)] + [
        {"watch_history": [f"v{(i * 7 + j) % 30}" for j in range(i % 9)], "k": 3}
        for i in range(40)]
    serial = [recommender.recommend(**r) for r in requests]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda r: recommender.recommend(**r), requests * 3))
    assert parallel == serial * 3


def test_bad_arguments_are_clear_errors(recommender):
    with pytest.raises(ValueError, match="unknown user 'nobody'"):
        recommender.recommend(user="nobody")
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        recommender.recommend(user="u1", k=0)
    with pytest.raises(ValueError, match="exactly one of user and watch_history"):
        recommender.recommend()
    with pytest.raises(ValueError, match="search must be"):
        Recommender(recommender.run, search="fast")


def test_random_bytes_index_is_a_clear_error(tiny_run, tmp_path):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "run")
    (tmp_path / "run" / "index.h5").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match="index.h5"):
        Recommender(RunFolder(tmp_path / "run"), search="index", warm=False)


@given(st.one_of(st.integers(-5, 2**64).map(str),
                 st.text(alphabet="0123456789+-_ \u0663\u00b2", min_size=1, max_size=5)))
def test_raw_video_ids_given_as_text_are_exact(text):
    """A watch-history id given as text is an integer id only when it is a canonical decimal."""
    from keras_yt.serving.recommender import _id_array

    canonical = text.isascii() and text.isdigit() and text == str(int(text)) and \
        int(text) < 2**63
    assert _id_array([text], is_string=False).tolist() == [int(text) if canonical else -1]
    assert _id_array([text], is_string=True).tolist() == [text]


def test_fallback_says_when_no_watch_of_the_history_is_known(recommender):
    assert recommender.fallback(watch_history=[]) == "popular"
    assert recommender.fallback(watch_history=["nope", "", "v99999"]) == "popular"
    assert recommender.fallback(watch_history=["nope", "v1"]) is None
    assert recommender.fallback(user="u3") is None
    with pytest.raises(ValueError, match="unknown user"):
        recommender.fallback(user="nobody")


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory):
    """A small run of the attention preset (trained one epoch by `keras-yt train`)."""
    import json

    from keras_yt.cli import main
    from keras_yt.models.presets import load_preset
    from tests.runs import write_log

    folder = tmp_path_factory.mktemp("sequential_run")
    preset = load_preset("movielens_sequential")
    preset["config"].update(num_videos=100, video_embedding_dim=8,  # no tower, no bias
                            max_history=12, encoder_blocks=1)
    (folder / "seq.json").write_text(json.dumps(preset))
    log = write_log(folder / "watches.csv", n_users=16)
    assert main(["train", "--log", str(log), "--out", str(folder / "run"), "--epochs", "1",
                 "--preset", str(folder / "seq.json")]) == 0
    return folder / "run"


def test_sequential_tower_served_compiled_equals_the_keras_model(sequential_run):
    """The served user vector (compiled tower on TensorFlow) is the Keras model's, and the
    top-k is the brute-force top-k of the Keras model's scores."""
    import keras

    recommender = Recommender(sequential_run, warm=True)
    model = recommender.run.load_model()
    assert model.history_encoder == "attention"
    if keras.backend.backend() == "tensorflow":  # one user: the XLA-compiled tower
        assert recommender._compiled_tower()["single"] is not None
    tower = model.user_model()
    videos = recommender.videos
    W, b = model.get_output_embeddings()
    rng = np.random.default_rng(0)
    for length in (0, 1, 5, 12, 30):  # empty, short, full and longer than max_history
        history = [f"v{j}" for j in rng.integers(0, 30, size=length)]
        items = recommender.recommend(watch_history=history, k=6)
        row = recommender._model_history(history)
        features = recommender._default_features(row)
        u = tower.predict_on_batch(features)[0]
        np.testing.assert_allclose(recommender.user_vectors(features)[0], u, rtol=1e-5,
                                   atol=1e-6)
        scores = W @ u + b
        scores[[0, *row[0][row[0] > 0]]] = -np.inf
        best = np.argsort(-scores, kind="stable")[:6]
        assert [item["id"] for item in items] == videos.raw_ids(best).tolist()
        np.testing.assert_allclose([item["score"] for item in items], scores[best], rtol=1e-4,
                                   atol=1e-5)
    # a batch of stored users through the compiled tower equals the Keras tower too
    rows = np.arange(1, len(recommender.users) + 1)
    features = recommender._complete(recommender.run.latest_features(rows))
    np.testing.assert_allclose(recommender.user_vectors(features),
                               tower.predict_on_batch(features), rtol=1e-5, atol=1e-6)
