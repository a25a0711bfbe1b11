"""`prepare_examples`: a watch log of any size → Parquet shards of training examples, out of core.

The job `keras-yt train` does in memory (number the videos and users, order each user's watches,
build every next-watch example with the watches strictly before it, hold out each user's last and
last-but-one watch), run by a columnar engine that sorts and spills to disk: **DuckDB** (the
default, embedded) or **Apache Spark** (`keras-yt[spark]`, one machine or a cluster). Both write
the same folder:

* `train/part-NNNNN.parquet` – training examples, one row each: `user` and `label` (model ids),
  `watch_history` (video model ids strictly before the label, oldest first, at most
  `max_history`, unpadded), `example_age` (days), `timestamp`, `watch_time`;
* `validation.parquet`, `test.parquet` – each user's last-but-one / last watch as an example
  (the split of `keras_yt.evaluation.LeaveLastOut`);
* `latest.parquet` – each user's serving history (`user`, `watch_history`: the last
  `max_history` watches, those in the same second as the latest included, padded, newest last);
* `watched.parquet` – the distinct (user, video) pairs of the log;
* `videos.h5`, `users.h5` – the `keras_yt.data.Vocabulary` of each;
* `manifest.json` – sizes, `max_history`, the engine.

`prepare_sequences` writes the same folder for the order-aware tower: `train/` then holds per-user
sequence windows (`keras_yt.data.sequence_examples`' rows) and the held-out examples read every
earlier watch, same-second ones included. `keras_yt.data.ExampleShards` reads either (streamed
training batches, the held-out examples).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keras_yt._files import remove_stale_stages, staged_folder
from keras_yt.data import _log_files as log_files
from keras_yt.data import _prepared_folder as prepared_folder

FORMAT_KIND = "keras_yt.PreparedExamples"
EXAMPLES, SEQUENCES = "examples", "sequences"  # the manifest's "content": the training files
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENGINES = ("duckdb", "spark")


def prepare_examples(
    log: Any,
    out: str | os.PathLike,
    engine: str = "duckdb",
    max_history: int = 50,
    max_examples_per_user: int | None = None,
    memory_limit: str | None = "1GB",
    temp_directory: str | os.PathLike | None = None,
    threads: int | None = None,
    rows_per_shard: int = 1_000_000,
    spark: Any = None,
    verbose: bool = False,
) -> dict:
    """Builds the training examples of a watch log with DuckDB or Spark, out of core.

    The examples are exactly those of the in-memory path (`keras-yt train --log`): videos and
    users numbered 1..N by decreasing count (ties by raw id), each user's watches ordered by
    timestamp (ties: input order), each user's last watch held out for testing and the
    last-but-one for validation (`keras_yt.evaluation.LeaveLastOut`), and a training example for
    every other watch with at least one strictly earlier watch (`keras_yt.data.candidate_examples`
    with its defaults), the most recent `max_examples_per_user` per user if given.

    The folder is staged next to `out` and renamed into place at the end: an interrupted or
    failed prepare leaves no partial output (and an earlier prepared folder at `out` intact).

    Args:
        log: CSV or Parquet watch log (header / columns `user,video,timestamp[,watch_time]`), a
            folder of such shards, a glob (`logs/part-*.csv`) or a list of files. Ids: integers
            of any size or strings; timestamps: Unix seconds or ISO-8601.
        out: the folder to write (new, empty, or an earlier prepared folder, which is replaced).
        engine: `"duckdb"` (embedded) or `"spark"` (needs `keras-yt[spark]` and Java).
        max_history: most watches in a history.
        max_examples_per_user: cap on training examples per user (the most recent); `None`
            keeps every next watch.
        memory_limit: DuckDB's memory limit (e.g. `"2GB"`); it spills to `temp_directory`
            beyond it. `None`: DuckDB's default (80% of RAM).
        temp_directory: spill folder (default: inside the staging folder, removed at the end).
        threads: DuckDB threads (default: all cores).
        rows_per_shard: training examples per Parquet shard.
        spark: a `pyspark.sql.SparkSession` for `engine="spark"` (default: a local one).
        verbose: print the steps and their time.

    Returns:
        The manifest (also written as `out/manifest.json`).

    Raises:
        ValueError: bad arguments, a malformed log (the message names the file and the line, or
            the row group of a Parquet file), or an `out` that is not replaceable.
        FileNotFoundError: the log does not exist.

    Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "log.csv"), "w") as f:
    ...     _ = f.write("user,video,timestamp\\n" + "".join(
    ...         f"{u},{v},{t}\\n" for u in ("ana", "bo") for t, v in enumerate((7, 8, 9, 7))))
    >>> manifest = prepare_examples(os.path.join(folder, "log.csv"), os.path.join(folder, "ex"))
    >>> manifest["counts"]["train"], manifest["counts"]["validation"], manifest["counts"]["test"]
    (2, 2, 2)
    """
    return _prepare(log, out, engine, max_history, max_examples_per_user, memory_limit,
                    temp_directory, threads, rows_per_shard, spark, verbose, sequences=False)


def _prepare(log: Any, out: str | os.PathLike, engine: str, max_history: int, cap: int | None,
             memory_limit: str | None, temp_directory: str | os.PathLike | None,
             threads: int | None, rows_per_shard: int, spark: Any, verbose: bool,
             sequences: bool) -> dict:
    """The job of `prepare_examples` (`sequences=False`) and `prepare_sequences`."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    for name, value in (("max_history", max_history), ("rows_per_shard", rows_per_shard)):
        _check_int(name, value)
    cap_name = "max_windows_per_user" if sequences else "max_examples_per_user"
    if cap is not None:
        _check_int(cap_name, cap)
    if threads is not None:
        _check_int("threads", threads)
    paths = log_files.expand(log)
    out = check_target(out)
    start = time.perf_counter()
    with _staged(out) as stage:
        spill = os.fspath(temp_directory) if temp_directory else os.path.join(stage, ".spill")
        if engine == "duckdb":
            from keras_yt.data import duckdb_examples

            result = duckdb_examples.run(paths, stage, max_history, cap, memory_limit, spill,
                                         threads, rows_per_shard, sequences)
        else:
            from keras_yt.data import spark_examples

            result = spark_examples.run(paths, stage, max_history, cap, spill, rows_per_shard,
                                        spark, sequences)
        if not temp_directory:
            shutil.rmtree(spill, ignore_errors=True)
        manifest = {
            "kind": FORMAT_KIND, "format_version": FORMAT_VERSION, "engine": engine,
            "content": SEQUENCES if sequences else EXAMPLES,
            "log": paths if len(paths) > 1 else paths[0], "max_history": int(max_history),
            cap_name: cap,
            "train_files": sorted(f"{prepared_folder.TRAIN_DIR}/{name}" for name in
                                  os.listdir(os.path.join(stage, prepared_folder.TRAIN_DIR))
                                  if name.endswith(".parquet")),
            "seconds": round(time.perf_counter() - start, 3), **result,
        }
        with open(os.path.join(stage, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
    if verbose:
        counts = manifest["counts"]
        what = "sequence windows" if sequences else "training examples"
        print(f"    {counts['watches']:,} watches -> {counts['train']:,} {what}, "
              f"{counts['validation']:,} validation and {counts['test']:,} test users "
              f"({engine}, {manifest['seconds']:.1f} s)")
    return manifest


def _check_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def prepared_content(path: str | os.PathLike) -> str | None:
    """What the training files of a prepared folder hold (`EXAMPLES` or `SEQUENCES`), or `None`
    if `path` is not a folder written by `prepare_examples` / `prepare_sequences`."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return None
    try:
        manifest = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("kind") != FORMAT_KIND:
        return None
    return manifest.get("content", EXAMPLES)


def is_prepared(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `prepare_examples` or `prepare_sequences`."""
    return prepared_content(path) is not None


def check_target(path: str | os.PathLike) -> Path:
    """`path` as a Path, or a ValueError if prepare would refuse to write it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is an existing file: choose another output folder")
    if path.is_dir() and any(path.iterdir()) and not is_prepared(path):
        raise ValueError(f"{str(path)!r} is a non-empty folder that is not a prepared examples "
                         "folder; refusing to replace it: choose a new or empty folder")
    return path


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[str]:
    """A staging folder next to `path`, renamed to `path` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(path, "previous")
    with staged_folder(path, "previous") as stage:
        yield os.fspath(stage)


def prepare_sequences(
    log: Any,
    out: str | os.PathLike,
    engine: str = "duckdb",
    max_history: int = 200,
    max_windows_per_user: int | None = None,
    memory_limit: str | None = "1GB",
    temp_directory: str | os.PathLike | None = None,
    threads: int | None = None,
    rows_per_shard: int = 100_000,
    spark: Any = None,
    verbose: bool = False,
) -> dict:
    """Builds the training data of the order-aware tower (`history_encoder="attention"`) out of
    core: what `keras-yt train --log` builds in memory for it.

    The folder of `prepare_examples` (vocabularies, `validation.parquet`, `test.parquet`,
    `latest.parquet`, `watched.parquet`, `manifest.json` with `"content": "sequences"`), with
    two differences that are those of a sequence model: each user's last (test) and last-but-one
    (validation) watch reads every watch before it in the user's order, same-second ones
    included (`keras_yt.evaluation.LeaveLastOut(..., same_time_history=True)`), and the
    training shards `train/part-NNNNN.parquet` hold the per-user sequence windows of
    `keras_yt.data.sequence_examples` over the watches that are not held out (every next watch
    once, labels at the position of the watch before them, newest window first, example age
    from the largest of their timestamps): one row per window, `user`, `sequence_length` and the
    unpadded lists `watch_history`, `label`, `timestamp`, `watch_time`, `example_age` (oldest
    first). `keras_yt.data.ExampleShards` streams them left-padded to `max_history`, and
    `keras-yt train --examples` trains the sequential preset on them.

    Args:
        log: CSV or Parquet watch log, a folder of shards, a glob or a list of files.
        out: the folder to write (new, empty, or an earlier prepared folder).
        engine: `"duckdb"` or `"spark"`.
        max_history: positions per window (and width of the held-out and serving histories).
        max_windows_per_user: the most recent windows kept per user; `None` (the training
            recipe's) keeps all.
        memory_limit: DuckDB's memory limit (it spills beyond it).
        temp_directory: spill folder (default: inside the staging folder).
        threads: DuckDB threads (default: all cores).
        rows_per_shard: windows per Parquet shard.
        spark: a `SparkSession` for `engine="spark"` (default: a local one).
        verbose: print the counts and the time.

    Returns:
        The manifest (`counts["train"]`: the windows).

    Example:
    >>> import os, tempfile
    >>> from keras_yt.data._prepared_folder import read_sequences
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "log.csv"), "w") as f:
    ...     _ = f.write("user,video,timestamp\\n1,4,0\\n1,5,1\\n1,6,2\\n1,7,3\\n1,8,4\\n1,9,5\\n")
    >>> manifest = prepare_sequences(os.path.join(folder, "log.csv"),
    ...                              os.path.join(folder, "seq"), max_history=2)
    >>> manifest["counts"]["train"], manifest["counts"]["test"]  # 4, 5, 6, 7 -> 2 windows
    (2, 1)
    >>> windows = read_sequences(os.path.join(folder, "seq"), 2)
    >>> sorted(map(tuple, windows["label"].tolist()))  # model ids: all counts tie, 4 -> 1
    [(0, 2), (3, 4)]
    """
    return _prepare(log, out, engine, max_history, max_windows_per_user, memory_limit,
                    temp_directory, threads, rows_per_shard, spark, verbose, sequences=True)
