"""Watch-log containers and readers: validation, CSV / Parquet reading, streaming by user.

A *watch log* is a numpy structured array with the fields of `WATCH_DTYPE`:

* ``user`` (int64) – user id,
* ``video`` (int64) – video id in ``[1, num_videos)``; ``0`` is padding and never a watch,
* ``timestamp`` (float64) – seconds (Unix time for MovieLens, seconds since the start of the
  simulated window for `keras_yt.datasets.synthetic`). Readers accept Unix seconds (int or
  float) or ISO-8601 date-times (strings such as ``2016-09-15T10:30:00Z``, numpy ``datetime64``,
  ``datetime`` objects); date-times without a time zone are taken as UTC. Numbers must be
  plain ASCII decimals (no ``1_000``, ``nan``, ``inf``) with ``|t| < 1e11``: milliseconds (or a
  log mixing seconds and milliseconds) are rejected, naming the line,
* ``watch_time`` (float32) – seconds watched, finite and >= 0 (for MovieLens: the rating, used
  as a weight).
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union

import numpy as np

from keras_yt.data._column_checks import (  # noqa: F401  (MAX_ABS_SECONDS: re-exported)
    _NUMBER,
    MAX_ABS_SECONDS,
    _check_column,
    _check_plausible,
    _first_non_number,
    _implausible,
    _one_timestamp,
    to_unix_seconds,
)

WATCH_DTYPE = np.dtype(
    [("user", "<i8"), ("video", "<i8"), ("timestamp", "<f8"), ("watch_time", "<f4")]
)
"""Structured dtype of a watch log (see the module docstring)."""

WATCH_COLUMNS = ("user", "video", "timestamp")
"""Columns a watch log must have; ``watch_time`` is optional (default 1.0)."""

WatchLogLike = Union[np.ndarray, Mapping[str, Any], str, os.PathLike, Iterable]

_INTEGER_COLUMNS = {"user", "video", "clicked", "previous_impressions"}

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
        "timestamp": _check_plausible(
            "timestamp", _check_column("timestamp", data["timestamp"], "time", source), source),
    }
    n = len(columns["user"])
    if "watch_time" in names:
        columns["watch_time"] = _check_plausible(
            "watch_time", _check_column("watch_time", data["watch_time"], "float", source),
            source)
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


def _decoded_lines(path: str, f, what: str = "watch log") -> Iterator[tuple[int, str]]:
    """(line number, text) of a binary file object, with a clear error for non-UTF-8 bytes."""
    for number, raw in enumerate(f, start=1):
        if b"\0" in raw:
            raise ValueError(f"{what} {path!r} line {number}: holds NUL bytes; expected a "
                             "UTF-8 CSV text file (is it a binary file?)")
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} {path!r} line {number}: not UTF-8 text; expected a CSV "
                             "text file (is it a binary file?)") from None
        if "\r" in text.replace("\r\n", ""):
            raise ValueError(
                f"{what} {path!r} line {number}: a carriage return (\\r) not followed by a "
                "line feed, as in files with CR-only (classic Mac) line endings; expected LF or "
                "CRLF line endings (convert with: tr '\\r' '\\n' < old.csv > new.csv)"
            )
        yield number, text


def _csv_header(path: str, lines: Iterator[tuple[int, str]], required=WATCH_COLUMNS,
                what: str = "watch log") -> list[str]:
    for number, text in lines:
        if text.strip():
            try:
                header = [h.strip() for h in next(csv.reader([text]))]
            except csv.Error as error:
                raise ValueError(f"{what} {path!r} line {number}: {error}") from None
            break
    else:
        raise ValueError(f"{what} {path!r} is empty; expected a header line")
    seen = set()
    for name in header:
        if name in seen:
            raise ValueError(f"{what} {path!r} line {number}: the header names column "
                             f"{name!r} twice; expected each column once, got {header}")
        seen.add(name)
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(
            f"{what} {path!r} is missing column(s) {missing}; expected a header with "
            f"{list(required)}"
            + (" (+ optional 'watch_time')" if required == WATCH_COLUMNS else "")
            + f", got {header}"
        )
    return header


def _csv_text_chunks(path: str, chunk_size: int, required=WATCH_COLUMNS, every_column=False,
                     what: str = "watch log") -> Iterator[tuple[list[int], dict]]:
    """(line numbers, {column: list of str}) per chunk, with checked row lengths.

    The columns are the watch log's (`every_column=False`) or every column of the header."""
    with open(path, "rb") as f:
        lines = _decoded_lines(path, f, what)
        header = _csv_header(path, lines, required, what)
        wanted = header if every_column else [
            c for c in ("user", "video", "timestamp", "watch_time") if c in header]
        positions = [header.index(c) for c in wanted]
        while True:
            block = list(itertools.islice(lines, chunk_size))
            if not block:
                return
            block = [(n, t) for n, t in block if t.strip()]
            if not block:
                continue
            numbers = [n for n, _ in block]
            try:
                rows = list(csv.reader([t for _, t in block], skipinitialspace=True))
            except csv.Error as error:
                raise ValueError(f"{what} {path!r} (lines {numbers[0]}-{numbers[-1]}): "
                                 f"{error}") from None
            for number, row in zip(numbers, rows):
                if len(row) != len(header):
                    extra = "an extra value" if len(row) > len(header) else "a missing value"
                    raise ValueError(
                        f"{what} {path!r} line {number}: {len(row)} values for "
                        f"{len(header)} header columns ({extra}); expected one value per column "
                        f"of {header}"
                    )
            yield numbers, {c: [row[p] for row in rows] for c, p in zip(wanted, positions)}


def _parse_text_column(name: str, values: list, numbers: list, path: str, kind: str,
                       what: str = "watch log"):
    """Converts one CSV column (strings); errors name the file and the line."""
    array = np.asarray(values, dtype=str)
    try:
        if kind != "time" and _first_non_number(array) is not None:
            raise ValueError
        parsed = _parse_text(array, kind)
    except (ValueError, OverflowError):
        position = _first_bad(array, kind)
        expected = {"int": "integers", "time": "numbers (Unix seconds) or ISO-8601 date-times",
                    "float": "numbers"}[kind]
        raise ValueError(
            f"Column '{name}' of {what} {path!r} must hold {expected}; got "
            f"{str(array[position])!r} on line {numbers[position]}"
            + ("" if kind != "int" or name not in ("user", "video") else
               " (string ids are read by `read_raw_watch_log` and `keras-yt train`)")
        ) from None
    bad = _implausible(name, parsed) if kind != "int" else None
    if bad is not None:
        raise ValueError(f"Column '{name}' of {what} {path!r} must hold {bad[1]}; got "
                         f"{str(array[bad[0]])!r} on line {numbers[bad[0]]}")
    return parsed


def _parse_text(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "int":
        try:
            return array.astype(np.int64)
        except (ValueError, OverflowError):
            as_float = array.astype(np.float64)
            if np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)) and \
                    np.all(np.abs(as_float) < 2**53):
                return as_float.astype(np.int64)
            raise ValueError
    if kind == "time":
        return to_unix_seconds(array, "")
    return array.astype(np.float64)


def _first_bad(array: np.ndarray, kind: str) -> int:
    for i, value in enumerate(array.tolist()):
        if kind != "time" and not _NUMBER.fullmatch(value):
            return i
        try:
            if kind == "int":
                number = float(value)
                if not (number == round(number) and abs(number) < 2**63):
                    return i
            elif kind == "time":
                _one_timestamp(value, "", i)
            else:
                float(value)
        except (ValueError, OverflowError):
            return i
    return 0


def _csv_chunks(path: str, chunk_size: int) -> Iterator[np.ndarray]:
    for numbers, text in _csv_text_chunks(path, chunk_size):
        columns = {
            name: _parse_text_column(name, values, numbers, path,
                                     "int" if name in _INTEGER_COLUMNS else
                                     "time" if name == "timestamp" else "float")
            for name, values in text.items()
        }
        yield to_watch_log(columns, source=f"watch log {path!r}")


def _parquet_frame(path: str):
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(
            f"reading the Parquet watch log {path!r} needs the parquet extra: pip install "
            "'keras-yt[parquet]' (pandas and pyarrow); or convert it to CSV"
        ) from None
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises its own error types for damaged files
        raise ValueError(f"watch log {path!r} is not a readable Parquet file ({error})") from None


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


def read_raw_watch_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a watch-log file with the log's own (raw) user and video ids.

    Unlike `read_watch_log` (model ids >= 1), ids may be any non-negative integers (0 and values
    >= 2**31 included) or strings (``v248``): a column whose values are all canonical decimals
    (ASCII digits, no sign, no leading zeros: ``7`` but not ``007``, ``+7`` or ``7_0``) is read
    as int64, any other as strings, exactly as written (``007``, ``7`` and ``0007`` are three
    ids). Timestamps are Unix seconds or ISO-8601 date-times (see
    `to_unix_seconds`). Map the ids to model ids with `keras_yt.data.Vocabulary`.

    Args:
        path: CSV file with a header naming ``user,video,timestamp[,watch_time]``, or a Parquet
            file (needs the ``keras-yt[parquet]`` extra).

    Returns:
        `{"user", "video", "timestamp", "watch_time"}` columns in file order: ids as int64 or
        str arrays, timestamps as float64 seconds, watch times as float32 (1.0 if absent).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a watch log; the message names the file, and the line for a
            CSV (duplicated header column, a row with more or fewer values than the header, a
            binary file, a bad timestamp).
        ImportError: a Parquet file without pandas / pyarrow.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("user,video,timestamp\\nana,v248,2016-09-15T10:00:00Z\\nbo,0,1473933600\\n")
    >>> log = read_raw_watch_log(path)
    >>> log["video"].tolist(), log["timestamp"].tolist()
    (['v248', '0'], [1473933600.0, 1473933600.0])
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"watch log {path!r} does not exist")
    source = f"watch log {path!r}"
    if path.lower().endswith((".parquet", ".pq")):
        frame = _parquet_frame(path)
        missing = [c for c in WATCH_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{source} is missing column(s) {missing}; expected columns "
                             f"{list(WATCH_COLUMNS)} (+ optional 'watch_time')")
        text = {c: np.asarray(frame[c]) for c in frame.columns
                if c in ("user", "video", "timestamp", "watch_time")}
        numbers = list(range(2, len(frame) + 2))
        columns = {
            "user": _raw_ids(text["user"]),
            "video": _raw_ids(text["video"]),
            "timestamp": _check_plausible("timestamp", _check_column(
                "timestamp", text["timestamp"], "time", source), source),
        }
        if "watch_time" in text:
            columns["watch_time"] = _check_plausible("watch_time", _check_column(
                "watch_time", text["watch_time"], "float", source), source)
    else:
        parts: dict[str, list] = {}
        numbers = []
        for chunk_numbers, text in _csv_text_chunks(path, 1_000_000):
            numbers.extend(chunk_numbers)
            for name, values in text.items():
                parts.setdefault(name, []).extend(values)
        if not numbers:
            parts = {c: [] for c in WATCH_COLUMNS}
        for name in ("user", "video"):
            empty = next((i for i, v in enumerate(parts[name]) if not v.strip()), None)
            if empty is not None:
                raise ValueError(f"Column '{name}' of watch log {path!r} has an empty id on line "
                                 f"{numbers[empty]}; expected an integer or string id")
        columns = {
            "user": _raw_ids(parts["user"]),
            "video": _raw_ids(parts["video"]),
            "timestamp": _parse_text_column("timestamp", parts["timestamp"], numbers, path,
                                            "time"),
        }
        if "watch_time" in parts:
            columns["watch_time"] = _parse_text_column("watch_time", parts["watch_time"],
                                                       numbers, path, "float")
    n = len(columns["user"])
    if "watch_time" not in columns:
        columns["watch_time"] = np.ones(n)
    columns["watch_time"] = columns["watch_time"].astype(np.float32)
    if not np.all(np.isfinite(columns["timestamp"])):
        raise ValueError(f"Column 'timestamp' of {source} must hold finite numbers, got NaN/inf")
    return columns


def _raw_ids(values: Any) -> np.ndarray:
    """A raw id column: int64 when every value is an integer, else strings."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int64) if array.dtype.kind == "i" or not array.size or \
            array.max() < 2**63 else array.astype(str)
    if array.dtype.kind == "f":
        if array.size and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            return array.astype(np.int64)
        return array.astype(str)
    array = array.astype(str)
    if array.size:  # exact ids: integers only when every text is a canonical decimal
        from keras_yt.data.vocabulary import canonical_int_column

        values = canonical_int_column(array)
        if values is not None:
            return values
    return array


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
