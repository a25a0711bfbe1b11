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
