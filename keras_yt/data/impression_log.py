"""The impressions-log reader: `read_raw_impressions` (CSV or Parquet, raw ids, checked line by
line), the input of `keras-yt train-ranker`."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from keras_yt.data._column_checks import _check_column, _implausible
from keras_yt.data.io import _csv_text_chunks, _parquet_frame, _parse_text_column, _raw_ids

IMPRESSION_LOG_COLUMNS = ("user", "video", "timestamp", "clicked", "watch_time")


def read_raw_impressions(
    path: str | os.PathLike, categorical: Iterable[str] = ()
) -> dict[str, np.ndarray]:
    """Reads an impressions log (CSV or Parquet) with the log's own (raw) ids, checked line by line.

    An impression is a video shown to a user. The file holds the columns ``user, video,
    timestamp, clicked, watch_time`` and any further *feature* columns. The guarantees are those
    of `read_raw_watch_log`: ids exact (``7`` and ``007`` are two ids), timestamps Unix seconds
    or ISO-8601 with ``|t| < 1e11``, errors naming the file and the line (the row for Parquet).
    ``clicked`` must be 0 or 1 and ``watch_time`` finite and >= 0. Feature columns named in
    `categorical` are raw ids (integers or strings, map them with `keras_yt.data.Vocabulary`);
    every other feature column must hold finite numbers.

    Args:
        path: CSV file with a header, or a Parquet file (needs the ``keras-yt[parquet]`` extra).
        categorical: names of the feature columns that hold ids (language, device, ...).

    Returns:
        Columns in file order: ``user``, ``video`` and the categorical features as int64 or str
        arrays, ``timestamp`` float64 seconds, ``clicked`` int8, ``watch_time`` float32, the
        other features float64.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a column is missing or holds a bad value (the message names the file, the
            column and the line), or a `categorical` name is not a column.
        ImportError: a Parquet file without pandas / pyarrow.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "impressions.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("user,video,timestamp,clicked,watch_time,device,age\\n"
    ...                 "ana,v7,10,1,31.5,phone,3\\nbo,v7,12,0,0,tv,0.5\\n")
    >>> log = read_raw_impressions(path, categorical=["device"])
    >>> log["clicked"].tolist(), log["device"].tolist(), log["age"].tolist()
    ([1, 0], ['phone', 'tv'], [3.0, 0.5])
    >>> with open(path, "a") as f:
    ...     _ = f.write("bo,v8,13,2,0,tv,1\\n")
    >>> read_raw_impressions(path, categorical=["device"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Column 'clicked' of impressions log '...' must hold 0 or 1; got '2' on line 4
    """
    path = os.fspath(path)
    what = "impressions log"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    categorical = list(categorical)
    source = f"{what} {path!r}"
    if path.lower().endswith((".parquet", ".pq")):
        frame = _parquet_frame(path)
        names = [str(c) for c in frame.columns]
        missing = [c for c in IMPRESSION_LOG_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"{source} is missing column(s) {missing}; expected columns "
                             f"{list(IMPRESSION_LOG_COLUMNS)} (+ feature columns), got {names}")
        text = {c: np.asarray(frame[c]) for c in frame.columns}
        numbers = list(range(1, len(frame) + 1))
        where = "row"
    else:
        text, numbers = {}, []
        for chunk_numbers, chunk in _csv_text_chunks(path, 1_000_000, IMPRESSION_LOG_COLUMNS,
                                                     every_column=True, what=what):
            numbers.extend(chunk_numbers)
            for name, values in chunk.items():
                text.setdefault(name, []).extend(values)
        if not numbers:
            text = {c: [] for c in IMPRESSION_LOG_COLUMNS}
        where = "line"
    unknown = [c for c in categorical if c not in text or c in IMPRESSION_LOG_COLUMNS]
    if unknown:
        raise ValueError(f"categorical feature(s) {unknown} are not feature columns of {source}; "
                         f"its feature columns are "
                         f"{[c for c in text if c not in IMPRESSION_LOG_COLUMNS]}")
    columns: dict[str, np.ndarray] = {}
    for name, values in text.items():
        if name in ("user", "video") or name in categorical:
            values = np.asarray(values)
            if values.dtype.kind in "USO":
                empty = np.flatnonzero(np.char.strip(values.astype(str)) == "")
                if empty.size:
                    raise ValueError(f"Column '{name}' of {source} has an empty id on {where} "
                                     f"{numbers[empty[0]]}; expected an integer or string id")
            columns[name] = _raw_ids(values)
            continue
        kind = {"timestamp": "time", "clicked": "int"}.get(name, "float")
        if where == "line":
            try:
                parsed = _parse_text_column(name, values, numbers, path, kind, what)
            except ValueError as error:
                if name in IMPRESSION_LOG_COLUMNS:
                    raise
                raise ValueError(f"{error} (a column of ids? name it in --categorical)") \
                    from None
        else:
            array = np.asarray(values)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                i = int(np.flatnonzero(~np.isfinite(array))[0])
                raise ValueError(f"Column '{name}' of {source} must hold finite numbers; got "
                                 f"{array[i].item()!r} on row {numbers[i]}")
            parsed = _check_column(name, values, "time" if kind == "time" else "float", source)
            bad = _implausible(name, parsed)
            if bad is not None:
                raise ValueError(f"Column '{name}' of {source} must hold {bad[1]}; got "
                                 f"{values[bad[0]]!r} on row {numbers[bad[0]]}")
        if name == "clicked" and not np.isin(parsed, (0, 1)).all():
            i = int(np.flatnonzero(~np.isin(parsed, (0, 1)))[0])
            raise ValueError(f"Column 'clicked' of {source} must hold 0 or 1; got "
                             f"{str(values[i])!r} on {where} {numbers[i]}")
        columns[name] = parsed
    columns["clicked"] = columns["clicked"].astype(np.int8)
    columns["watch_time"] = columns["watch_time"].astype(np.float32)
    return columns
