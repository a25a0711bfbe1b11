"""Trains / reloads the models in a process of a given backend, for the cross-backend tests.

    KERAS_BACKEND=jax python -m tests.models.cross_backend_worker train candidate OUT_DIR
    KERAS_BACKEND=tensorflow python -m tests.models.cross_backend_worker predict candidate MODEL OUT

`train` fits the model for two epochs on fixed features and writes `OUT_DIR/model.keras` and
`OUT_DIR/predictions.npy`; `predict` loads a `.keras` file and writes its predictions on the same
features. The features are generated from fixed seeds, so both processes see the same inputs.
"""

import sys

import keras
import numpy as np

import keras_yt  # noqa: F401  (registers the classes for load_model)
from keras_yt.models import CandidateGenerator, Ranker

NUM_VIDEOS = 60


def candidate_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    history = rng.integers(0, NUM_VIDEOS, size=(n, 5)).astype("int32")
    words = np.array(["funny cats", "cat video", "", "guitar lesson", "news today"])
    x = {
        "watch_history": history,
        "search_history": words[rng.integers(0, len(words), size=(n, 3))],
        "example_age": rng.uniform(0, 30, size=n).astype("float32"),
        "geography": rng.integers(0, 4, size=n).astype("int32"),
        "user_age": rng.uniform(0, 1, size=n).astype("float32"),
    }
    return x, rng.integers(1, NUM_VIDEOS, size=n).astype("int32")


def ranker_data(n=64, seed=1):
    rng = np.random.default_rng(seed)
    x = {
        "video_id": rng.integers(1, NUM_VIDEOS, size=n).astype("int32"),
        "watch_history": rng.integers(0, NUM_VIDEOS, size=(n, 5)).astype("int32"),
        "video_language": rng.integers(0, 4, size=n).astype("int32"),
        "time_since_last_watch": rng.exponential(3, size=n).astype("float32"),
        "previous_impressions": rng.poisson(2, size=n).astype("float32"),
    }
    return x, np.where(rng.uniform(size=n) < 0.3, rng.exponential(30, size=n), 0.0)


def make_model(kind: str):
    if kind == "candidate":
        return CandidateGenerator(
            num_videos=NUM_VIDEOS, video_embedding_dim=8, max_history=5, search_num_bins=32,
            search_embedding_dim=4, max_queries=3,
            categorical_features={"geography": {"input_dim": 4, "output_dim": 2}},
            continuous_features=["user_age"], hidden_units=(16, 8), num_sampled=12, seed=1,
        )
    return Ranker(
        num_videos=NUM_VIDEOS, video_embedding_dim=4, max_history=5,
        categorical_features={"video_language": {"input_dim": 4, "output_dim": 2}},
        continuous_features=["time_since_last_watch", "previous_impressions"],
        num_quantiles=20, hidden_units=(16, 8), seed=0,
    )


def data(kind: str):
    return candidate_data() if kind == "candidate" else ranker_data()


def serving_features(kind: str) -> dict:
    """What `predict` is given: the candidate generator's serving features (no example age)."""
    x, _ = data(kind)
    return {k: v for k, v in x.items() if k != "example_age"}


def predict(model, kind: str) -> np.ndarray:
    """User vectors (candidate generator) or logits = log(expected watch time) (ranker).

    The ranker's logits are compared rather than exp(logit) (values up to ~40 here, where
    float32's spacing alone is 4e-6).
    """
    if kind == "candidate":
        return model.user_model().predict(serving_features(kind), verbose=0)
    return np.log(model.predict(serving_features(kind), verbose=0))


def train(kind: str, out_dir: str) -> None:
    keras.utils.set_random_seed(0)
    model = make_model(kind)
    x, y = data(kind)
    if kind == "ranker":
        model.adapt(x)
    model.compile()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.save(f"{out_dir}/model.keras")
    np.save(f"{out_dir}/predictions.npy", predict(model, kind))


def main(argv: list[str]) -> None:
    command, kind, *paths = argv
    if command == "train":
        train(kind, paths[0])
    elif command == "predict":
        model = keras.saving.load_model(paths[0])
        np.save(paths[1], predict(model, kind))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
