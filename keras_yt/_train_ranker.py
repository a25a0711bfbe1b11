"""`keras-yt train-ranker`: the ranker of Covington et al. (2016, §4) on one's own impressions log.

The log is read and checked (`keras_yt.data.read_raw_impressions`), split by time, turned into
causal ranking examples (`keras_yt.data.ranking_examples`) and mapped to model ids with
`keras_yt.data.Vocabulary` before TensorFlow loads, so that a bad log fails in about a second.
The output folder is staged next to its destination and renamed into place at the end (a failed
or interrupted run leaves an earlier folder intact); it holds:

* ``ranker.keras`` - the trained `keras_yt.models.Ranker` (`keras_yt.models.load_model`),
* ``videos.h5`` - the video `Vocabulary` (raw video id -> the model's ``video_id``; every id
  unknown to it, and the padding of ``watch_history``, is 0),
* ``vocabularies/NAME.h5`` - one `Vocabulary` per categorical feature column,
* ``ranker.json`` - the features the model reads, the split, what was read and the held-out
  metrics (AUC and the paper's weighted per-user loss).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from keras_yt._files import staged_folder
from keras_yt._progress import done as _done
from keras_yt._progress import step as _step

MARKER = "ranker.json"
RESERVED = ("video_id", "watch_history", "time_since_last_watch", "previous_impressions")
MISSING_TIME = -1.0  # time_since_last_watch of an impression with no earlier click


def check_target(out: str | os.PathLike) -> Path:
    """The output folder as a Path; an existing file or foreign non-empty folder is refused."""
    path = Path(os.path.realpath(out))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is an existing file: choose an output folder")
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).is_file():
        raise ValueError(f"{str(path)!r} is a non-empty folder that is not a folder of "
                         "keras-yt train-ranker; refusing to replace it: choose a new or empty "
                         "folder")
    return path


def prepare(log: str, categorical: list[str], max_history: int, test_fraction: float) -> dict:
    """Reads the log and builds the model inputs (numpy only: no TensorFlow)."""
    from keras_yt.data import Vocabulary, ranking_examples, read_raw_impressions
    from keras_yt.data.impression_log import IMPRESSION_LOG_COLUMNS

    start = _step(f"reading {log}")
    raw = read_raw_impressions(log, categorical=categorical)
    n = len(raw["user"])
    if n == 0:
        raise ValueError(f"the impressions log {log!r} has no rows")
    continuous = [c for c in raw if c not in IMPRESSION_LOG_COLUMNS and c not in categorical]
    clash = [c for c in (*categorical, *continuous) if c in RESERVED]
    if clash:
        raise ValueError(f"feature column(s) {clash} of {log!r} have the names of features the "
                         f"ranker computes ({list(RESERVED)}): rename them")
    clicks = int(raw["clicked"].sum())
    all_videos = Vocabulary.from_ids(raw["video"], name="video")
    _, user_rows = np.unique(raw["user"], return_inverse=True)
    kinds = "string" if all_videos.is_string else "integer"
    print(f"    {n:,} impressions, {int(user_rows.max()) + 1:,} users, {all_videos.size - 1:,} "
          f"videos ({kinds} ids); {clicks:,} clicked ({clicks / n:.3f}); categorical features "
          f"{categorical or 'none'}, continuous features {continuous or 'none'}")
    keys = np.stack([user_rows, all_videos.lookup(raw["video"]),
                     raw["timestamp"].view(np.int64)], axis=1)
    duplicates = n - len(np.unique(keys, axis=0))
    if duplicates:
        print(f"    {duplicates:,} rows repeat the (user, video, timestamp) of an earlier row: "
              "kept, each counts as an impression")
    unwatched = int(((raw["clicked"] == 1) & (raw["watch_time"] == 0)).sum())
    if unwatched:
        print(f"    {unwatched:,} clicked impressions have watch time 0: positives of weight 0 "
              "in the loss")

    # Held out: the last `test_fraction` of the impressions in time (no look-ahead).
    order = np.sort(raw["timestamp"])
    cutoff = order[min(n - 1, int(round(n * (1 - test_fraction))))]
    test = raw["timestamp"] >= cutoff
    if test.all():
        raise ValueError(f"every impression of {log!r} has the same time, {cutoff}: the "
                         "held-out split is by time and needs impressions at two times at least")
    train = ~test
    print(f"    training on the {int(train.sum()):,} impressions before t = {cutoff:g}, "
          f"testing on the {int(test.sum()):,} from then on (--test-fraction {test_fraction})")

    # Causal features from every impression (a test impression sees the clicks before it).
    examples = ranking_examples(
        {"user": user_rows, "video": all_videos.lookup(raw["video"]),
         "timestamp": raw["timestamp"], "clicked": raw["clicked"],
         "watch_time": raw["watch_time"]},
        max_history=max_history, missing_time=MISSING_TIME,
    )
    # Model ids: videos and categories of the training part only; the others are 0 (unknown).
    videos = Vocabulary.from_ids(raw["video"][train], name="video")
    remap = np.concatenate([[0], videos.lookup(all_videos.ids)]).astype(np.int64)
    x = {
        "video_id": remap[examples["video"]].astype(np.int32),
        "watch_history": remap[examples["watch_history"]].astype(np.int32),
        "time_since_last_watch": examples["time_since_last_watch"].astype(np.float32),
        "previous_impressions": examples["previous_impressions"].astype(np.float32),
    }
    unknown = int((x["video_id"][test] == 0).sum())
    if unknown:
        print(f"    {unknown:,} test impressions show videos never shown in training (scored "
              "with the unknown video id 0)")
    vocabularies = {}
    for name in categorical:
        vocabularies[name] = Vocabulary.from_ids(raw[name][train], name=name)
        x[name] = vocabularies[name].lookup(raw[name]).astype(np.int32)
    for name in continuous:
        x[name] = raw[name].astype(np.float32)
    _done(start)
    return {"x": x, "target": examples["watch_time"], "clicked": examples["clicked"],
            "users": user_rows, "train": train, "test": test, "cutoff": float(cutoff),
            "videos": videos, "vocabularies": vocabularies, "continuous": continuous,
            "read": {"impressions": n, "clicked": clicks, "duplicates": duplicates,
                     "users": int(user_rows.max()) + 1, "videos": all_videos.size - 1,
                     "test_impressions_of_unknown_videos": unknown}}


def _scores(data: dict, scores: np.ndarray) -> dict:
    from keras_yt import metrics

    test = data["test"]
    clicked = data["clicked"][test].astype(bool)
    result = {}
    if clicked.all() or not clicked.any():
        result["auc"] = None  # one class only
    else:
        result["auc"] = float(metrics.auc(clicked, scores))
    loss = metrics.weighted_per_user_loss(data["users"][test], clicked, data["target"][test],
                                          scores)
    result["weighted_per_user_loss"] = None if np.isnan(loss) else float(loss)
    return result


def train_and_save(args, data: dict, out: Path) -> None:
    """Trains the ranker, evaluates it on the held-out impressions and writes `out`."""
    import keras

    from keras_yt.models import Ranker

    start = _step("training the ranker (weighted logistic regression on watch time)")
    keras.utils.set_random_seed(args.seed)
    train, test = data["train"], data["test"]
    x_train = {k: v[train] for k, v in data["x"].items()}
    x_test = {k: v[test] for k, v in data["x"].items()}
    categorical = {name: {"input_dim": vocab.size, "output_dim": args.embedding_dim}
                   for name, vocab in data["vocabularies"].items()}
    continuous = ["time_since_last_watch", "previous_impressions", *data["continuous"]]
    model = Ranker(
        num_videos=data["videos"].size, video_embedding_dim=args.embedding_dim,
        max_history=args.max_history, categorical_features=categorical,
        continuous_features=continuous, num_quantiles=min(1000, max(2, int(train.sum()))),
        hidden_units=args.hidden_units, seed=args.seed,
    )
    model.adapt(x_train)
    model.compile()
    from keras_yt.pipeline import progress_verbosity

    history = model.fit(x_train, data["target"][train], batch_size=args.batch_size,
                        epochs=args.epochs, verbose=progress_verbosity())
    losses = [float(v) for v in history.history["loss"]]
    print(f"    weighted logistic loss: epoch 1 {losses[0]:.3f} -> epoch {len(losses)} "
          f"{losses[-1]:.3f}")
    _done(start)

    start = _step(f"evaluating on the {int(test.sum()):,} held-out impressions")
    predicted = model.predict(x_test, batch_size=4096, verbose=0)[:, 0]  # exp(logit)
    clicks = np.bincount(x_train["video_id"][data["clicked"][train] == 1],
                         minlength=data["videos"].size).astype(np.float64)
    results = {"model": _scores(data, predicted),
               "popularity": _scores(data, clicks[x_test["video_id"]])}
    for name, result in results.items():
        shown = ", ".join(f"{label} " + ("n/a" if result[k] is None else f"{result[k]:.3f}")
                          for k, label in (("auc", "AUC"),
                                           ("weighted_per_user_loss", "weighted per-user loss")))
        print(f"    {name:>10}: {shown}")
    if results["model"]["auc"] is None:
        print("    (AUC n/a: the held-out impressions are all clicked or all not clicked)")
    _done(start)

    description = {
        "format": "keras_yt.train_ranker", "version": 1,
        "log": os.fspath(args.log),
        "inputs": {
            "video_id": "model id of the shown video (videos.h5; 0 = unknown)",
            "watch_history": f"model ids of the user's last {args.max_history} clicked "
                             "videos strictly before the impression, left-padded with 0, newest "
                             "last",
            "time_since_last_watch": "seconds since the user's last click strictly before the "
                                     f"impression ({MISSING_TIME} when none)",
            "previous_impressions": "times this video was shown to this user before",
            **{name: f"model id of the {name} (vocabularies/{name}.h5; 0 = unknown)"
               for name in categorical},
            **{name: "the log's column, as is" for name in data["continuous"]},
        },
        "max_history": args.max_history,
        "categorical_features": list(categorical),
        "continuous_features": continuous,
        "split": {"test_from_timestamp": data["cutoff"], "train": int(train.sum()),
                  "test": int(test.sum())},
        "read": data["read"],
        "metrics": results,
        "history": {"loss": losses},
    }
    with staged_folder(out, "ranker") as stage:
        from keras_yt.models.saving import save_model

        save_model(model, stage / "ranker.keras")
        data["videos"].save(stage / "videos.h5")
        if data["vocabularies"]:
            (stage / "vocabularies").mkdir()
            for name, vocab in data["vocabularies"].items():
                vocab.save(stage / "vocabularies" / f"{name}.h5")
        (stage / MARKER).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}/ (ranker.keras, videos.h5, ranker.json)")
