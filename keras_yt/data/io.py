"""Watch-log containers and readers: validation, CSV / Parquet reading, streaming by user.

A *watch log* is a numpy structured array with the fields of `WATCH_DTYPE`:

* ``user`` (int64) – user id,
* ``video`` (int64) – video id in ``[1, num_videos)``; ``0`` is padding and never a watch,
* ``timestamp`` (float64) – seconds (Unix time for MovieLens, seconds since the start of the
  simulated window for `keras_yt.datasets.synthetic`),
* ``watch_time`` (float32) – seconds watched (for MovieLens: the rating, used as a weight).
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union

import numpy as np

WATCH_DTYPE = np.dtype(
    [("user", "<i8"), ("video", "<i8"), ("timestamp", "<f8"), ("watch_time", "<f4")]
)
"""Structured dtype of a watch log (see the module docstring)."""

WATCH_COLUMNS = ("user", "video", "timestamp")
"""Columns a watch log must have; ``watch_time`` is optional (default 1.0)."""

WatchLogLike = Union[np.ndarray, Mapping[str, Any], str, os.PathLike, Iterable]

_INTEGER_COLUMNS = {"user", "video", "clicked", "previous_impressions"}


def _check_column(name: str, values: Any, kind: str, source: str) -> np.ndarray:
    """Converts one column to numpy, raising a ValueError that names it on a bad type."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"Column '{name}' of {source} must be one-dimensional, got shape {array.shape}"
        )
    if kind == "int":
        if array.dtype.kind in "iub":
            return array.astype(np.int64)
        if array.dtype.kind == "f" and array.size and np.all(np.isfinite(array)) and np.all(
            array == np.round(array)
        ):
            return array.astype(np.int64)
        if array.dtype.kind == "f" and array.size == 0:
            return array.astype(np.int64)
        raise ValueError(
            f"Column '{name}' of {source} must hold integers, got dtype {array.dtype}"
            + (f" (e.g. {array[:3].tolist()!r})" if array.size else "")
        )
    if array.dtype.kind in "iubf":
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"Column '{name}' of {source} must hold finite numbers, got NaN/inf")
        return array.astype(np.float64)
    raise ValueError(
        f"Column '{name}' of {source} must hold numbers, got dtype {array.dtype}"
        + (f" (e.g. {array[:3].tolist()!r})" if array.size else "")
    )


def to_watch_log(data: Mapping[str, Any] | np.ndarray, source: str = "watches") -> np.ndarray:
    """Validates columns and converts them to a structured array with `WATCH_DTYPE`.

    Args:
        data: a structured numpy array or a mapping (dict, pandas DataFrame) with the columns
            ``user``, ``video``, ``timestamp`` and optionally ``watch_time`` (default 1.0).
        source: name used in error messages.

    Returns:
        A new structured array of dtype `WATCH_DTYPE`, in the input order.

    Raises:
        ValueError: a column is missing or has the wrong type, or a video id is below 1.

    Example:
    >>> log = to_watch_log({"user": [1, 1], "video": [5, 7], "timestamp": [10, 20]})
    >>> log["video"].tolist(), log["watch_time"].tolist()
    ([5, 7], [1.0, 1.0])
    """
    names = _column_names(data)
    missing = [c for c in WATCH_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"{source} is missing column(s) {missing}; expected columns "
            f"{list(WATCH_COLUMNS)} (+ optional 'watch_time'), got {sorted(names)}"
        )
    columns = {
        "user": _check_column("user", data["user"], "int", source),
        "video": _check_column("video", data["video"], "int", source),
        "timestamp": _check_column("timestamp", data["timestamp"], "float", source),
    }
    n = len(columns["user"])
    if "watch_time" in names:
        columns["watch_time"] = _check_column("watch_time", data["watch_time"], "float", source)
    else:
        columns["watch_time"] = np.ones(n)
    for name, values in columns.items():
        if len(values) != n:
            raise ValueError(
                f"Column '{name}' of {source} has {len(values)} rows, expected {n} like 'user'"
            )
    if n and columns["video"].min() < 1:
        bad = int(columns["video"].min())
        raise ValueError(
            f"Column 'video' of {source} must hold ids >= 1 (0 is padding), got {bad}"
        )
    out = np.empty(n, dtype=WATCH_DTYPE)
    for name, values in columns.items():
        out[name] = values
    return out


def _column_names(data: Any) -> set[str]:
    if isinstance(data, np.ndarray):
        if data.dtype.names is None:
            raise ValueError(
                "watches must be a structured array with named fields or a mapping of columns, "
                f"got a plain array of dtype {data.dtype} and shape {data.shape}"
            )
        return set(data.dtype.names)
    if isinstance(data, Mapping) or hasattr(data, "columns"):
        return {str(c) for c in (data.columns if hasattr(data, "columns") else data.keys())}
    raise ValueError(
        "watches must be a structured array, a mapping of columns, a file path or an iterable "
        f"of such chunks, got {type(data).__name__}"
    )


def _csv_chunks(path: str, chunk_size: int) -> Iterator[np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        header_line = f.readline()
        if not header_line:
            raise ValueError(f"watch log {path!r} is empty; expected a header line")
        header = [h.strip() for h in next(csv.reader([header_line]))]
        missing = [c for c in WATCH_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"watch log {path!r} is missing column(s) {missing}; expected a header with "
                f"{list(WATCH_COLUMNS)} (+ optional 'watch_time'), got {header}"
            )
        wanted = [c for c in ("user", "video", "timestamp", "watch_time") if c in header]
        line_number = 2
        while True:
            lines = list(itertools.islice(f, chunk_size))
            if not lines:
                return
            lines = [line for line in lines if line.strip()]
            if not lines:
                line_number += chunk_size
                continue
            columns = {}
            for name in wanted:
                dtype = np.int64 if name in _INTEGER_COLUMNS else np.float64
                try:
                    columns[name] = np.loadtxt(
                        lines, delimiter=",", usecols=header.index(name), dtype=dtype, ndmin=1
                    )
                except ValueError as error:
                    expected = "integers" if dtype is np.int64 else "numbers"
                    raise ValueError(
                        f"Column '{name}' of watch log {path!r} (lines {line_number}-"
                        f"{line_number + len(lines) - 1}) must hold {expected}: {error}"
                    ) from None
            line_number += len(lines)
            yield to_watch_log(columns, source=f"watch log {path!r}")


def _parquet_frame(path: str):
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"Reading the Parquet watch log {path!r} needs pandas and pyarrow (pip install pandas "
            "pyarrow); or convert it to CSV with the header user,video,timestamp[,watch_time]"
        ) from None
    try:
        return pd.read_parquet(path)
    except ImportError as error:
        raise ImportError(
            f"Reading the Parquet watch log {path!r} needs pyarrow or fastparquet "
            f"(pip install pyarrow): {error}"
        ) from None


def iter_watch_log(path: str | os.PathLike, chunk_size: int = 1_000_000) -> Iterator[np.ndarray]:
    """Reads a watch-log file in chunks of at most `chunk_size` rows.

    CSV files need a header naming the columns ``user,video,timestamp[,watch_time]`` (any order,
    extra columns ignored). Parquet files (``.parquet``/``.pq``) need pandas with pyarrow or
    fastparquet and are read whole, then yielded in chunks.

    Args:
        path: CSV or Parquet file.
        chunk_size: rows per chunk.

    Returns:
        An iterator of structured arrays of dtype `WATCH_DTYPE`, in file order.

    Raises:
        ValueError: a column is missing or holds values of the wrong type (the message names it).

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("user,video,timestamp\\n1,3,10\\n1,4,20\\n2,3,5\\n")
    >>> [len(chunk) for chunk in iter_watch_log(path, chunk_size=2)]
    [2, 1]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"watch log {path!r} does not exist")
    if path.lower().endswith((".parquet", ".pq")):
        log = to_watch_log(_parquet_frame(path), source=f"watch log {path!r}")
        for start in range(0, len(log), chunk_size):
            yield log[start : start + chunk_size]
        return
    yield from _csv_chunks(path, chunk_size)


def read_watch_log(path: str | os.PathLike) -> np.ndarray:
    """Reads a whole watch-log file (CSV, or Parquet when pandas + pyarrow are installed).

    Args:
        path: CSV file with a header naming ``user,video,timestamp[,watch_time]`` (comma
            separated; extra columns are ignored), or a ``.parquet`` file with these columns.

    Returns:
        Structured array of dtype `WATCH_DTYPE` in file order; ``watch_time`` is 1.0 when the
        file has no such column.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a column is missing, holds values of the wrong type, or a video id is < 1;
            the message names the column, the value received and what was expected.
        ImportError: a Parquet file without pandas / pyarrow installed.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("user,video,timestamp,watch_time\\n1,3,10,30.5\\n2,3,5,12\\n")
    >>> log = read_watch_log(path)
    >>> log["user"].tolist(), log["watch_time"].tolist()
    ([1, 2], [30.5, 12.0])
    """
    chunks = list(iter_watch_log(path))
    if not chunks:
        return np.empty(0, dtype=WATCH_DTYPE)
    return np.concatenate(chunks)


def iter_chunks(
    source: Any, chunk_size: int, converter=to_watch_log, name: str = "watches"
) -> Iterator[np.ndarray]:
    """Yields structured-array chunks from an array, a mapping, a path or an iterable of chunks."""
    if isinstance(source, (str, os.PathLike)):
        yield from iter_watch_log(source, chunk_size)
        return
    if isinstance(source, np.ndarray) or isinstance(source, Mapping) or hasattr(source, "columns"):
        data = converter(source, source=name)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]
        return
    if isinstance(source, Iterable):
        for chunk in source:
            yield converter(chunk, source=f"a chunk of {name}")
        return
    raise ValueError(
        f"{name} must be a structured array, a mapping of columns, a file path or an iterable of "
        f"chunks, got {type(source).__name__}"
    )


def iter_user_blocks(chunks: Iterable[np.ndarray], name: str = "watches") -> Iterator[np.ndarray]:
    """Regroups chunks sorted by user into blocks that each hold complete users.

    Rows of the last user of a chunk are held back and joined with the next chunk, so a user is
    never split across blocks. Raises ValueError if the user ids decrease (input not sorted).
    """
    carry = None
    last_user = None
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        users = chunk["user"]
        previous = np.concatenate([[users[0] if last_user is None else last_user], users[:-1]])
        decreasing = np.flatnonzero(users < previous)
        if decreasing.size:
            i = decreasing[0]
            raise ValueError(
                f"{name} given as chunks or a file must be sorted by 'user' (ascending); got "
                f"user {int(users[i])} after user {int(previous[i])}. Sort the log by user, or "
                "pass it as an in-memory array"
            )
        last_user = users[-1]
        block = chunk if carry is None else np.concatenate([carry, chunk])
        cut = np.searchsorted(block["user"], block["user"][-1], side="left")
        if cut > 0:
            yield block[:cut]
        carry = block[cut:]
    if carry is not None and len(carry):
        yield carry
