"""Warm-start training: a new run from an old one on a grown watch log (the paper's §3.3).

A production recommender is retrained on a log that has grown since the last run: new videos,
new users, new watches. `warm_start` starts the new run from the old one instead of from nothing:

* **Vocabularies grow** (`keras_yt.data.Vocabulary.grow`): every raw id of the old run keeps its
  model id; the videos and users first seen in the grown log are appended after them (model ids
  `N+1..`, by decreasing count).
* **Weights are carried over** (`carry_over_weights`, in `keras_yt.carry_over`), generically:
  each variable of the new model is matched by its path to the old model's; an axis whose size
  changed from the old to the new vocabulary size is a video (or user) axis, and along it rows
  `0..N` are copied bit-identically while the appended rows are initialised. Everything else
  (the ReLU tower, the categorical tables, an attention tower's weights) is copied as it is. So
  the same code grows the bag model, a sequential history encoder, or a table of any variable
  with a video axis.
* **New rows** (`new_rows`): `"cowatched"` (default) sets a new video's row of every video-axis
  variable (watch embedding, output embedding W_j, output bias b_j) to the mean of the rows of
  the known videos watched next to it (up to `COWATCH_WINDOW` watches before and after each of
  its watches, in every user's time order), and to the mean of all known rows when it has no
  known neighbour; `"mean"` uses the mean of all known rows; `"random"` small Gaussian rows
  (0.1 x the known rows' standard deviation) and a zero bias. docs/freshness.md has what each
  measured on MovieLens-100K.
* **Optimizer state is reset** (`optimizer_state="reset"`, default): a fresh optimizer of the
  old run's configuration. `"carry"` copies Adam's moments of the known rows and its step count
  instead (moments of new rows start at zero, as for any row never touched). Both were measured
  on MovieLens-100K (docs/freshness.md): a fresh Adam gave the better HR@10 and the same HR@50
  within the noise; carried moments put the new videos in more users' recommendations.
* **Training is on what is new**: the next-watch examples whose label is after the old run's
  last timestamp, and the two watches per user that the old run held out (its test and
  validation items: it never trained on them) unless they are held out again, with the user's
  whole history (old watches included) as their input, for at
  most `epochs` epochs with the same early stopping as a full run
  (`keras_yt.training.fit_candidate_generator`, on each user's last-but-one watch). Example age
  is measured from the end of the grown log. With `replay=R`, a uniform sample of R old
  examples per new one is trained again with them (rehearsal: the old run's labels are not
  forgotten while the new ones are learnt). The batch size is a full run's on the grown log
  (`full_run_batch_size`), not one scaled to the few new examples: the old run converged with
  that step noise; batches scaled to the new examples alone (8 times smaller on MovieLens-100K)
  left HR@50 0.017 below a run from scratch, a full run's 0.004 (docs/freshness.md).

The old run is only read, never written: the new run is staged and swapped in by
`keras_yt.run_folder.RunFolder.create`, and `out` must not be the old run's folder.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from keras_yt.carry_over import (  # noqa: F401  (COWATCH_WINDOW: re-exported)
    COWATCH_WINDOW,
    NEW_ROWS,
    OPTIMIZER_STATES,
    AxisGrowth,
    carry_over_weights,
    cowatched_rows,
    grow_candidate_generator,
)

__all__ = ["AxisGrowth", "carry_over_weights", "cowatched_rows", "full_run_batch_size",
           "grow_candidate_generator", "log_period", "warm_start"]

LOG_FILE = "log.json"
"""Run-folder file holding the period of the run's watch log (`log_period`)."""
WARM_START_FILE = "warm_start.json"
# Features a watch log provides to a model of `keras-yt train`.
LOG_FEATURES = ("watch_history", "example_age")


def log_period(raw: dict) -> dict:
    """The period and id kinds of a raw watch log, as a run folder records it (`log.json`).

    Args:
        raw: a log with raw ids (`keras_yt.data.read_raw_watch_log`): columns `user`, `video`,
            `timestamp` (seconds).

    Returns:
        `{"first_timestamp", "last_timestamp", "num_watches", "video_ids", "user_ids"}`, the
        id kinds being `"integer"` or `"string"`.

    Example:
    >>> log_period({"user": [1, 2], "video": ["a", "b"], "timestamp": [5.0, 9.0]})["video_ids"]
    'string'
    """
    times = np.asarray(raw["timestamp"], np.float64)
    if times.size == 0:
        raise ValueError("the watch log has no rows")

    def kind(values) -> str:
        return "string" if np.asarray(values).dtype.kind in "UO" else "integer"

    return {"first_timestamp": float(times.min()), "last_timestamp": float(times.max()),
            "num_watches": int(times.size), "video_ids": kind(raw["video"]),
            "user_ids": kind(raw["user"])}


# ---------------------------------------------------------------------- checks


def _old_model_config(path: Path) -> dict:
    """The saved config (`class_name`, `config`) of a `.keras` archive, without loading Keras."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not a readable .keras model ({error})") from None
    return config if isinstance(config, dict) else {}


def _old_model_class(path: Path) -> str:
    """The class name in a `.keras` archive's config, without loading Keras."""
    return str(_old_model_config(path).get("class_name", "?"))


def _reads_sequences(path: Path) -> bool:
    """Whether the saved candidate generator has the attention history encoder (it trains on
    sequence windows, every position at once)."""
    config = _old_model_config(path).get("config") or {}
    return isinstance(config, dict) and config.get("history_encoder") == "attention"


def _scale_learning_rate(optimizer, scale: float, init_from: str) -> None:
    """Multiplies a constant learning rate by `scale` (a schedule is refused, not guessed at)."""
    if isinstance(optimizer.get_config()["learning_rate"], dict):  # a serialised schedule
        raise ValueError(f"learning_rate_scale needs a constant learning rate, but the optimizer "
                         f"of --init-from {init_from!r} follows a schedule")
    optimizer.learning_rate = float(optimizer.learning_rate) * scale


def _replayed(old: np.ndarray, num_new: int, replay: float, rng) -> np.ndarray:
    """A uniform sample, without replacement, of `replay * num_new` of the True entries of
    `old` (all of them at most), as a mask of `old`'s shape."""
    chosen = np.zeros(old.shape, bool)
    if not replay:  # the default: no pass over the old examples
        return chosen
    candidates = np.flatnonzero(old)
    count = min(len(candidates), int(round(replay * num_new)))
    if count:
        chosen.flat[rng.choice(candidates, count, replace=False)] = True
    return chosen


def _fresh_sequence_examples(
    watches: np.ndarray, fit_watches: np.ndarray, last: float, max_history: int, end: float,
    replay: float = 0.0, rng=None,
) -> dict:
    """Sequence windows whose labels are only the watches new since the old run (and a
    replayed sample of the old ones).

    Every watch stays an input (the context of the new ones); a position keeps its label if the
    label is after the old run's last watch, or was held out by the old run (so never trained
    on), or is in the replayed sample (`replay` times as many as the new labels); other labels
    become 0 (no label), and windows left without a label are dropped.
    """
    from keras_yt.data import sequence_examples

    examples = sequence_examples(fit_watches, max_history=max_history,
                                 max_windows_per_user=None, example_age_reference=end)
    labelled = examples["label"] > 0  # padding positions are never matched
    positions = {"user": np.broadcast_to(examples["user"][:, None], labelled.shape)[labelled],
                 "label": examples["label"][labelled],
                 "timestamp": examples["timestamp"][labelled]}
    fresh = np.zeros_like(labelled)
    fresh[labelled] = (positions["timestamp"] > last) | _held_out_by_old_run(watches, last,
                                                                            positions)
    fresh |= _replayed(labelled & ~fresh, np.count_nonzero(fresh), replay, rng)
    examples["label"] = np.where(fresh, examples["label"], 0)
    examples["example_age"] = np.where(fresh, examples["example_age"], 0).astype(np.float32)
    keep = fresh.any(axis=1)
    return {k: v[keep] for k, v in examples.items()}


def _check_old_run(old, out: Path) -> dict:
    """The old run's recorded log period, after the checks that need no data."""
    old.check()
    target, source = out.resolve(), old.path.resolve()
    if target == source:
        raise ValueError(f"--out {str(out)!r} is the --init-from run: write the warm-started "
                         "run to a new folder (the old run is never modified)")
    if source in target.parents or target in source.parents:
        raise ValueError(f"--out {str(out)!r} and --init-from {str(old.path)!r} are inside one "
                         "another: write the warm-started run next to the old one")
    kind = _old_model_class(old.model_path)
    if "CandidateGenerator" not in kind:
        raise ValueError(f"--init-from {str(old.path)!r} holds a {kind}, not a candidate "
                         "generator: warm start needs a run of `keras-yt train`")
    if not (old.path / LOG_FILE).is_file():
        raise ValueError(f"--init-from {str(old.path)!r} has no {LOG_FILE} (the period of its "
                         "watch log): it was not written by `keras-yt train`, or by an older "
                         "keras_yt; train it again")
    period = old.read_json(LOG_FILE)
    for key in ("first_timestamp", "last_timestamp", "video_ids", "user_ids"):
        if key not in period:
            raise ValueError(f"{str(old.path / LOG_FILE)!r} lacks {key!r}")
    return period


def _check_ids(period: dict, raw: dict, log: str, init_from: str) -> None:
    new = log_period(raw)
    for what in ("video", "user"):
        if new[f"{what}_ids"] != period[f"{what}_ids"]:
            raise ValueError(
                f"the {what} ids of {log!r} are {new[f'{what}_ids']}s but --init-from "
                f"{init_from!r} was trained on {period[f'{what}_ids']} {what} ids: not the "
                "same log"
            )


def _check_contains(period: dict, raw: dict, old, videos, users, log: str) -> None:
    """The grown log covers the old run's period and holds every (user, video) it trained on."""
    times = np.asarray(raw["timestamp"], np.float64)
    first, last = period["first_timestamp"], period["last_timestamp"]
    if times.min() > first or times.max() < last:
        raise ValueError(
            f"{log!r} spans {_when(times.min())} to {_when(times.max())} and does not contain "
            f"the --init-from run's period ({_when(first)} to {_when(last)})"
        )
    before = times <= last
    user_rows = users.lookup(np.asarray(raw["user"])[before])
    video_rows = videos.lookup(np.asarray(raw["video"])[before])
    have = np.unique(user_rows * np.int64(videos.size) + video_rows)
    indptr = old._load_data()["indptr"]
    indices = old._load_data()["indices"].astype(np.int64)
    owners = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    wanted = owners * np.int64(videos.size) + indices
    missing = ~np.isin(wanted, have)
    if missing.any():
        k = int(np.flatnonzero(missing)[0])
        user = users.raw_ids([owners[k]])[0]
        video = videos.raw_ids([indices[k]])[0]
        raise ValueError(
            f"{log!r} does not contain the --init-from run's period: {int(missing.sum()):,} of "
            f"its {len(wanted):,} (user, video) watches up to {_when(last)} are missing (e.g. "
            f"user {user!r}, video {video!r})"
        )


def _held_out_by_old_run(watches: np.ndarray, last: float, examples: dict) -> np.ndarray:
    """Which examples are the watches the old run held out (each user's last two in its log).

    `keras-yt train` held out each user's last watch (test) and last but one (validation), so
    it never trained on them; they are trained on now unless they are held out again.
    """
    from keras_yt.data.candidate import leave_last_out_split

    old_log = watches[watches["timestamp"] <= last]
    rest, test = leave_last_out_split(old_log, max_history=1)
    validation = leave_last_out_split(rest, max_history=1)[1]

    def keys(part: dict) -> np.ndarray:
        return np.stack([part["user"], part["label"], part["timestamp"].view(np.int64)], 1)

    held = np.concatenate([keys(test), keys(validation)])
    if not len(held) or not len(examples["label"]):
        return np.zeros(len(examples["label"]), bool)
    mine = keys({k: np.asarray(examples[k]) for k in ("user", "label", "timestamp")})
    both = np.concatenate([held, mine])
    _, inverse = np.unique(both, axis=0, return_inverse=True)
    return np.isin(inverse.reshape(-1)[len(held):], inverse.reshape(-1)[: len(held)])


def _when(seconds: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(float(seconds), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------- the run


def full_run_batch_size(num_examples: int) -> int:
    """The batch size of a full (scratch) run on `num_examples` next-watch examples: the one a
    warm start takes by default.

    `keras_yt.training.recipe_batch_size` of all the grown log's examples (`default_batch_size`
    rounded up to the devices that split a batch), so the warm epochs take steps of
    the size and noise the old run converged with rather than many small, noisy ones on the
    few new examples.

    Args:
        num_examples: the number of training examples a full run on the grown log has.

    Returns:
        The batch size.

    Example:
    >>> full_run_batch_size(97_000)  # MovieLens-100K (a warm run's 8,500 new ones: 32)
    256
    """
    from keras_yt.training import recipe_batch_size

    return recipe_batch_size(num_examples)


def warm_start(
    log: str | os.PathLike | dict,
    out: str | os.PathLike,
    init_from: str | os.PathLike,
    epochs: int | None = None,
    batch_size: int | None = None,
    max_examples_per_user: int | None = None,
    new_rows: str = "cowatched",
    optimizer_state: str = "reset",
    replay: float = 0.0,
    learning_rate_scale: float = 1.0,
    seed: int = 0,
    verbose: bool = True,
) -> dict:
    """Trains a new run folder from an old one on a grown watch log (`keras-yt train --init-from`).

    See the module docstring for what is carried over and what is trained. The model's
    architecture and `max_history` are the old run's. The new run folder has the layout of
    `keras-yt train` (so `evaluate`, `export`, `index`, `recommend` and `serve` work on it) plus
    `warm_start.json` (where it came from, what grew, how long each step took).

    Args:
        log: the grown watch log: a CSV / Parquet path or a raw-id dict
            (`keras_yt.data.read_raw_watch_log`). It must contain the old run's log.
        out: the new run folder (staged, swapped in at the end; not the old run's folder).
        init_from: the old run folder (only read).
        epochs: most epochs (`None`: the recipe's, 50, or 200 for sequence windows); early
            stopping on each user's last-but-one watch decides.
        batch_size: examples per step; None for the batch size of a full run on the grown log
            (`full_run_batch_size`; sequence windows: `DEFAULT_SEQUENCE_BATCH_SIZE` of
            `keras_yt.training`, as a full run), not one scaled to the few new examples.
        max_examples_per_user: cap on each user's examples (the most recent), or None; a
            bag model's only (an attention model trains on every position).
        new_rows: initialisation of new videos' rows: `"cowatched"`, `"mean"` or `"random"`.
        optimizer_state: `"reset"` (a fresh optimizer) or `"carry"` (Adam's moments and step).
        replay: old examples trained again with the new ones, as a multiple of the number of
            new ones (a uniform sample of the old run's labels, without replacement, at most all
            of them; drawn with `seed`); 0 trains on the new examples only.
        learning_rate_scale: the warm epochs' learning rate, as a multiple of the old run's
            (on MovieLens-100K 0.3 gave a better hit rate than 1; on a small log it learnt a
            new video too slowly to recommend it: docs/freshness.md).
        seed: Keras seed of the training (and of the replayed sample).
        verbose: print the steps.

    Returns:
        The contents of `warm_start.json`: `new_videos`, `new_users`, `examples`,
        `history` (the fit history), `seconds`, ...

    Raises:
        ValueError: the old run is not a candidate generator run of `keras-yt train`, its ids
            are of another kind, the log does not contain its period, or `out` is the old
            run. The old run is never modified.

    Example:
    >>> import tempfile, contextlib, io
    >>> from pathlib import Path
    >>> from keras_yt.cli import main
    >>> tmp = Path(tempfile.mkdtemp())
    >>> rows = [f"u{u},v{(u + s) % 20},{100 * s + u}" for u in range(20) for s in range(6)]
    >>> _ = (tmp / "old.csv").write_text("user,video,timestamp\\n" + "\\n".join(rows) + "\\n")
    >>> new = rows + [f"u{u},v{20 + s},{1000 + 10 * s + u}" for u in range(12) for s in range(3)]
    >>> _ = (tmp / "new.csv").write_text("user,video,timestamp\\n" + "\\n".join(new) + "\\n")
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     status = main(["train", "--log", str(tmp / "old.csv"), "--out", str(tmp / "old"),
    ...                    "--preset", "tiny_candidate", "--epochs", "1"])
    ...     info = warm_start(tmp / "new.csv", tmp / "new", init_from=tmp / "old", epochs=1)
    >>> info["new_videos"], info["examples"]  # 12 users: 1 new example + 2 held out before
    (3, 36)
    """
    from keras_yt.run_folder import RunFolder

    started = time.perf_counter()
    out, old = Path(out), RunFolder(init_from)
    RunFolder.check_target(out)
    period = _check_old_run(old, out)
    if new_rows not in NEW_ROWS:
        raise ValueError(f"new_rows must be one of {NEW_ROWS}, got {new_rows!r}")
    if optimizer_state not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer_state must be one of {OPTIMIZER_STATES}, got "
                         f"{optimizer_state!r}")
    if isinstance(replay, bool) or not isinstance(replay, (int, float)) or \
            not np.isfinite(replay) or replay < 0:
        raise ValueError(f"replay must be a number >= 0 (old examples per new one), got "
                         f"{replay!r}")
    if isinstance(learning_rate_scale, bool) or not isinstance(learning_rate_scale,
                                                                (int, float)) or \
            not np.isfinite(learning_rate_scale) or learning_rate_scale <= 0:
        raise ValueError(f"learning_rate_scale must be a number > 0, got "
                         f"{learning_rate_scale!r}")
    sequences = _reads_sequences(old.model_path)
    if sequences and max_examples_per_user is not None:
        raise ValueError(f"max_examples_per_user caps a bag model's next-watch examples; the run "
                         f"at {str(init_from)!r} has the attention history encoder, which trains "
                         f"on every position of each user's sequence: leave it out")

    def say(text: str) -> None:
        if verbose:
            print(text, flush=True)

    from keras_yt import data as yt_data

    raw = dict(log) if isinstance(log, dict) else yt_data.read_raw_watch_log(log)
    name = str(log) if not isinstance(log, dict) else "the watch log"
    for column in ("user", "video", "timestamp"):
        if column not in raw:
            raise ValueError(f"the watch log has no {column!r} column")
    raw = {k: np.asarray(v) for k, v in raw.items()}
    if "watch_time" not in raw:
        raw["watch_time"] = np.ones(len(raw["user"]), np.float32)
    if len(raw["user"]) == 0:
        raise ValueError(f"the watch log {name!r} has no rows")
    _check_ids(period, raw, name, str(init_from))
    videos = old.videos.grow(raw["video"])
    users = old.users.grow(raw["user"])
    _check_contains(period, raw, old, videos, users, name)
    max_history = old.max_history if old.max_history > 0 else \
        int(old.latest_features([0])["watch_history"].shape[1])
    end = float(np.max(raw["timestamp"]))
    timings = {"read": time.perf_counter() - started}
    say(f"    {len(raw['user']):,} watches; {videos.size - old.videos.size:,} new videos "
        f"({videos.size - 1:,} in all), {users.size - old.users.size:,} new users")

    step = time.perf_counter()
    from keras_yt import pipeline
    from keras_yt.data.io import WATCH_DTYPE
    from keras_yt.evaluation import LeaveLastOut

    watches = np.empty(len(raw["user"]), dtype=WATCH_DTYPE)
    watches["user"] = users.lookup(raw["user"])
    watches["video"] = videos.lookup(raw["video"])
    watches["timestamp"] = raw["timestamp"]
    watches["watch_time"] = raw["watch_time"]
    split = LeaveLastOut(watches, max_history=max_history, num_items=videos.size,
                         example_age_reference=end, same_time_history=sequences)
    rng = np.random.default_rng(seed)
    if sequences:  # every new watch a label, the old ones context
        examples = _fresh_sequence_examples(watches, split.fit_watches,
                                            period["last_timestamp"], max_history, end, replay,
                                            rng)
    else:
        examples = yt_data.candidate_examples(
            split.fit_watches, max_history=max_history,
            max_examples_per_user=max_examples_per_user, example_age_reference=end,
        )
        if batch_size is None:
            batch_size = full_run_batch_size(len(examples["label"]))
        fresh = examples["timestamp"] > period["last_timestamp"]
        fresh |= _held_out_by_old_run(watches, period["last_timestamp"], examples)
        fresh |= _replayed(~fresh, np.count_nonzero(fresh), replay, rng)
        examples = {k: v[fresh] for k, v in examples.items()}
    if len(examples["label"]) == 0:
        raise ValueError(f"{name!r} has no training example after the --init-from run's last "
                         f"watch ({_when(period['last_timestamp'])}): nothing new to train on")
    timings["examples"] = time.perf_counter() - step
    say(f"    {np.count_nonzero(examples['label']):,} training examples after "
        f"{_when(period['last_timestamp'])}, {len(split.validation['label']):,} validation users")

    step = time.perf_counter()
    from keras_yt._quiet import load_tensorflow

    load_tensorflow()
    import keras

    old_model = old.load_model()
    missing = [n for n in old_model.feature_specs() if n not in LOG_FEATURES]
    if missing:
        raise ValueError(f"--init-from {str(old.path)!r} is a model of another kind: it reads "
                         f"the feature(s) {missing} that a watch log does not provide")
    keras.utils.set_random_seed(seed)
    mixing = None
    if new_rows == "cowatched" and videos.size > old.videos.size:
        mixing = cowatched_rows(watches[watches["timestamp"] <= end], old.videos.size,
                                videos.size)
    model, report = grow_candidate_generator(old_model, videos.size, mixing, new_rows,
                                             optimizer_state, seed)
    if learning_rate_scale != 1.0:
        _scale_learning_rate(model.optimizer, learning_rate_scale, str(init_from))
    timings["carry_over"] = time.perf_counter() - step

    step = time.perf_counter()
    history = pipeline.train_candidate_generator(model, examples, split.validation, epochs,
                                                 batch_size)
    timings["train"] = time.perf_counter() - step
    say(f"    best epoch {history['best_epoch']} of {len(history['loss'])} "
        f"(batch size {history['batch_size']})")

    step = time.perf_counter()
    counts = np.bincount(split.train_watches["video"], minlength=videos.size)
    info = {
        "init_from": str(Path(init_from).resolve()),
        "old_last_timestamp": period["last_timestamp"],
        "new_videos": int(videos.size - old.videos.size),
        "new_users": int(users.size - old.users.size),
        "examples": int(np.count_nonzero(examples["label"])),  # labels (sequences: positions)
        "new_rows": new_rows,
        "replay": replay,
        "learning_rate_scale": learning_rate_scale,
        "optimizer": report["optimizer"],
        "grown_variables": report["grown"],
        "history": history,
    }
    test = split.test
    with RunFolder.create(out) as run:
        model.save(run.model_path)
        run.save_data(
            videos=_with_counts(videos, counts),
            users=users,
            watched=(raw["user"], raw["video"]),
            latest=pipeline.latest_features(watches, users.size, max_history),
            test={k: test[k] for k in ("watch_history", "label", "user")},
            max_history=max_history,
            model=model,
        )
        run.write_json("history.json", history)
        run.write_json(LOG_FILE, log_period(raw))
        timings["save"] = time.perf_counter() - step
        timings["total"] = time.perf_counter() - started
        info["seconds"] = timings
        run.write_json(WARM_START_FILE, info)
    return info


def _with_counts(videos, counts: np.ndarray):
    """The video vocabulary with its training counts (as `keras-yt train` stores it)."""
    from keras_yt.data.vocabulary import Vocabulary

    return Vocabulary(videos.ids, counts[1:], videos.titles, name="video")
