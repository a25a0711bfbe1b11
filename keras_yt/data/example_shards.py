"""`ExampleShards`: reads a folder of `keras_yt.data.prepare_examples` as a stream of batches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from keras_yt.data import _prepared_folder as prepared_folder
from keras_yt.data.vocabulary import Vocabulary

DEFAULT_SHUFFLE_BUFFER = 1 << 17
DEFAULT_SEQUENCE_SHUFFLE_BUFFER = 1 << 12  # windows of up to max_history positions each
_SLICE_IDS = 1 << 18  # rows are read in slices of about this many history ids (1 MiB)
_FEATURES = ("watch_history", "example_age")


class ExampleShards:
    """The training data written by `keras_yt.data.prepare_examples` or `prepare_sequences`,
    read as a stream.

    Training batches never hold more than a shuffle buffer of examples in memory, whatever the
    size of the log: `batches` (a numpy generator, for any backend, e.g. JAX) and `dataset` (a
    `tf.data.Dataset`: shards interleaved, shuffle buffer, prefetch, sharded per input pipeline
    under a `tf.distribute` strategy). The held-out examples and the serving state are small
    (one row per user) and read whole.

    A folder of `prepare_sequences` (`sequences` is True) holds per-user sequence windows: each
    training row is a window, left-padded to `max_history` like `keras_yt.data.sequence_examples`'
    rows, its labels `(batch, max_history)` (0 at padding) and `example_age` per position.

    Args:
        path: a folder written by `prepare_examples` or `prepare_sequences` (or `keras-yt
            prepare [--sequences]`).

    Attributes:
        max_history: width of `watch_history`.
        videos: the video `Vocabulary` (model ids 1..N; counts of the training watches).
        users: the user `Vocabulary` (model id = row of `latest()`).
        sequences: whether the training rows are sequence windows.
        num_examples: training rows (examples, or windows).
        manifest: the folder's `manifest.json`.

    Example:
    >>> import os, tempfile
    >>> from keras_yt.data import prepare_examples
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "log.csv"), "w") as f:
    ...     _ = f.write("user,video,timestamp\\n" + "".join(
    ...         f"{u},{v},{t}\\n" for u in (1, 2) for t, v in enumerate((7, 8, 9, 7, 8))))
    >>> _ = prepare_examples(os.path.join(folder, "log.csv"), os.path.join(folder, "ex"),
    ...                      max_history=3)
    >>> shards = ExampleShards(os.path.join(folder, "ex"))
    >>> shards.num_examples, shards.held_out("test")["label"].tolist()
    (4, [2, 2])
    >>> x, y = next(shards.batches(batch_size=4, seed=0))
    >>> x["watch_history"].shape, y.shape
    ((4, 3), (4,))
    """

    def __init__(self, path: str | os.PathLike):
        from keras_yt.data.prepare import FORMAT_KIND, FORMAT_VERSION, MANIFEST, SEQUENCES

        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise ValueError(f"{str(self.path)!r} is not a prepared examples folder (no "
                             f"{MANIFEST}); write one with `keras-yt prepare`")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read {str(manifest_path)!r}: {error}") from None
        if not isinstance(manifest, dict) or manifest.get("kind") != FORMAT_KIND:
            raise ValueError(f"{str(manifest_path)!r} is not a keras_yt examples manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{str(manifest_path)!r} has format version "
                             f"{manifest.get('format_version')}; this keras_yt reads version "
                             f"{FORMAT_VERSION}")
        self.manifest = manifest
        self.sequences = manifest.get("content") == SEQUENCES
        self.max_history = int(manifest["max_history"])
        self.num_examples = int(manifest["counts"]["train"])
        self.train_files = [str(self.path / name) for name in manifest["train_files"]]
        missing = [f for f in self.train_files if not os.path.isfile(f)]
        if missing:
            raise ValueError(f"{str(self.path)!r} is incomplete: {missing[0]!r} is missing")
        self.videos = Vocabulary.load(self.path / "videos.h5")
        self.users = Vocabulary.load(self.path / "users.h5")

    def __repr__(self) -> str:
        rows = "sequence windows" if self.sequences else "examples"
        return (f"ExampleShards({str(self.path)!r}, {self.num_examples:,} {rows}, "
                f"{len(self.videos):,} videos, {len(self.users):,} users)")

    # ------------------------------------------------------------------ small, read whole

    def held_out(self, split: str = "test") -> dict:
        """Each user's last (`"test"`) or last-but-one (`"validation"`) watch as examples.

        Returns:
            Like `keras_yt.data.candidate_examples`: `watch_history` (n, max_history) int64
            left-padded, `history_length`, `label`, `user`, `example_age`, `timestamp`,
            `watch_time`, ordered by user model id.
        """
        if split not in ("test", "validation"):
            raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
        import pyarrow.parquet as pq

        table = pq.read_table(self.path / f"{split}.parquet")
        out = _to_numpy(table, self.max_history)
        out["watch_history"] = out["watch_history"].astype(np.int64)
        order = np.argsort(out["user"], kind="stable")
        return {k: v[order] for k, v in out.items()}

    def latest(self) -> np.ndarray:
        """Each user's serving history, `(users.size, max_history)` int32, row = user model id
        (row 0: the unknown user), left-padded, newest last."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.path / "latest.parquet")
        out = np.zeros((self.users.size, self.max_history), np.int32)
        history = table.column("watch_history").combine_chunks()
        values = np.asarray(history.flatten().to_numpy(zero_copy_only=False), np.int32)
        out[table.column("user").to_numpy()] = values.reshape(-1, self.max_history)
        return out

    def watched(self) -> dict:
        """Every video each user watched: CSR `{"indptr", "indices"}` by user model id, video
        model ids sorted (the run folder's `watched`)."""
        import pyarrow.parquet as pq

        table = pq.read_table(self.path / "watched.parquet")
        users = table.column("user").to_numpy().astype(np.int64)
        videos = table.column("video").to_numpy().astype(np.int32)
        order = np.lexsort((videos, users))
        users, videos = users[order], videos[order]
        counts = np.bincount(users, minlength=self.users.size)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return {"indptr": indptr, "indices": videos}

    # ------------------------------------------------------------------ streamed

    @property
    def default_shuffle_buffer(self) -> int:
        """Rows shuffled together by default: 131,072 examples, or 4,096 sequence windows."""
        return DEFAULT_SEQUENCE_SHUFFLE_BUFFER if self.sequences else DEFAULT_SHUFFLE_BUFFER

    def _slices(self, parquet, group: int, features: tuple[str, ...]) -> Iterator[dict]:
        """Row group `group` of a `pyarrow.parquet.ParquetFile`, read a slice of rows at a time
        (a row group of windows can hold gigabytes once padded), as padded numpy columns:
        `features` and `label`."""
        import pyarrow as pa

        # An example's history_length comes from its history; a window's is a column.
        columns = sorted({"label", *("watch_history" if f == "history_length" else f
                                     for f in features)})
        rows = max(64, _SLICE_IDS // self.max_history)
        for batch in parquet.iter_batches(batch_size=rows, row_groups=[group], columns=columns,
                                          use_threads=False):
            table = pa.Table.from_batches([batch])
            if self.sequences:
                block = prepared_folder.windows_to_numpy(table, self.max_history, columns)
                block["watch_history"] = block["watch_history"].astype(np.int32)
            else:
                block = _to_numpy(table, self.max_history, columns)
            yield {name: block[name] for name in (*features, "label")}

    def _row_groups(self, shard: tuple[int, int]) -> list[tuple[str, int]]:
        import pyarrow.parquet as pq

        files = self.train_files[shard[0]::shard[1]]
        return [(f, g) for f in files for g in range(pq.ParquetFile(f).num_row_groups)]

    def batches(
        self,
        batch_size: int,
        features: tuple[str, ...] = _FEATURES,
        shuffle_buffer: int | None = None,
        seed: int = 0,
        repeat: bool = True,
        shard: tuple[int, int] = (0, 1),
        drop_remainder: bool = False,
    ) -> Iterator[tuple[dict, np.ndarray]]:
        """Shuffled training batches `(features, labels)` as numpy, read shard by shard.

        Each epoch visits the row groups of the shards in a new random order and shuffles the
        examples in a buffer of `shuffle_buffer` rows; an epoch yields every example once
        (`ceil(num_examples / batch_size)` batches, the last one smaller). Memory: the buffer.

        Args:
            batch_size: examples per batch.
            features: the columns to yield (`watch_history`, `example_age`, `timestamp`,
                `watch_time`, `history_length` or, for windows, `sequence_length`, `user`).
            shuffle_buffer: rows shuffled together (`None`: `default_shuffle_buffer`).
            seed: seed of the shuffling (epoch e uses `seed + e`).
            repeat: loop over epochs forever (for `model.fit(..., steps_per_epoch=...)`).
            shard: `(index, count)`: read only the files `index::count` (one input pipeline of
                several, e.g. one per process).
            drop_remainder: leave out each epoch's last, smaller batch (for inputs split evenly
                over devices); an epoch then has `num_examples // batch_size` batches.
        """
        features = self._check_features(features)
        if shuffle_buffer is None:
            shuffle_buffer = self.default_shuffle_buffer
        epoch = 0
        while True:
            rng = np.random.default_rng(seed + epoch)
            groups = self._row_groups(shard)
            buffer: list[dict] = []
            held = 0
            for i in rng.permutation(len(groups)):
                path, group = groups[i]
                for part in self._slices(_open(path), group, features):
                    buffer.append(part)
                    held += len(part["label"])
                    if held >= shuffle_buffer + batch_size:
                        block = _shuffled(buffer, rng)
                        keep = (held - shuffle_buffer) // batch_size * batch_size
                        yield from _emit(block, keep, batch_size, features)
                        buffer = [{k: v[keep:] for k, v in block.items()}]
                        held -= keep
            if drop_remainder:
                held = held // batch_size * batch_size
            if held:
                block = _shuffled(buffer, rng)
                yield from _emit(block, held, batch_size, features)
            epoch += 1
            if not repeat:
                return

    def _check_features(self, features) -> tuple[str, ...]:
        known = (*_DTYPES, _LENGTHS[self.sequences])
        unknown = [name for name in features if name not in known]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown} of {self!r}; expected some of "
                             f"{list(known)}")
        return tuple(features)

    def steps_per_epoch(self, batch_size: int, shard: tuple[int, int] = (0, 1)) -> int:
        """Batches per epoch of `batches` (for `model.fit(steps_per_epoch=...)`)."""
        import pyarrow.parquet as pq

        rows = sum(pq.ParquetFile(f).metadata.num_rows
                   for f in self.train_files[shard[0]::shard[1]])
        return max(1, -(-rows // batch_size))

    def dataset(
        self,
        batch_size: int,
        features: tuple[str, ...] = _FEATURES,
        shuffle_buffer: int | None = None,
        seed: int = 0,
        input_context: Any = None,
        cycle_length: int = 4,
    ):
        """A `tf.data.Dataset` of shuffled `(features, labels)` batches, one epoch per pass.

        Shards are interleaved (`cycle_length` read at once), examples shuffled in a buffer of
        `shuffle_buffer`, batches prefetched. With a `tf.distribute.InputContext` (from
        `strategy.distribute_datasets_from_function`), each input pipeline reads its own subset
        of the shards and batches of the per-replica size.

        Args:
            batch_size: global batch size.
            features: columns to yield (see `batches`).
            shuffle_buffer: rows shuffled together (`None`: `default_shuffle_buffer`).
            seed: shuffling seed.
            input_context: a `tf.distribute.InputContext`, or None.
            cycle_length: shards read concurrently.

        Returns:
            The dataset (needs TensorFlow).
        """
        import tensorflow as tf

        features = self._check_features(features)
        if shuffle_buffer is None:
            shuffle_buffer = self.default_shuffle_buffer
        files = self.train_files
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
            files = files[input_context.input_pipeline_id::input_context.num_input_pipelines]
        H = self.max_history
        width = (H,) if self.sequences else ()
        signature = {name: _spec(tf, name, H, self.sequences) for name in features}
        label_spec = tf.TensorSpec((None, *width), tf.int64)
        slices = self._slices

        def read(path):

            parquet = _open(path.decode() if isinstance(path, bytes) else path)
            for group in range(parquet.num_row_groups):
                # Small elements: the interleaved readers' buffers stay small.
                for part in slices(parquet, group, features):
                    yield {name: part[name] for name in features}, part["label"]

        def shard_dataset(path):
            return tf.data.Dataset.from_generator(read, args=(path,),
                                                  output_signature=(signature, label_spec))

        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(
            max(len(files), 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(shard_dataset, cycle_length=max(1, min(cycle_length, len(files))),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        ds = ds.unbatch().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if input_context is None:
            # Known length: Keras shows progress and expects the end of each epoch.
            ds = ds.apply(tf.data.experimental.assert_cardinality(
                self.steps_per_epoch(batch_size)))
        return ds.prefetch(tf.data.AUTOTUNE)


_DTYPES = {"watch_history": "int32", "example_age": "float32", "watch_time": "float32",
           "timestamp": "float64", "user": "int64"}
_LENGTHS = {False: "history_length", True: "sequence_length"}  # per example / per window


def _spec(tf, name: str, H: int, sequences: bool):
    per_position = name == "watch_history" or (sequences and name in (
        "example_age", "watch_time", "timestamp"))
    dtype = "int32" if name == _LENGTHS[sequences] else _DTYPES[name]
    return tf.TensorSpec((None, H) if per_position else (None,), dtype)


def _open(path: str):
    """A training shard for streaming: column chunks read through a 1 MiB buffer instead of
    whole (a row group's chunk of padded-to-be windows can be tens of MB, and tf.data reads
    several shards at once)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, buffer_size=1 << 20)


_EXAMPLE_COLUMNS = {"label": np.int64, "user": np.int64, "example_age": np.float32,
                    "timestamp": np.float64, "watch_time": np.float32}


def _to_numpy(table, max_history: int, columns=None) -> dict:
    """Examples as numpy: the padded `watch_history` (int32) and `history_length` when
    `watch_history` is among `columns`, and the other `columns` (default: all)."""
    out = {}
    if columns is None or "watch_history" in columns:
        padded = prepared_folder.pad_histories(table.column("watch_history"), max_history)
        out["watch_history"] = padded.astype(np.int32)
        out["history_length"] = (padded > 0).sum(axis=1).astype(np.int32)
    for name, dtype in _EXAMPLE_COLUMNS.items():
        if columns is None or name in columns:
            out[name] = np.asarray(table.column(name).to_numpy(), dtype)
    return out


def _shuffled(parts: list[dict], rng) -> dict:
    block = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = rng.permutation(len(block["label"]))
    return {k: v[order] for k, v in block.items()}


def _emit(block: dict, rows: int, batch_size: int, features) -> Iterator:
    for start in range(0, rows, batch_size):
        stop = min(start + batch_size, rows)
        yield {name: block[name][start:stop] for name in features}, block["label"][start:stop]
