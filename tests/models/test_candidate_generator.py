
import keras
import numpy as np
import pytest

from keras_yt.models import CandidateGenerator
from tests.testing import assert_config_round_trip, run_layer_test

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


def test_run_layer_test():
    # Without search queries: strings are a TensorFlow input, the other features any backend's.
    init = dict(num_videos=NUM_VIDEOS, video_embedding_dim=8, max_history=MAX_HISTORY,
                categorical_features={"geography": {"input_dim": 5, "output_dim": 3}},
                continuous_features=["user_age"], hidden_units=(16, 8), num_sampled=12,
                dropout=0.1, seed=1)
    x = make_features(8)
    del x["search_history"]
    # The call is the user vector (the last hidden layer); fit trains the sampled softmax.
    run_layer_test(CandidateGenerator, init, x, (8, 8), train_data=(x, np.arange(1, 9)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_videos": 1}, "num_videos must be an integer >= 2, got 1"),
        ({"hidden_units": [0]}, "hidden_units must be a list of positive integers"),
        ({"output_bias": "no"}, "output_bias must be a bool, got 'no'"),
        ({"dropout": 1.5}, r"dropout must be a float in \[0, 1\), got 1.5"),
        ({"tie_output_embeddings": True, "video_embedding_dim": 4}, "needs video_embedding_dim =="),
        ({"tie_output_embeddings": True, "hidden_units": []},
         r"a user vector of width 19 \(hidden_units=\[\]\)"),
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


def test_a_preset_on_a_small_catalogue_hints_num_sampled_auto():
    # Regression (issue 24, item 16): youtube_paper_candidate's num_sampled=4096 failed on a
    # small catalogue without saying what to pass instead.
    with pytest.raises(ValueError, match=r"num_sampled must be less than num_videos = 1000, got "
                                         r"4096 .*pass num_sampled='auto'"):
        CandidateGenerator.from_preset("youtube_paper_candidate", num_videos=1000)


def test_every_missing_feature_is_named_at_once():
    model = make_model()
    x = make_features(4)
    for name in ("geography", "user_age", "search_history"):
        del x[name]
    with pytest.raises(ValueError, match=r"missing input feature\(s\) \['search_history', "
                                         r"'geography', 'user_age'\]"):
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


# ------------------------------------------------------------- issue 13: no silent wrong answers


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.weights]


@pytest.mark.parametrize(
    "feature, value, match",
    [
        ("user_age", np.nan, r"feature 'user_age' must hold finite numbers, got 1 invalid"),
        ("example_age", np.inf, r"feature 'example_age' must hold finite numbers, got 1 "),
        ("watch_history", 2**32 + 7, r"feature 'watch_history' must hold integer ids in \[0, "
                                     r"60\), got 1 value\(s\) outside it, e\.g\. \[4294967303\]"),
        ("geography", 5, r"feature 'geography' must hold integer ids in \[0, 5\)"),
        ("watch_history", 2.5, r"feature 'watch_history' must hold integer ids in \[0, 60\), "
                               r"got non-integer values \[2\.5\]"),
    ],
)
def test_bad_feature_values_raise_before_fit_and_leave_weights_unchanged(feature, value, match):
    # Regression (issue 13, items 1 and 2): a NaN continuous feature turned relu_0/kernel into
    # NaN with a normal-looking loss; an inf example age made every prediction 0; an id
    # 2**32 + 7 wrapped to 7.
    model = make_model()
    model.compile()
    x = make_features(8)
    model.fit(x, np.arange(1, 9), verbose=0)
    before = _weights(model)
    bad = dict(x)
    bad[feature] = bad[feature].astype("float64" if isinstance(value, float) else "int64")
    bad[feature][(3,) + (0,) * (bad[feature].ndim - 1)] = value
    for call in (lambda: model.fit(bad, np.arange(1, 9), verbose=0),
                 lambda: model.evaluate(bad, np.arange(1, 9), verbose=0),
                 lambda: model.predict(bad, verbose=0)):
        with pytest.raises(ValueError, match=match):
            call()
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "label, match",
    [
        (0, r"y \(the labels\) must hold video ids in \[1, 60\), got 1 value\(s\) outside it, "
            r"e\.g\. \[0\]"),
        (-1, r"e\.g\. \[-1\]"),
        (2.7, r"got non-integer values \[2\.7\]"),
        (60, r"e\.g\. \[60\]"),
    ],
)
def test_bad_labels_raise_in_fit_and_evaluate(label, match):
    # Regression (issue 13, item 5): 0 trained the padding class, -1 the last class, 2.7 was
    # truncated, 60 gave TF's "indices[1] = 60 is not in [0, 60)".
    model = make_model()
    model.compile()
    x = make_features(4)
    y = np.array([1, label, 3, 4])
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.train_on_batch(x, y)


def test_string_features_where_ids_are_expected_raise():
    # Regression (issue 13, item 15): "Cast string to int32" from deep inside TF.
    model = make_model()
    x = make_features(4)
    x["watch_history"] = np.array([["a"] * MAX_HISTORY] * 4)
    with pytest.raises(ValueError, match=r"feature 'watch_history' must hold int32 values, got "
                                         r"a string tensor"):
        model.predict(x, verbose=0)


def test_diverging_training_stops_with_a_clear_error():
    # A non-finite loss stops fit with an error instead of leaving NaN weights behind silently.
    from keras_yt.models._feature_model import NonFiniteLossError

    model = make_model(search_num_bins=None, categorical_features=None, continuous_features=None)
    model.compile(optimizer=keras.optimizers.SGD(1e30))
    x = make_features(64)
    x = {k: x[k] for k in ("watch_history", "example_age")}
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf) at batch \d+"):
        model.fit(x, np.arange(64) % (NUM_VIDEOS - 1) + 1, batch_size=8, epochs=3, verbose=0)
    assert model.stop_training


def test_user_model_rejects_ids_that_do_not_fit_int32():
    # Regression (issue 13, item 2): the int32 user_model() input wrapped 2**32 + 7 to 7.
    model = make_model()
    tower = model.user_model()
    x = make_features(3)
    x.pop("example_age")
    x["watch_history"] = x["watch_history"].astype("int64")
    x["watch_history"][1, 0] = 2**32 + 7
    with pytest.raises(ValueError, match=r"feature 'watch_history' must hold integer ids in "
                                         r"\[-2147483648, 2147483648\), got 1 value"):
        tower.predict(x, verbose=0)


def test_save_is_atomic_and_refuses_unbuilt_or_nan_models(tmp_path):
    # Regression (issue 13, items 12 and 13): `save` wrote in place (a kill left a stub that did
    # not load); an unbuilt model was saved as a file that could not be loaded.
    path = tmp_path / "model.keras"
    with pytest.raises(ValueError, match=r"was never built, so it has no weights to save"):
        make_model().save(path)
    assert not path.exists()
    model = make_model()
    model.build()
    model.save(path)
    good = path.read_bytes()
    # a model whose weights went NaN is refused, and the old file is kept
    model.softmax.output_biases.assign(np.full(NUM_VIDEOS, np.nan, "float32"))
    with pytest.raises(ValueError, match=r"has non-finite weights \(NaN or inf in "
                                         r"candidate_generator\w*/softmax/output_biases\)"):
        model.save(path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_killed_save_keeps_the_old_file_and_the_next_save_cleans_up(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from keras_yt.models import load_model

    path = tmp_path / "model.keras"
    model = make_model(search_num_bins=None)
    model.build()
    model.save(path)
    good = path.read_bytes()
    # A child process that saves over the file and is SIGKILLed half-way through the write.
    script = textwrap.dedent(f"""
        import os, signal, zipfile
        import keras_yt
        from keras_yt.models import CandidateGenerator
        model = CandidateGenerator(num_videos=50_000, video_embedding_dim=64, max_history=4,
                                   hidden_units=(8,), num_sampled=10)
        model.build()
        real_write = zipfile.ZipFile.writestr
        def write_then_die(self, name, data, *a, **k):
            real_write(self, name, data, *a, **k)
            if "weights" in str(getattr(name, "filename", name)):
                os.kill(os.getpid(), signal.SIGKILL)
        zipfile.ZipFile.writestr = write_then_die
        model.save({str(path)!r})
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    assert path.read_bytes() == good
    assert load_model(path).num_videos == NUM_VIDEOS
    stray = [p for p in tmp_path.iterdir() if p.name != "model.keras"]
    assert stray, "the killed save should have left its temporary file"
    model.save(path)  # the next save to the same path removes the dead writer's temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x00" * 1000])
def test_load_model_names_truncated_or_non_zip_files(tmp_path, content):
    # Regression (issue 13, item 15): Keras said "File not found" for a file that exists.
    from keras_yt.models import load_model

    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"broken\.keras' is not a \.keras file \(not a complete "
                                         r"zip archive: truncated or damaged\?\)"):
        load_model(path)


def test_load_model_names_a_truncated_save(tmp_path):
    from keras_yt.models import load_model

    model = make_model(search_num_bins=None)
    model.build()
    model.save(tmp_path / "model.keras")
    data = (tmp_path / "model.keras").read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.keras' is not a \.keras file"):
        load_model(cut)
    with pytest.raises(FileNotFoundError, match=r"model file '.*missing\.keras' does not exist"):
        load_model(tmp_path / "missing.keras")


def test_recent_history_takes_the_last_real_watches_wherever_the_padding_is():
    """Left-, right- and interleaved padding give the same user vector (newest last)."""
    model = CandidateGenerator(num_videos=NUM_VIDEOS, video_embedding_dim=4,
                               max_history=MAX_HISTORY, recent_history=2, hidden_units=(8,),
                               seed=0)
    model.build()
    layouts = np.array([
        [0, 0, 3, 4, 5, 6],  # left-padded (what the data pipeline writes)
        [3, 4, 5, 6, 0, 0],  # right-padded
        [3, 0, 4, 0, 5, 6],  # interleaved
        [0, 3, 4, 0, 5, 6],
    ], "int32")
    u = model.predict({"watch_history": layouts}, verbose=0)
    for row in u[1:]:
        np.testing.assert_allclose(row, u[0], rtol=1e-5, atol=1e-6)
    # order of the real watches still matters: the last two are the recent bag
    swapped = model.predict({"watch_history": np.array([[5, 6, 0, 0, 3, 4]], "int32")},
                            verbose=0)
    assert not np.allclose(swapped[0], u[0], atol=1e-4)


@pytest.mark.parametrize("bad", [2**32 + 2, NUM_VIDEOS, -1])
def test_direct_calls_check_numpy_features_like_predict(bad):
    """model(features) on numpy values names a video id outside the table (no zero vector)."""
    model = make_model()
    features = make_features(n=2)
    features["watch_history"] = features["watch_history"].astype("int64")
    features["watch_history"][1, 0] = bad
    with pytest.raises(ValueError, match=r"feature 'watch_history' must hold"):
        model(features)


@pytest.mark.tf_only
def test_fit_builds_the_model_and_optimizer_before_tracing_the_train_step():
    # Keras' TensorFlow trainer would build both inside the first trace of the train function,
    # where the new variables' initial values stay allocated longer (docs/performance.md).
    for train in ("fit", "train_on_batch"):
        model = make_model()
        model.compile()
        seen = []
        make_train_function = model.make_train_function

        def recording(*args, model=model, make=make_train_function, **kwargs):
            seen.append((model.built, model.optimizer.built))
            return make(*args, **kwargs)

        model.make_train_function = recording
        x, y = make_features(16), np.arange(1, 17)
        if train == "fit":
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        else:
            model.train_on_batch(x, y)
        assert seen and seen[0] == (True, True), (train, seen)
