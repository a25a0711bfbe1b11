"""The watch-log files that the out-of-core engines (DuckDB, Spark) read (private).

A log is a file, a folder of shards (`*.csv` / `*.parquet`) or a glob (`expand`); CSV headers are
checked as `read_watch_log` checks them (`csv_header`), and errors name the file and the line
or Parquet row (`where`, `duckdb_csv_error`, `first_line`).
"""

from __future__ import annotations

import csv
import glob as globlib
import os
import re
from typing import Any


def expand(log: Any) -> list[str]:
    """The files of a log: a file, a folder of shards (*.csv / *.parquet), or a glob; sorted."""
    if isinstance(log, (list, tuple)):
        out = []
        for item in log:
            out.extend(expand(item))
        return out
    path = os.fspath(log)
    if os.path.isdir(path):
        files = sorted(f for ext in ("csv", "parquet", "pq")
                       for f in globlib.glob(os.path.join(path, f"*.{ext}")))
        if not files:
            raise ValueError(f"watch log folder {path!r} holds no .csv or .parquet files")
        return files
    if any(ch in path for ch in "*?["):
        files = sorted(f for f in globlib.glob(path) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"watch log pattern {path!r} matches no file")
        return files
    if not os.path.exists(path):
        raise FileNotFoundError(f"watch log {path!r} does not exist")
    return [path]


def csv_header(path: str) -> list[str]:
    """The checked header of a CSV watch log (same checks and messages as `read_watch_log`)."""
    from keras_yt.data.io import _csv_header, _decoded_lines

    with open(path, "rb") as f:
        return _csv_header(path, _decoded_lines(path, f))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def duckdb_csv_error(error: BaseException) -> str:
    """A one-paragraph message from a DuckDB CSV reader error, keeping its file and line."""
    text = str(error)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    original = re.search(r"Original Line: (.*)", text)
    name = re.search(r"^\s*file = (.*)$", text, flags=re.M)
    where = f"{name.group(1).strip()!r} " if name else ""
    if line and found:
        expected, got = int(found.group(1)), int(found.group(2))
        extra = "an extra value" if got > expected else "a missing value"
        return (f"{where}line {line.group(1)}: {got} values for {expected} header columns "
                f"({extra}); expected one value per column"
                + (f" (line: {original.group(1).strip()!r})" if original else ""))
    if line:
        body = text.split("Possible fixes")[0].split("\n", 1)[-1].strip().replace("\n", "; ")
        return f"{where}line {line.group(1)}: {body}"
    if "unicode" in text.lower() or "utf" in text.lower():
        return ("not UTF-8 text; expected a CSV text file (is it a binary file?) "
                f"({first_line(error)})")
    return first_line(error)


def where(filename: str, index: int) -> str:
    """'on line N' of a CSV file's `index`-th data row (0-based), or the Parquet row group."""
    if filename.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(filename).metadata
        start = 0
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            if index < start + rows:
                return f"in row {index} (row group {group}, row {index - start} in it)"
            start += rows
        return f"in row {index}"
    with open(filename, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)  # the header
        k = -1
        for row in reader:
            if not row or not "".join(row).strip():
                continue
            k += 1
            if k == index:
                return f"on line {reader.line_num}"
    return f"in data row {index + 1}"
