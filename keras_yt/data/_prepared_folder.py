"""The files of a prepared folder, written by the DuckDB and Spark engines (private).

Both engines end in the same place: a stream of Arrow record batches with one row per kept
watch (`role`, `user`, `label`, `timestamp`, `watch_time`, `example_age` and the unpadded
`watch_history`, oldest first), which `split_and_write` writes as the prepared folder's example
files (see `keras_yt.data.prepare`), and one of each user's last `max_history` watches, which
`write_latest` writes as the serving histories; `write_sequences` writes the training shards of
`prepare_sequences` (per-user sequence windows) and `windows_to_numpy` reads them back, and
`write_vocabularies` writes the folder's `videos.h5` and `users.h5`.
"""

from __future__ import annotations

import os

import numpy as np

from keras_yt.data.vocabulary import Vocabulary

BATCH_ROWS = 1 << 16
ROW_GROUP_ROWS = 1 << 16
WINDOW_GROUP_ROWS = 1 << 13  # sequence windows hold up to max_history ids per column each
TRAIN_DIR = "train"
ROLE_TRAIN, ROLE_VALIDATION, ROLE_TEST, ROLE_NONE = 0, 1, 2, 3


def watched_path(stage: str) -> str:
    return os.path.join(stage, "watched.parquet")


def write_batches(reader, path: str) -> int:
    """Writes a RecordBatchReader to one Parquet file; returns the rows written."""
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            if batch.num_rows:
                writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
                rows += batch.num_rows
    return rows


def write_vocabularies(stage: str, vocab: dict, kinds: dict, video_counts: np.ndarray) -> None:
    """`videos.h5` (counts: the training watches, every watch but each user's last) and
    `users.h5` (counts: every watch), in model-id order."""
    for table, name, counts in (("videos", "video", video_counts),
                                ("users", "user", vocab["users"][1])):
        ids = vocab[table][0]
        ids = np.asarray(ids, dtype=str if kinds[name] == "string" else np.int64)
        Vocabulary(ids, counts, name=name).save(os.path.join(stage, f"{table}.h5"))


def pad_histories(histories, max_history: int) -> np.ndarray:
    """A pyarrow list array of histories (oldest first, at most `max_history`) as a left-padded
    `(n, max_history)` int64 array, newest last."""
    import pyarrow as pa

    histories = histories.combine_chunks() if isinstance(histories, pa.ChunkedArray) \
        else histories
    n = len(histories)
    out = np.zeros((n, max_history), np.int64)
    if n == 0:
        return out
    offsets = np.asarray(histories.offsets, np.int64)
    values = np.asarray(histories.values.to_numpy(zero_copy_only=False), np.int64)
    lengths = np.diff(offsets)
    if lengths.size and lengths.max() > max_history:
        raise ValueError(f"a watch history holds {lengths.max()} watches, more than "
                         f"max_history={max_history}")
    rows = np.repeat(np.arange(n), lengths)
    starts = np.repeat(offsets[:-1], lengths)
    cols = max_history - np.repeat(lengths, lengths) + (np.arange(offsets[0], offsets[-1]) -
                                                        starts)
    out[rows, cols] = values[offsets[0]:offsets[-1]]
    return out


class _ShardWriter:
    """Parquet shards of at most `rows_per_shard` rows, `part-00000.parquet`, ..."""

    def __init__(self, folder: str, schema, rows_per_shard: int,
                 row_group_rows: int = ROW_GROUP_ROWS):
        self.folder, self.schema, self.limit = folder, schema, rows_per_shard
        self.row_group_rows = row_group_rows
        os.makedirs(folder, exist_ok=True)
        self.writer, self.rows, self.shards, self.total = None, 0, 0, 0

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        start = 0
        while start < table.num_rows:
            if self.writer is None:
                path = os.path.join(self.folder, f"part-{self.shards:05d}.parquet")
                # No dictionaries (histories do not repeat): 2x faster to write, 3x to read.
                self.writer = pq.ParquetWriter(path, self.schema, use_dictionary=False,
                                               compression="zstd")
                self.shards += 1
            take = min(table.num_rows - start, self.limit - self.rows)
            self.writer.write_table(table.slice(start, take), row_group_size=self.row_group_rows)
            self.rows += take
            self.total += take
            start += take
            if self.rows >= self.limit:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer, self.rows = None, 0


EXAMPLE_COLUMNS = ("user", "label", "timestamp", "watch_time", "example_age", "watch_history")


def example_schema():
    import pyarrow as pa

    return pa.schema([("user", pa.int64()), ("label", pa.int64()), ("timestamp", pa.float64()),
                      ("watch_time", pa.float32()), ("example_age", pa.float32()),
                      ("watch_history", pa.list_(pa.int32()))])


def _examples(table):
    import pyarrow as pa

    schema = example_schema()
    return pa.table([table.column(c).cast(schema.field(c).type) for c in EXAMPLE_COLUMNS],
                    schema=schema)


def split_and_write(reader, stage: str, rows_per_shard: int) -> dict:
    """Writes the example rows of the engine's final query: training shards, validation, test.

    Returns:
        The number of rows of each output.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = example_schema()
    train = _ShardWriter(os.path.join(stage, TRAIN_DIR), schema, rows_per_shard)
    singles = {name: _ShardWriter(os.path.join(stage, f".{name}"), schema, 1 << 62)
               for name in ("validation", "test")}
    try:
        for batch in reader:
            if not batch.num_rows:
                continue
            table = pa.Table.from_batches([batch])
            role = table.column("role")
            for code, writer in ((ROLE_TRAIN, train), (ROLE_VALIDATION, singles["validation"]),
                                 (ROLE_TEST, singles["test"])):
                part = table.filter(pc.equal(role, code))
                if part.num_rows:
                    writer.write(_examples(part))
    finally:
        for writer in (train, *singles.values()):
            writer.close()
    sizes = {"train": train.total}
    for name, writer in singles.items():
        _single_file(writer, os.path.join(stage, f"{name}.parquet"))
        sizes[name] = writer.total
    return sizes


def write_latest(reader, stage: str, max_history: int) -> int:
    """Writes `latest.parquet`, each user's serving history: batches of `user` and the
    unpadded `watch_history` of the user's last `max_history` watches (oldest first, every one
    of them: watches in the same second as the last are history too), left-padded.

    Returns:
        The number of users written.
    """
    import pyarrow as pa

    schema = pa.schema([("user", pa.int64()),
                        ("watch_history", pa.list_(pa.int32(), max_history))])
    latest = _ShardWriter(os.path.join(stage, ".latest"), schema, 1 << 62)
    try:
        for batch in reader:
            if batch.num_rows:
                table = pa.Table.from_batches([batch])
                padded = pad_histories(table.column("watch_history"), max_history)
                flat = pa.array(padded.astype(np.int32).reshape(-1))
                latest.write(pa.table([table.column("user").cast(pa.int64()),
                                       pa.FixedSizeListArray.from_arrays(flat, max_history)],
                                      schema=schema))
    finally:
        latest.close()
    _single_file(latest, os.path.join(stage, "latest.parquet"))
    return latest.total


def _single_file(writer: _ShardWriter, target: str) -> None:
    """Moves a one-shard writer's file to `target` (an empty file if it wrote no row)."""
    files = sorted(os.listdir(writer.folder))
    if files:
        os.replace(os.path.join(writer.folder, files[0]), target)
    else:
        import pyarrow.parquet as pq

        pq.write_table(writer.schema.empty_table(), target)
    os.rmdir(writer.folder)


def sequence_schema():
    import pyarrow as pa

    return pa.schema([("user", pa.int64()), ("watch_history", pa.list_(pa.int32())),
                      ("label", pa.list_(pa.int32())), ("timestamp", pa.list_(pa.float64())),
                      ("watch_time", pa.list_(pa.float32())),
                      ("example_age", pa.list_(pa.float32())),
                      ("sequence_length", pa.int32())])


def write_sequences(reader, stage: str, rows_per_shard: int) -> int:
    """Writes sequence windows (unpadded lists, oldest first) as the training shards
    `train/part-*.parquet`; returns the number of windows."""
    import pyarrow as pa

    schema = sequence_schema()
    writer = _ShardWriter(os.path.join(stage, TRAIN_DIR), schema, rows_per_shard,
                          WINDOW_GROUP_ROWS)
    try:
        for batch in reader:
            if batch.num_rows:
                table = pa.Table.from_batches([batch])
                writer.write(pa.table([table.column(f.name).cast(f.type) for f in schema],
                                      schema=schema))
    finally:
        writer.close()
    return writer.total


def windows_to_numpy(table, max_history: int, columns=None) -> dict:
    """Sequence windows (a pyarrow table of `sequence_schema`, or some of its `columns`) as
    `keras_yt.data.sequence_examples` returns them: left-padded `(n, max_history)` arrays, newest
    last."""
    out = {}
    for name, dtype in (("user", np.int64), ("sequence_length", np.int32)):
        if columns is None or name in columns:
            out[name] = np.asarray(table.column(name).to_numpy(), dtype)
    for name, dtype in (("watch_history", np.int64), ("label", np.int64),
                        ("timestamp", np.float64), ("watch_time", np.float32),
                        ("example_age", np.float32)):
        if columns is None or name in columns:
            out[name] = (pad_histories(table.column(name), max_history) if dtype == np.int64
                         else _pad_float(table.column(name), max_history, dtype))
    return out


def read_sequences(folder: str, max_history: int) -> dict:
    """Every training window of a folder written by `prepare_sequences`, in file order (for
    tests and small data; training streams them with `keras_yt.data.ExampleShards`)."""
    import pyarrow.parquet as pq

    return windows_to_numpy(pq.read_table(os.path.join(folder, TRAIN_DIR)), max_history)


def _pad_float(column, max_history: int, dtype) -> np.ndarray:
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    out = np.zeros((n, max_history), dtype)
    offsets = np.asarray(column.offsets, np.int64)
    values = np.asarray(column.values.to_numpy(zero_copy_only=False), dtype)
    lengths = np.diff(offsets)
    rows = np.repeat(np.arange(n), lengths)
    cols = max_history - np.repeat(lengths, lengths) + (
        np.arange(offsets[0], offsets[-1]) - np.repeat(offsets[:-1], lengths))
    out[rows, cols] = values[offsets[0]:offsets[-1]]
    return out
