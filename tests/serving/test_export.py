"""SavedModel export: reloaded in a fresh process that imports TensorFlow only."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_yt.models import CandidateGenerator, Ranker
from keras_yt.serving import export_saved_model

RELOAD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    path, signature, features_file, out_file = sys.argv[1:]
    loaded = tf.saved_model.load(path)
    features = dict(np.load(features_file, allow_pickle=False))
    features = {k: tf.constant(v) for k, v in features.items()}
    outputs = loaded.signatures[signature](**features)
    assert "keras_yt" not in sys.modules, "the SavedModel must not need keras_yt"
    np.savez(out_file, **{k: v.numpy() for k, v in outputs.items()})
    """
)


def reload_in_fresh_process(path, signature, features, tmp_path):
    features_file, out_file = tmp_path / "features.npz", tmp_path / "out.npz"
    np.savez(features_file, **features)
    subprocess.run(
        [sys.executable, "-c", RELOAD, str(path), signature, str(features_file), str(out_file)],
        check=True,
        cwd=tmp_path,
    )
    return dict(np.load(out_file))


def test_user_tower_saved_model_reproduces_user_vectors(tmp_path):
    model = CandidateGenerator.from_preset("tiny_candidate")
    model.build()
    rng = np.random.default_rng(0)
    features = {
        "watch_history": rng.integers(0, 100, size=(4, 5)).astype("int32"),
        "search_history": np.array([["cat videos", ""], ["", ""], ["guitar", "a b"], ["x", "y"]])[
            :, [0, 1, 1]
        ],
        "geography": np.array([0, 1, 2, 3], "int32"),
        "user_age": rng.uniform(size=4).astype("float32"),
    }
    expected = model.user_model().predict(features, verbose=0)
    path = export_saved_model(model, tmp_path / "user_tower")
    for signature in ("user_vector", "serving_default"):
        out = reload_in_fresh_process(path, signature, features, tmp_path)
        np.testing.assert_allclose(out["user_vector"], expected, atol=1e-5)


def test_ranker_saved_model_reproduces_watch_time(tmp_path):
    model = Ranker.from_preset("tiny_ranker")
    rng = np.random.default_rng(1)
    features = {
        "video_id": rng.integers(1, 100, size=6).astype("int32"),
        "watch_history": rng.integers(0, 100, size=(6, 5)).astype("int32"),
        "video_language": rng.integers(0, 4, size=6).astype("int32"),
        "time_since_last_watch": rng.exponential(3, size=6).astype("float32"),
        "previous_impressions": rng.poisson(2, size=6).astype("float32"),
    }
    model.adapt(features)
    expected = model.predict(features, verbose=0)
    path = export_saved_model(model, tmp_path / "ranker")
    out = reload_in_fresh_process(path, "watch_time", features, tmp_path)
    np.testing.assert_allclose(out["watch_time"], expected, rtol=1e-5)


def test_export_rejects_other_models(tmp_path):
    import keras

    with pytest.raises(ValueError, match="takes a CandidateGenerator or a Ranker, got Sequential"):
        export_saved_model(keras.Sequential([keras.layers.Dense(1)]), tmp_path / "x")


def test_exported_user_tower_takes_raw_string_ids(tiny_run, tmp_path):
    """CSV of string ids → train → `keras-yt export` → plain TensorFlow, raw ids in."""
    from keras_yt.cli import main
    from keras_yt.run_folder import RunFolder

    run = RunFolder(tmp_path / "run")
    import shutil

    shutil.copytree(tiny_run, run.path)
    assert main(["export", "--run", str(run.path)]) == 0
    model, videos = run.load_model(), run.videos
    assert videos.is_string
    max_history = model.max_history
    raw = np.full((3, max_history), "", dtype=object)  # "" pads
    raw[0, -3:] = ["v3", "v4", "v5"]
    raw[1, -2:] = ["v7", "not-a-video"]  # unknown ids count as no watch
    raw[2, :] = [f"v{i % 30}" for i in range(max_history)]
    out = reload_in_fresh_process(run.user_tower_path, "user_vector",
                                  {"watch_history": raw.astype(str)}, tmp_path)
    model_ids = videos.lookup(raw.astype(str)).astype("int32")
    assert model_ids[1, -1] == 0 and model_ids[0, -1] > 0
    expected = model.user_model().predict({"watch_history": model_ids}, verbose=0)
    np.testing.assert_allclose(out["user_vector"], expected, atol=1e-5)


def test_exported_user_tower_takes_64_bit_integer_ids(tmp_path):
    from keras_yt.data import Vocabulary

    videos = Vocabulary.from_ids([0, 2**40 + 1, 2**31, 2**31, 12, 12, 12])
    model = CandidateGenerator(num_videos=videos.size, video_embedding_dim=4, max_history=4,
                               hidden_units=(8,), num_sampled=2)
    model.build()
    raw = np.array([[-1, -1, 0, 2**40 + 1], [2**31, 12, 2**40 + 1, 0], [-1, -1, -1, 7]],
                   dtype=np.int64)
    out = reload_in_fresh_process(export_saved_model(model, tmp_path / "t", vocabulary=videos),
                                  "user_vector", {"watch_history": raw}, tmp_path)
    expected = model.user_model().predict(
        {"watch_history": videos.lookup(raw).astype("int32")}, verbose=0)
    np.testing.assert_allclose(out["user_vector"], expected, atol=1e-6)
    with pytest.raises(ValueError, match="vocabulary has 4 videos but the model has num_videos=9"):
        export_saved_model(CandidateGenerator(num_videos=9, video_embedding_dim=4, max_history=4,
                                              hidden_units=(8,), num_sampled=2),
                           tmp_path / "u", vocabulary=videos)


def test_exported_user_tower_answers_the_same_for_any_padding_position(tmp_path):
    """Raw ids right-, left- or interleaved with padding / unknown ids: the same user vector."""
    from keras_yt.data import Vocabulary

    videos = Vocabulary.from_ids([2**40 + i for i in range(1, 9)])
    model = CandidateGenerator(num_videos=videos.size, video_embedding_dim=4, max_history=5,
                               recent_history=2, hidden_units=(8,), num_sampled=2, seed=0)
    model.build()
    a, b, c = 2**40 + 1, 2**40 + 5, 2**40 + 7
    raw = np.array([[-1, -1, a, b, c], [a, b, c, -1, -1], [a, -1, b, 99, c]], dtype=np.int64)
    out = reload_in_fresh_process(export_saved_model(model, tmp_path / "t", vocabulary=videos),
                                  "user_vector", {"watch_history": raw}, tmp_path)
    for row in out["user_vector"][1:]:
        np.testing.assert_allclose(row, out["user_vector"][0], atol=1e-6)
    expected = model.user_model().predict(
        {"watch_history": videos.lookup(raw[:1]).astype("int32")}, verbose=0)
    np.testing.assert_allclose(out["user_vector"][:1], expected, atol=1e-6)
