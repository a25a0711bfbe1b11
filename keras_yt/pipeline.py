"""The steps of the main job, shared by `keras-yt demo` and the `train/evaluate/...` commands.

Each function does one step on plain numpy data; `keras_yt.cli` and `keras_yt.demo` string them
together and write a `keras_yt.run_folder.RunFolder`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from keras_yt import data as yt_data
from keras_yt.data.vocabulary import Vocabulary

K_VALUES = (1, 5, 10, 20, 50, 100)


def progress_verbosity() -> int:
    """Keras `verbose`: a live progress bar on a terminal, one line per epoch otherwise."""
    return 1 if sys.stdout.isatty() else 2


# ------------------------------------------------------------------ vocabulary


def build_vocabulary(watches: np.ndarray, titles: dict | None = None) -> Vocabulary:
    """Model ids 1..N for the videos of a watch log, most watched first (0 is padding)."""
    return Vocabulary.from_ids(watches["video"], titles, name="video")


def remap_watches(watches: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """The log with video model ids; watches of videos not in the vocabulary are dropped."""
    out = watches.copy()
    out["video"] = vocabulary.lookup(watches["video"])
    return out[out["video"] > 0]


def index_watch_log(
    raw: dict, titles: dict | None = None
) -> tuple[np.ndarray, Vocabulary, Vocabulary]:
    """A log with raw ids (`keras_yt.data.read_raw_watch_log`) in model ids.

    Returns:
        `(watches, videos, users)`: a `WATCH_DTYPE` log whose `user` and `video` are model ids
        (users numbered 1..U by decreasing activity), and the two vocabularies.
    """
    videos = Vocabulary.from_ids(raw["video"], titles, name="video")
    users = Vocabulary.from_ids(raw["user"], name="user")
    watches = np.empty(len(raw["user"]), dtype=yt_data.WATCH_DTYPE)
    watches["user"] = users.lookup(raw["user"])
    watches["video"] = videos.lookup(raw["video"])
    watches["timestamp"] = raw["timestamp"]
    watches["watch_time"] = raw["watch_time"]
    return watches, videos, users


# ------------------------------------------------------------------ candidate generator


def features_of(examples: dict, feature_names) -> dict:
    return {name: examples[name] for name in feature_names if name in examples}


def train_candidate_generator(
    model, examples: dict, validation: dict | None, epochs: int | None = None,
    batch_size: int | None = None,
) -> dict:
    """Fits `model` with the library's recipe (`keras_yt.training.fit_candidate_generator`):
    early stopping on `validation`, batch size scaled to the data; returns the history dict."""
    from keras_yt.training import fit_candidate_generator

    return fit_candidate_generator(
        model, examples, validation=validation, epochs=epochs,
        batch_size=batch_size, verbose=progress_verbosity(),
    )


def evaluate_candidate_generator(
    model, test: dict, counts: np.ndarray, exclude: list | None = None
) -> dict:
    """Leave-last-out metrics of the model and of a popularity baseline on the same test users.

    Every video is ranked for each held-out watch (`keras_yt.evaluation.held_out_ranks`). The
    headline metrics leave out what each user watched in training (`exclude`: one list of video
    model ids per test user; the held-out video itself stays a candidate), as serving does; the
    same metrics with nothing left out are under `"unfiltered"`. `recall@k` is the hit rate (one
    held-out watch per user).
    """
    from keras_yt.evaluation import held_out_ranks

    names = [n for n in model.feature_specs() if n != "example_age"]
    scores = {
        "model": model.video_scores(features_of(test, names)),
        "popularity": np.broadcast_to(
            np.asarray(counts, dtype="float32"), (len(test["label"]), model.num_videos)
        ),
    }
    out = {"num_test_users": int(len(test["label"]))}
    for name, s in scores.items():
        out[name] = _metrics(held_out_ranks(s, test["label"], exclude))
        out[name]["unfiltered"] = _metrics(held_out_ranks(s, test["label"]))
    return out


def _metrics(ranks: np.ndarray) -> dict:
    from keras_yt.evaluation import metrics_from_ranks

    values = metrics_from_ranks(ranks, K_VALUES)
    return {name.replace("hr@", "recall@"): value for name, value in values.items()}


def latest_features(
    watches: np.ndarray, num_user_rows: int, max_history: int, queries=None
) -> dict:
    """Each user's serving features, one row per user model id (row 0: the unknown user).

    `watch_history` holds the last `max_history` watches (model ids, left-padded, newest last;
    ties in time in the log's order), all of them: at serving time every watch is in the past,
    those in the same second as the latest one too. With `queries`, `search_history` holds the
    last 5 search queries before the latest watch. `watches["user"]` must be user model ids
    `< num_user_rows`.
    """
    examples = yt_data.leave_last_out_split(
        watches, max_history=max_history, min_history=0, queries=queries,
        same_time_history=True,
    )[1]
    # leave_last_out_split holds out the last watch: put it back at the end of the history.
    history = np.concatenate([examples["watch_history"], examples["label"][:, None]], axis=1)
    rows = np.asarray(examples["user"], np.int64)
    latest = {"watch_history": np.zeros((num_user_rows, max_history), np.int32)}
    latest["watch_history"][rows] = history[:, 1:]
    if queries is not None:
        search = np.asarray(examples["search_history"]).astype(str)
        latest["search_history"] = np.full((num_user_rows, *search.shape[1:]), "", dtype=str)
        latest["search_history"] = latest["search_history"].astype(search.dtype)
        latest["search_history"][rows] = search
    return latest


# ------------------------------------------------------------------ plots


def plot_training_loss(histories: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, history in histories.items():
        ax.plot(np.arange(1, len(history["loss"]) + 1), history["loss"], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_recall_curve(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in ("model", "popularity"):
        ks = [k for k in K_VALUES if f"recall@{k}" in metrics[name]]
        ax.plot(ks, [metrics[name][f"recall@{k}"] for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k (held-out next watch)")
    ax.set_title("Candidate generation: model vs popularity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_model_vs_popularity(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("recall@10", "mrr@10", "ndcg@10", "recall@100")
             if n in metrics["model"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(x - 0.2, [metrics["model"][n] for n in names], 0.4, label="model")
    ax.bar(x + 0.2, [metrics["popularity"][n] for n in names], 0.4, label="popularity")
    ax.set_xticks(x, names)
    ax.set_title("Model vs popularity baseline")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
