"""The steps of the main job, shared by `keras-yt demo` and the `train/evaluate/...` commands.

Each function does one step on plain numpy data and a run folder; `keras_yt.cli` strings them
together. A run folder holds:

* `candidate_generator.keras` – the trained model;
* `vocabulary.npz` – `videos`: the original video id of each model id (model id i ↔ `videos[i]`,
  i ≥ 1; ids are ordered by decreasing popularity so the log-uniform sampler fits them),
  `counts`: training watches per model id, `titles` (optional);
* `histories.npz` – each user's latest watches (model ids), for `recommend`;
* `test.npz` – the held-out last watch of each user (`keras_yt.data.leave_last_out_split`);
* `metrics.json`, `history.json`, `user_tower/` (SavedModel), `index.h5`, `*.png`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

from keras_yt import data as yt_data
from keras_yt import metrics as yt_metrics

K_VALUES = (1, 5, 10, 20, 50, 100)
MODEL_FILE = "candidate_generator.keras"


def progress_verbosity() -> int:
    """Keras `verbose`: a live progress bar on a terminal, one line per epoch otherwise."""
    return 1 if sys.stdout.isatty() else 2


# ------------------------------------------------------------------ vocabulary


def build_vocabulary(watches: np.ndarray, titles: dict | None = None) -> dict:
    """Model ids 1..N for the videos of a watch log, most watched first (0 is padding)."""
    videos, counts = np.unique(watches["video"], return_counts=True)
    order = np.lexsort((videos, -counts))
    vocabulary = {
        "videos": np.concatenate([[-1], videos[order]]).astype("int64"),
        "counts": np.concatenate([[0], counts[order]]).astype("int64"),
    }
    if titles:
        vocabulary["titles"] = np.array([""] + [titles.get(int(v), "") for v in videos[order]])
    return vocabulary


def to_model_ids(vocabulary: dict, raw_ids: np.ndarray) -> np.ndarray:
    """Maps original video ids to model ids; unknown videos map to 0 (padding / unknown)."""
    videos = vocabulary["videos"][1:]
    order = np.argsort(videos)
    position = np.searchsorted(videos[order], raw_ids)
    position = np.clip(position, 0, len(videos) - 1)
    found = videos[order][position] == raw_ids
    return np.where(found, order[position] + 1, 0).astype("int64")


def remap_watches(watches: np.ndarray, vocabulary: dict) -> np.ndarray:
    out = watches.copy()
    out["video"] = to_model_ids(vocabulary, watches["video"])
    return out[out["video"] > 0]


# ------------------------------------------------------------------ candidate generator


def features_of(examples: dict, feature_names) -> dict:
    return {name: examples[name] for name in feature_names if name in examples}


def train_candidate_generator(
    model, examples: dict, epochs: int, batch_size: int, validation: dict | None = None
) -> dict:
    """Fits `model` on candidate examples; returns the Keras history dict."""
    names = list(model.feature_specs())
    model.compile()
    fit_kwargs = {}
    if validation is not None:
        fit_kwargs["validation_data"] = (features_of(validation, names), validation["label"])
    history = model.fit(
        features_of(examples, names),
        examples["label"],
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=progress_verbosity(),
        **fit_kwargs,
    )
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def retrieval_metrics(ranked_ids: np.ndarray, labels: np.ndarray) -> dict:
    """Recall@k, MAP@k and NDCG@k (one relevant video per user) for every k in `K_VALUES`."""
    out = {}
    for k in K_VALUES:
        if k > ranked_ids.shape[1]:
            continue
        out[f"recall@{k}"] = float(yt_metrics.recall_at_k(ranked_ids, labels, k))
        out[f"map@{k}"] = float(yt_metrics.map_at_k(ranked_ids, labels, k))
        out[f"ndcg@{k}"] = float(yt_metrics.ndcg_at_k(ranked_ids, labels, k))
    return out


def evaluate_candidate_generator(model, test: dict, counts: np.ndarray) -> dict:
    """Full-corpus retrieval metrics of the model and of a popularity baseline, same test users.

    Both rank every video except those already in the user's history.
    """
    from keras_yt.serving import ExactIndex

    k = min(max(K_VALUES), model.num_videos - 1)
    names = [n for n in model.feature_specs() if n != "example_age"]
    user_vectors = model.predict(features_of(test, names), verbose=0, batch_size=1024)
    exclude = test["watch_history"]
    ranked, _ = ExactIndex.from_model(model).query(user_vectors, k=k, exclude=exclude)
    popularity = np.asarray(counts, dtype="float32").copy()
    popularity[0] = -np.inf
    popular_ranked = yt_metrics.rank_top_k(
        np.broadcast_to(popularity, (len(exclude), len(popularity))), k, exclude=exclude
    )
    return {
        "num_test_users": int(len(test["label"])),
        "model": retrieval_metrics(ranked, test["label"]),
        "popularity": retrieval_metrics(popular_ranked, test["label"]),
    }


def latest_histories(watches: np.ndarray, max_history: int, queries=None) -> dict:
    """Each user's last `max_history` watches (model ids, left-padded, newest last), and with
    `queries` the last 5 search queries before the latest watch: the features to recommend from.
    """
    examples = yt_data.leave_last_out_split(
        watches, max_history=max_history, min_history=0, queries=queries
    )[1]
    # leave_last_out_split holds out the last watch: put it back at the end of the history.
    history = np.concatenate([examples["watch_history"], examples["label"][:, None]], axis=1)
    latest = {"user": examples["user"], "watch_history": history[:, 1:].astype("int32")}
    if queries is not None:
        latest["search_history"] = examples["search_history"]
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

    names = [n for n in ("recall@10", "map@10", "ndcg@10", "recall@100")
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


# ------------------------------------------------------------------ run folder


def save_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True))


def load_run(run: Path):
    """(model, vocabulary) of a run folder, with a clear error if it is not one."""
    run = Path(run)
    if not (run / MODEL_FILE).is_file() or not (run / "vocabulary.npz").is_file():
        raise ValueError(
            f"{str(run)!r} is not a keras-yt run folder (expected {MODEL_FILE} and "
            "vocabulary.npz; create one with `keras-yt train`)"
        )
    model = keras.saving.load_model(run / MODEL_FILE)
    vocabulary = dict(np.load(run / "vocabulary.npz", allow_pickle=False))
    return model, vocabulary
