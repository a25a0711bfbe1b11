"""`keras-yt demo`: the whole two-stage recommender, end to end, on one data set.

data → training examples (next watch from the watches before it) → candidate generator → Recall@k
/ MAP@k vs popularity → SavedModel of the user tower → PyNNDescent index → top-10 for a few users
→ ranker on impressions (AUC, weighted per-user loss) → a run folder with metrics, models, index
and plots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_yt import data as yt_data
from keras_yt import metrics as yt_metrics
from keras_yt import pipeline
from keras_yt._progress import step as _step
from keras_yt._quiet import show_progress
from keras_yt.data.vocabulary import Vocabulary
from keras_yt.evaluation import LeaveLastOut

DAY = 86400.0


@dataclass(frozen=True)
class DemoSize:
    num_users: int
    num_videos: int
    embedding_dim: int
    hidden_units: tuple
    max_history: int
    epochs: int  # the most; early stopping on the last-but-one watches decides
    ranker_epochs: int


SIZES = {
    "tiny": DemoSize(800, 300, 16, (64, 32), 20, 10, 2),
    "default": DemoSize(2000, 5000, 64, (256, 64), 50, 30, 4),
}

# MovieLens trains the order-aware tower, the best model of the quality benchmark
# (docs/quality.md), on every position of each user's ratings; the synthetic data's search
# queries and demographics are read by the paper's bag tower (`_candidate_generator`).
SEQUENTIAL_PRESETS = {"ml-100k": "movielens_sequential"}


def _done(start: float, timings: dict, name: str) -> None:
    timings[name] = round(time.perf_counter() - start, 2)
    print(f"    done in {timings[name]:.1f} s", flush=True)


def run_demo(
    dataset: str = "synthetic",
    out: Path = Path("runs/demo"),
    size: str = "default",
    epochs: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    ranker: bool = True,
) -> dict:
    """Runs the demo and writes its run folder; returns the metrics dict (also in metrics.json).

    The run folder (`keras_yt.run_folder.RunFolder`) is staged and swapped in at the end, so an
    interrupted demo leaves any previous run at `out` intact.

    Args:
        dataset: `"synthetic"` (the embedded simulator: the paper's bag tower with search
            queries and demographics) or `"ml-100k"` (MovieLens-100K, read from `data_dir` or the
            Keras cache: the `movielens_sequential` preset, causal self-attention over the last
            200 ratings, at size `"default"`).
        out: run folder to write.
        size: `"default"` (a few minutes on 2 cores) or `"tiny"` (seconds; for tests).
        epochs: most candidate-generator epochs (default: by size; MovieLens at size
            `"default"`: the sequence recipe's); early stopping decides.
        seed: seed of the data, the sampler and the index.
        data_dir: folder holding the MovieLens files.
        ranker: also train the ranker on impressions.

    Returns:
        The metrics written to `metrics.json`.

    Example:
    >>> import tempfile, contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     metrics = run_demo(out=tempfile.mkdtemp() + "/demo", size="tiny", ranker=False)
    >>> sorted(metrics["candidate_generator"])
    ['model', 'num_test_users', 'popularity']
    """
    from keras_yt._quiet import load_tensorflow
    from keras_yt.run_folder import RunFolder

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    load_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    config = SIZES[size]
    out = Path(out)
    with RunFolder.create(out) as run:
        metrics = _run(run, dataset, size, config, epochs, seed, data_dir, ranker)
    print(f"\nwrote {out}/: metrics.json, candidate_generator.keras, run.h5, user_tower/, "
          "index.h5" + (", ranker_saved_model/" if ranker else "") + ", *.png")
    return metrics


def _run(run, dataset, size, config, epochs, seed, data_dir, ranker) -> dict:
    folder = run.path
    timings: dict = {}
    start = _step(f"loading the {dataset} data")
    logs = _load(dataset, config, seed, data_dir)
    # Model ids 1..N by decreasing popularity: what the log-uniform negative sampler assumes.
    raw = logs["watches"]
    watches, videos, users = pipeline.index_watch_log(
        {name: raw[name] for name in raw.dtype.names}, logs.get("titles")
    )
    num_videos = videos.size
    print(f"    {len(watches):,} watches by {len(users):,} users of {len(videos):,} videos")
    _done(start, timings, "load")

    preset = SEQUENTIAL_PRESETS.get(dataset)
    max_history = config.max_history
    if preset is not None and size == "default":  # the preset's width and epochs
        from keras_yt.models.presets import load_preset

        max_history = load_preset(preset)["config"]["max_history"]
    elif epochs is None:
        epochs = config.epochs

    def user_features(rows):
        return logs["user_features"](users.raw_ids(rows)) if preset is None else {}

    start = _step("building training examples: each user's next watch from the watches before it")
    queries = _queries_in_model_ids(logs.get("queries"), users)
    # Each user's last watch is the test item, the last but one the validation item; the
    # sequence model reads them after every earlier watch, as its sequences (same second too).
    split = LeaveLastOut(
        watches, max_history=max_history, num_items=num_videos, queries=queries,
        max_queries=5, example_age_reference=logs["window_end"],
        same_time_history=preset is not None,
    )
    test = split.test
    if preset is None:
        examples = yt_data.candidate_examples(
            split.fit_watches, max_history=max_history, max_examples_per_user=None,
            queries=queries, max_queries=5, example_age_reference=logs["window_end"],
            verbose=show_progress(),
        )
        what = "training examples (every next watch)"
    else:  # one window of each user's ratings trains every next watch in it at once
        examples = yt_data.sequence_examples(
            split.fit_watches, max_history=max_history, max_windows_per_user=None,
            verbose=show_progress(),
        )
        what = (f"next watches to train on, in {len(examples['label']):,} sequence windows of "
                f"up to {max_history}")
    for part in (examples, split.validation, test):
        part.update(user_features(part["user"]))
    counts = np.bincount(split.train_watches["video"], minlength=num_videos)
    print(f"    {np.count_nonzero(examples['label']):,} {what}, "
          f"{len(test['label']):,} held-out next watches")
    _done(start, timings, "examples")

    if preset is None:
        model = _candidate_generator(logs, num_videos, config, seed)
        described = "the paper's bag tower"
    else:
        from keras_yt.models import CandidateGenerator

        model = CandidateGenerator.from_preset(preset, num_videos=num_videos,
                                               max_history=max_history, seed=seed)
        described = f"{preset}: causal self-attention over the last {max_history} watches"
    start = _step(f"training the candidate generator ({described}; early stopping on the "
                  "last-but-one watch)")
    history = pipeline.train_candidate_generator(model, examples, split.validation, epochs)
    print(f"    best epoch {history['best_epoch']} of {len(history['loss'])}")
    _done(start, timings, "train_candidate_generator")

    start = _step("evaluating: rank the whole corpus for each held-out next watch")
    watched_in_training = split.seen()
    candidate_metrics = pipeline.evaluate_candidate_generator(
        model, test, counts, exclude=watched_in_training
    )
    for name in ("model", "popularity"):
        shown = {k: round(candidate_metrics[name][k], 4)
                 for k in ("recall@10", "recall@100", "ndcg@10") if k in candidate_metrics[name]}
        print(f"    {name:>10}: {shown}")
    _done(start, timings, "evaluate_candidate_generator")

    start = _step("exporting the user tower as a SavedModel (takes raw video ids)")
    from keras_yt.serving import CandidateIndex, ExactIndex, export_saved_model

    model.save(run.model_path)
    export_saved_model(model, run.user_tower_path, vocabulary=videos)
    _done(start, timings, "export")

    start = _step("building the PyNNDescent index of the output embeddings (first run compiles)")
    index = CandidateIndex.from_model(model, random_state=seed, verbose=show_progress())
    index.save(run.index_path)
    names = [n for n in model.feature_specs() if n != "example_age"]
    user_vectors = model.predict(pipeline.features_of(test, names), verbose=0)
    k = min(100, len(index) - 1)
    approx, _ = index.query(user_vectors, k=k)
    exact, _ = ExactIndex.from_model(model).query(user_vectors, k=k)
    index_recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)]))
    query_start = time.perf_counter()
    index.query(user_vectors[:1], k=10)
    single_ms = 1000 * (time.perf_counter() - query_start)
    how = "exhaustive: a small corpus" if index.exhaustive else "graph search"
    print(f"    recall@{k} of the index vs exact search: {index_recall:.3f} ({how}); "
          f"one query: {single_ms:.1f} ms")
    _done(start, timings, "index")

    _print_recommendations(model, index, test, videos, users, names, watched_in_training)

    ranker_metrics, ranker_history = None, None
    if ranker:
        start = _step("training the ranker on impressions (weighted logistic regression)")
        ranker_metrics, ranker_history = _rank(logs, config, seed, folder)
        _done(start, timings, "ranker")

    start = _step("writing plots and metrics")
    latest = pipeline.latest_features(watches, users.size, max_history, queries)
    features = user_features(np.arange(1, users.size))
    for name, value in features.items():
        latest[name] = np.concatenate([np.zeros((1, *value.shape[1:]), value.dtype), value])
    run.save_data(
        videos=Vocabulary(videos.ids, counts[1:], videos.titles, name="video"),
        users=users,
        watched=(users.raw_ids(watches["user"]), videos.raw_ids(watches["video"])),
        latest=latest,
        test={k: _plain(v) for k, v in test.items()},
        max_history=max_history,
        model=model,
    )
    metrics = {
        "dataset": dataset,
        "size": size,
        "history_encoder": model.history_encoder,
        "candidate_generator": candidate_metrics,
        "index": {f"recall@{k}_vs_exact": index_recall, "single_query_ms": single_ms,
                  "build_seconds": index.build_seconds},
        "timings_seconds": timings,
    }
    if ranker_metrics is not None:
        metrics["ranker"] = ranker_metrics
    run.write_json("history.json", {"candidate_generator": history, "ranker": ranker_history})
    pipeline.plot_training_loss({"candidate generator": history}, folder / "training_loss.png")
    pipeline.plot_recall_curve(candidate_metrics, folder / "recall_at_k.png")
    pipeline.plot_model_vs_popularity(candidate_metrics, folder / "model_vs_popularity.png")
    _done(start, timings, "write")
    run.write_json("metrics.json", metrics)
    return metrics


def _queries_in_model_ids(queries, users):
    """The synthetic search log with user model ids (None stays None)."""
    if queries is None:
        return None
    out = queries.copy()
    out["user"] = users.lookup(queries["user"])
    return out[out["user"] > 0]


# ------------------------------------------------------------------ data


def _load(dataset: str, config: DemoSize, seed: int, data_dir: str | None) -> dict:
    if dataset == "synthetic":
        from keras_yt.datasets import synthetic

        logs = synthetic.watch_logs(
            num_users=config.num_users, num_videos=config.num_videos, seed=seed,
            verbose=show_progress(),
        )
        users = logs.users

        def user_features(ids):
            rows = users[np.asarray(ids) - 1]
            return {
                "geography": rows["geography"].astype("int32"),
                "gender": rows["gender"].astype("int32"),
                "device": rows["device"].astype("int32"),
                "user_age": (rows["age"] / 100.0).astype("float32"),
            }

        return {
            "watches": logs.watches,
            "queries": logs.queries,
            "num_videos": logs.num_videos,
            "window_end": logs.window_end,
            "titles": {int(v["id"]): str(v["title"]) for v in logs.videos},
            "impressions": logs.impressions,
            "user_features": user_features,
            "categorical": {
                "geography": logs.num_geographies, "gender": logs.num_genders,
                "device": logs.num_devices,
            },
            "num_languages": logs.num_languages,
            "num_topics": logs.num_topics,
            "search": True,
        }
    if dataset == "ml-100k":
        from keras_yt.datasets import movielens

        data = movielens.load_data("ml-100k", data_dir=data_dir)
        users = data.users
        by_id = {int(u): i for i, u in enumerate(users["id"])}

        def user_features(ids):
            rows = users[[by_id[int(i)] for i in ids]]
            return {
                "gender": rows["gender_id"].astype("int32"),
                "occupation": rows["occupation_id"].astype("int32"),
                "user_age": (rows["age"] / 100.0).astype("float32"),
            }

        titles = {int(v["id"]): str(v["title"]) for v in data.videos} if len(data.videos) else {}
        return {
            "watches": data.watches,
            "num_videos": data.num_videos,
            "window_end": float(data.watches["timestamp"].max()),
            "titles": titles,
            "impressions": None,
            "user_features": user_features,
            "categorical": {"gender": 3, "occupation": len(data.occupations) + 1},
            "search": False,
        }
    raise ValueError(f"dataset must be 'synthetic' or 'ml-100k', got {dataset!r}")


def _plain(value: np.ndarray) -> np.ndarray:
    """Object arrays (query strings) as fixed-width unicode, so `np.load` needs no pickle."""
    value = np.asarray(value)
    return value.astype(str) if value.dtype == object else value


# ------------------------------------------------------------------ models


def _candidate_generator(logs: dict, num_videos: int, config: DemoSize, seed: int):
    from keras_yt.models import CandidateGenerator

    dim = config.embedding_dim
    return CandidateGenerator(
        num_videos=num_videos,
        video_embedding_dim=dim,
        max_history=config.max_history,
        search_num_bins=4096 if logs["search"] else None,
        search_embedding_dim=dim // 2,
        max_queries=5,
        use_example_age=True,
        example_age_scale=30.0,
        categorical_features={
            name: {"input_dim": int(n), "output_dim": 4} for name, n in logs["categorical"].items()
        },
        continuous_features=["user_age"],
        hidden_units=config.hidden_units,
        recent_history=5,
        dropout=0.3,
        sampler="log_uniform",
        seed=seed,
    )


def _print_recommendations(model, index, test: dict, videos, users, names: list,
                           watched: list) -> None:
    titles = dict(enumerate([""] + videos.titles.tolist())) if videos.titles is not None else {}

    def name(model_id):
        return titles.get(int(model_id)) or str(videos.raw_ids([int(model_id)])[0])

    shown = np.arange(min(3, len(test["label"])))
    features = {n: test[n][shown] for n in names}
    user_vectors = model.predict(features, verbose=0)
    ids, scores = index.query(user_vectors, k=10, exclude=[watched[i] for i in shown])
    for row, user in enumerate(test["user"][shown]):
        recent = [v for v in test["watch_history"][row] if v][-3:]
        print(f"\nuser {users.raw_ids([user])[0]}: last watched {[name(v) for v in recent]}")
        print(f"  held-out next watch: {name(test['label'][row])}")
        print("  top 10:")
        for rank, (video, score) in enumerate(zip(ids[row], scores[row]), start=1):
            if video < 1:
                continue
            mark = "  <-- the held-out next watch" if video == test["label"][row] else ""
            print(f"  {rank:>4}. {name(video)!s:<40} {score:7.3f}{mark}")


def _rank(logs: dict, config: DemoSize, seed: int, out: Path):
    """Trains and evaluates the ranker on the impressions (synthetic data only)."""
    if logs.get("impressions") is None:
        print("    (this data set has no impressions: the ranker is trained on the synthetic data)")
        from keras_yt.datasets import synthetic

        sim = synthetic.watch_logs(num_users=config.num_users, num_videos=config.num_videos,
                                   seed=seed)
        logs = dict(logs, impressions=sim.impressions, watches=sim.watches,
                    num_videos=sim.num_videos, window_end=sim.window_end,
                    num_languages=sim.num_languages, num_topics=sim.num_topics,
                    categorical={"device": sim.num_devices})
    from keras_yt.models import Ranker
    from keras_yt.serving import export_saved_model

    examples = yt_data.ranking_examples(
        logs["impressions"], watches=logs["watches"], max_history=config.max_history,
        verbose=show_progress(),
    )
    examples["previous_impressions"] = examples["previous_impressions"].astype("float32")
    categorical = {
        "language": logs["num_languages"], "user_language": logs["num_languages"],
        "category": logs["num_topics"] + 1, "device": logs["categorical"]["device"],
    }
    # Train on the first 80% of the window, test on the rest (no look-ahead).
    train = examples["timestamp"] < 0.8 * logs["window_end"]
    names = ["video_id", "watch_history", *categorical, "time_since_last_watch",
             "previous_impressions"]
    examples["video_id"] = examples["video"].astype("int32")
    x_train = {n: examples[n][train] for n in names}
    x_test = {n: examples[n][~train] for n in names}
    ranker = Ranker(
        num_videos=logs["num_videos"],
        video_embedding_dim=16,
        max_history=config.max_history,
        categorical_features={n: {"input_dim": int(v), "output_dim": 4}
                              for n, v in categorical.items()},
        continuous_features=["time_since_last_watch", "previous_impressions"],
        num_quantiles=100,
        hidden_units=config.hidden_units,
        seed=seed,
    )
    ranker.adapt(x_train)
    ranker.compile()
    history = ranker.fit(
        x_train, examples["watch_time"][train], batch_size=512, epochs=config.ranker_epochs,
        verbose=pipeline.progress_verbosity(),
    )
    export_saved_model(ranker, out / "ranker_saved_model")
    ranker.save(out / "ranker.keras")

    predicted = ranker.predict(x_test, verbose=0, batch_size=4096)[:, 0]
    users = examples["user"][~train]
    clicked = examples["clicked"][~train].astype(bool)
    watch_time = examples["watch_time"][~train]
    rng = np.random.default_rng(seed)
    click_counts = np.bincount(examples["video"][train][examples["clicked"][train] > 0],
                               minlength=logs["num_videos"])

    def scores(s):
        return {
            "auc": float(yt_metrics.auc(clicked, s)),
            "weighted_per_user_loss": float(
                yt_metrics.weighted_per_user_loss(users, clicked, watch_time, s)
            ),
        }

    result = {
        "num_train_impressions": int(train.sum()),
        "num_test_impressions": int((~train).sum()),
        "model": scores(predicted),
        "random": scores(rng.uniform(size=len(predicted))),
        "popularity": scores(click_counts[examples["video"][~train]].astype("float64")),
        "mean_predicted_watch_time": float(predicted.mean()),
        "mean_watch_time": float(watch_time.mean()),
    }
    for name in ("model", "popularity", "random"):
        print(f"    {name:>10}: AUC {result[name]['auc']:.3f}, weighted per-user loss "
              f"{result[name]['weighted_per_user_loss']:.3f}")
    return result, {k: [float(v) for v in vs] for k, vs in history.history.items()}
