"""The example-generation job on DuckDB (private engine of `keras_yt.data.prepare_examples`).

One out-of-core job, run by DuckDB under a `memory_limit` with a spill directory: read the log
(CSV or Parquet, one file or a glob of shards), validate it, number the videos and users by
decreasing count (`keras_yt.data.Vocabulary`'s rule: ties by raw id), order each user's watches
by (timestamp, input order), and write, in one pass over a window query, the rows that
`keras-yt train` builds in memory today: the training examples of every next watch (history: the
last `max_history` watches strictly before it in time), each user's last-but-one watch
(validation) and last watch (test), as `keras_yt.evaluation.LeaveLastOut` splits them, each
user's serving history and the distinct (user, video) pairs. For the order-aware tower
(`prepare_sequences`) the same job writes per-user sequence windows as the training files and
gives the held-out watches every earlier watch as history. The layout of the output is
`keras_yt.data.prepare` 's.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from keras_yt.data import _log_files as log_files
from keras_yt.data import _prepared_folder as prepared_folder
from keras_yt.data.io import WATCH_COLUMNS


def run(
    paths: list[str],
    stage: str,
    max_history: int,
    max_examples_per_user: int | None,
    memory_limit: str | None,
    temp_directory: str,
    threads: int | None,
    rows_per_shard: int,
    sequences: bool = False,
) -> dict:
    """Writes the prepared folder's files into `stage`; returns the manifest's engine part.

    With `sequences`, the training files are per-user sequence windows (`cap`: the most recent
    windows per user) and the held-out watches read every earlier watch (see `_job`)."""
    with _connection(memory_limit, temp_directory, threads) as con:
        _STEPS.clear()
        _mark()
        kinds = _load(con, paths)
        result = _job(con, stage, max_history, max_examples_per_user, rows_per_shard, kinds,
                      sequences)
        result["step_seconds"] = dict(_STEPS)
        return result


_STEPS: dict = {}
_LAST: list = [0.0]


def _mark(name: str | None = None) -> None:
    """Records the seconds since the previous mark under `name` (the manifest's step times)."""
    now = time.perf_counter()
    if name is not None:
        _STEPS[name] = round(now - _LAST[0], 3)
    _LAST[0] = now


@contextlib.contextmanager
def _connection(memory_limit: str | None, temp_directory: str, threads: int | None):
    import duckdb

    os.makedirs(temp_directory, exist_ok=True)
    # In memory up to memory_limit, spilling to temp_directory beyond it (a database file
    # would write every table to disk: slower, no less memory).
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET temp_directory = {_quote(temp_directory)}")
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        if memory_limit:
            con.execute(f"SET memory_limit = {_quote(str(memory_limit))}")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        yield con
    finally:
        con.close()


# ---------------------------------------------------------------------- reading and validation


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load(con, paths: list[str]) -> dict:
    """Reads the log into table `raw` (rowid = input order) and its typed view into `w`."""
    parquet = all(p.lower().endswith((".parquet", ".pq")) for p in paths)
    if not parquet and any(p.lower().endswith((".parquet", ".pq")) for p in paths):
        raise ValueError(f"the watch log mixes Parquet and CSV files: {paths[:5]}")
    files = "[" + ", ".join(_quote(p) for p in paths) + "]"
    if parquet:
        source = f"read_parquet({files}, filename = true, file_row_number = true)"
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        except Exception as error:
            raise ValueError(f"watch log {paths[0]!r}: not a readable Parquet file "
                             f"({log_files.first_line(error)})") from None
        columns = {row[0]: row[1] for row in described}
        missing = [c for c in WATCH_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"watch log {paths[0]!r} is missing column(s) {missing}; expected "
                             f"columns {list(WATCH_COLUMNS)} (+ optional 'watch_time'), "
                             f"got {sorted(set(columns) - {'filename', 'file_row_number'})}")
        wanted = [c for c in ("user", "video", "timestamp", "watch_time") if c in columns]
        select = ", ".join(f'"{c}"' for c in wanted) + ", filename, file_row_number"
    else:
        header = None
        for path in paths:
            this = log_files.csv_header(path)
            if header is not None and this != header:
                raise ValueError(f"watch log {path!r}: header {this} differs from the header "
                                 f"{header} of {paths[0]!r}; every shard needs the same columns")
            header = this
        columns = {name: "VARCHAR" for name in header}
        spec = "{" + ", ".join(f"{_quote(c)}: 'VARCHAR'" for c in header) + "}"
        source = (f"read_csv({files}, header = true, auto_detect = false, delim = ',', "
                  f"quote = '\"', escape = '\"', strict_mode = true, columns = {spec}, "
                  "filename = true)")
        wanted = [c for c in ("user", "video", "timestamp", "watch_time") if c in columns]
        select = ", ".join(f'"{c}"' for c in wanted) + ", filename"
    try:
        con.execute(f"CREATE TABLE raw AS SELECT {select} FROM {source}")
    except Exception as error:
        raise ValueError(f"watch log {paths[0] if len(paths) == 1 else paths}: "
                         f"{log_files.duckdb_csv_error(error)}") from None
    _mark("read")
    # Every check in one scan; the message (file and line of the first bad row) only on failure.
    checks, kind_tests, exprs = [], {}, {}
    for name in ("user", "video"):
        exprs[name], checks_of, kind_tests[name] = _id_column(name, columns[name], paths)
        checks.extend(checks_of)
    time_expr = _time_expr(columns["timestamp"])
    checks.append(("timestamp", f"({time_expr}) IS NULL OR NOT isfinite({time_expr})",
                   "numbers (Unix seconds) or ISO-8601 date-times"))
    if "watch_time" in columns:
        wt_expr = 'TRY_CAST("watch_time" AS DOUBLE)'
        checks.append(("watch_time", f"{wt_expr} IS NULL OR NOT isfinite({wt_expr})",
                       "numbers"))
    else:
        wt_expr = "1.0"
    flags = [f"coalesce(bool_or({bad}), false)" for _, bad, _ in checks] + [
        f"coalesce({test}, true)" for test in kind_tests.values()]
    values = con.execute(f"SELECT {', '.join(flags)} FROM raw").fetchall()[0]
    for (name, bad, expected), failed in zip(checks, values):
        if failed:
            _check_rows(con, bad, name, expected, paths)
    kinds = {}
    for (name, test), is_int in zip(kind_tests.items(), values[len(checks):]):
        kinds[name] = ("int" if is_int else "string",
                       exprs[name][0] if is_int else exprs[name][1])
    con.execute(
        f"CREATE TABLE w AS SELECT rowid AS rn, {kinds['user'][1]} AS u, "
        f"{kinds['video'][1]} AS v, {time_expr} AS ts, ({wt_expr})::FLOAT AS wt FROM raw"
    )
    con.execute("DROP TABLE raw")
    _mark("validate and type")
    return {name: kind for name, (kind, _) in kinds.items()}


def _id_column(name: str, dtype: str, paths: list[str]):
    """(int expression, string expression), checks, and the SQL aggregate that is true when
    every id is an integer (then the column is read as integers, else as strings)."""
    column = f'"{name}"'
    if dtype in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT",
                 "UBIGINT", "HUGEINT"):
        checks = [(name, f"{column} IS NULL", "ids (integers or strings)"),
                  (name, f"{column} < 0", "integers >= 0")]
        return ((f"CAST({column} AS BIGINT)", f"CAST({column} AS VARCHAR)"), checks,
                f"NOT bool_or({column} > 9223372036854775807)")
    if dtype != "VARCHAR":
        raise ValueError(f"Column '{name}' of watch log {paths[0]!r} must hold integer or "
                         f"string ids, got Parquet type {dtype}")
    text = f"ltrim({column})"
    checks = [(name, f"{column} IS NULL OR {text} = ''", "non-empty ids")]
    test = (f"bool_and(regexp_full_match({text}, '[0-9]+\\s*') AND "
            f"TRY_CAST(trim({column}) AS BIGINT) IS NOT NULL)")
    return (f"CAST(trim({column}) AS BIGINT)", text), checks, test


def _time_expr(dtype: str) -> str:
    column = '"timestamp"'
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return f"(epoch_us(CAST({column} AS TIMESTAMPTZ)) / 1e6)::DOUBLE"
    if dtype != "VARCHAR":
        return f"TRY_CAST({column} AS DOUBLE)"
    return (f"coalesce(TRY_CAST({column} AS DOUBLE), "
            f"(epoch_us(TRY_CAST(trim({column}) AS TIMESTAMPTZ)) / 1e6)::DOUBLE)")


def _check_rows(con, bad: str, name: str, expected: str, paths: list[str]) -> None:
    """Raises a ValueError naming the file and line (or row group) of the first bad row."""
    row = con.execute(f"SELECT min(rowid) FROM raw WHERE {bad}").fetchone()[0]
    if row is None:
        return
    value, filename = con.execute(
        f'SELECT CAST("{name}" AS VARCHAR), filename FROM raw WHERE rowid = {int(row)}'
    ).fetchone()
    first = con.execute(f"SELECT min(rowid) FROM raw WHERE filename = {_quote(filename)}")
    index = int(row) - int(first.fetchone()[0])
    raise ValueError(f"Column '{name}' of watch log {filename!r} must hold {expected}; got "
                     f"{value!r} {log_files.where(filename, index)}")


# ---------------------------------------------------------------------- the job


def _positions(con) -> int:
    """Vocabularies (tables `videos`, `users`) and table `p0`: the log in model ids with each
    watch's position in its user's (timestamp, input order), the user's count `n` and the
    previous timestamp. Returns the number of watches."""
    n_rows = con.execute("SELECT count(*) FROM w").fetchone()[0]
    if n_rows == 0:
        raise ValueError("the watch log has no rows")
    for table, column in (("videos", "v"), ("users", "u")):
        con.execute(
            f"CREATE TABLE {table} AS SELECT {column} AS raw, count(*)::BIGINT AS n, "
            f"row_number() OVER (ORDER BY count(*) DESC, {column}) AS id FROM w GROUP BY {column}"
        )
    con.execute("""
        CREATE TABLE p0 AS
        SELECT uu.id AS "user", vv.id::INTEGER AS video, w.ts, w.wt,
               (row_number() OVER ws - 1)::BIGINT AS pos,
               count(*) OVER (PARTITION BY uu.id) AS n,
               lag(w.ts) OVER ws AS ts_prev
        FROM w JOIN users uu ON w.u = uu.raw JOIN videos vv ON w.v = vv.raw
        WINDOW ws AS (PARTITION BY uu.id ORDER BY w.ts, w.rn)
    """)
    con.execute("DROP TABLE w")
    return int(n_rows)


def _vocabularies(con) -> dict:
    vocab = {}
    for table in ("videos", "users"):
        ids, n = zip(*con.execute(f"SELECT raw, n FROM {table} ORDER BY id").fetchall())
        vocab[table] = (list(ids), np.asarray(n, np.int64))
    return vocab


def _job(con, stage: str, max_history: int, cap: int | None, rows_per_shard: int,
         kinds: dict, sequences: bool = False) -> dict:
    """The prepared folder from the log in table `w`. Rollback examples (the paper's): a watch
    has an example when a strictly earlier watch exists, its history the watches strictly
    before it. `sequences` (the order-aware tower's): a watch is a label when any watch comes
    before it in the user's order, held-out ones read every earlier watch (same second too) and
    the training files are `keras_yt.data.sequence_examples`' windows of the watches that are
    not held out (`cap`: the most recent windows per user)."""
    H = int(max_history)
    n_rows = _positions(con)
    _mark("number ids and order watches")
    # r: the position of the first watch of a label's run of equal timestamps (its history ends
    # before it: the rollback), or the label's own (sequences: every earlier watch is history),
    # as `keras_yt.data.leave_last_out_split` computes it in memory.
    run_start = "pos" if sequences else """max(CASE WHEN ts_prev IS NULL OR ts_prev <> ts
                   THEN pos END) OVER (PARTITION BY "user" ORDER BY pos ROWS UNBOUNDED PRECEDING)"""
    con.execute(f"CREATE TABLE p1 AS SELECT *, {run_start} AS r FROM p0")
    con.execute("DROP TABLE p0")
    # role: 0 training example, 1 validation (last-but-one), 2 test (last), 3 no example.
    con.execute("""
        CREATE TABLE p2 AS
        SELECT "user", video, ts, wt, pos, n, r,
               CASE WHEN pos = n - 1 AND r >= 1 THEN 2
                    WHEN pos = n - 1 - held AND r >= 1 THEN 1
                    WHEN r >= 1 THEN 0 ELSE 3 END AS role
        FROM (SELECT *, max(CASE WHEN pos = n - 1 AND r >= 1 THEN 1 ELSE 0 END)
                        OVER (PARTITION BY "user") AS held FROM p1)
    """)
    con.execute("DROP TABLE p1")
    if cap is not None and not sequences:
        con.execute(f"""
            CREATE OR REPLACE TABLE p2 AS
            SELECT * REPLACE (CASE WHEN role = 0 AND k > {int(cap)} THEN 3 ELSE role END AS role)
            FROM (SELECT *, row_number() OVER (PARTITION BY "user", (role = 0)
                                               ORDER BY pos DESC) AS k FROM p2)
        """)
    refs = con.execute("""
        SELECT max(ts), max(ts) FILTER (WHERE role <> 2), max(ts) FILTER (WHERE role IN (0, 3))
        FROM p2
    """).fetchone()
    reference = {2: refs[0], 1: refs[1], 0: refs[2]}
    counts = dict(con.execute(
        "SELECT video, count(*) FROM p2 WHERE role <> 2 GROUP BY video").fetchall())
    vocab = _vocabularies(con)
    video_counts = np.zeros(len(vocab["videos"][0]), np.int64)
    for video, count in counts.items():
        video_counts[video - 1] = count
    prepared_folder.write_vocabularies(stage, vocab, kinds, video_counts)
    _mark("split and vocabularies")

    watched = con.sql('SELECT DISTINCT "user", video FROM p2 ORDER BY "user", video')
    prepared_folder.write_batches(_arrow_reader(watched, 1 << 20),
                                  prepared_folder.watched_path(stage))
    _mark("watched pairs")

    age = "((CASE role WHEN 2 THEN {2} WHEN 1 THEN {1} ELSE {0} END) - ts) / 86400.0"
    age = age.format(*(repr(float(v if v is not None else 0.0)) for v in
                       (reference[0], reference[1], reference[2])))
    # A history: the H watches before r (for sequences only the held-out rows are kept).
    query = f"""
        SELECT role, "user", video AS label, ts AS "timestamp",
               wt AS watch_time, ({age})::FLOAT AS example_age,
               coalesce(list(video) OVER (PARTITION BY "user" ORDER BY pos
                        ROWS BETWEEN (pos - r + {H}) PRECEDING AND (pos - r + 1) PRECEDING),
                        []::INTEGER[]) AS watch_history
        FROM p2 WHERE "user" > {{low}} AND "user" <= {{high}} {{rows}}
        QUALIFY {"role IN (1, 2)" if sequences else "role <> 3"}
    """
    # DuckDB's list window does not spill: at 10^8 watches one pass ran out of a 1 GB limit.
    # One pass per range of user ids instead, each of about `_rows_per_pass` watches.
    bounds = _user_ranges(vocab["users"][1], _rows_per_pass(con))
    ranges = list(zip(bounds[:-1], bounds[1:]))
    rows = f"AND pos >= n - 2 - {H}" if sequences else ""
    batches = (batch for low, high in ranges
               for batch in _arrow_reader(con.sql(query.format(low=low, high=high, rows=rows)),
                                          prepared_folder.BATCH_ROWS))
    sizes = prepared_folder.split_and_write(batches, stage, rows_per_shard)
    if sequences:
        keep = "" if cap is None else f"AND win < {int(cap)}"
        windows = f"""
            SELECT "user", list(input ORDER BY pos) AS watch_history,
                   list(video ORDER BY pos) AS label, list(ts ORDER BY pos) AS "timestamp",
                   list(wt ORDER BY pos) AS watch_time,
                   list((({float(reference[0] or 0.0)!r} - ts) / 86400.0)::FLOAT ORDER BY pos)
                       AS example_age,
                   count(*)::INTEGER AS sequence_length
            FROM (SELECT "user", video, ts, wt, pos,
                         (count(*) OVER (PARTITION BY "user") - 1 - pos) // {H} AS win,
                         lag(video) OVER (PARTITION BY "user" ORDER BY pos) AS input
                  FROM p2 WHERE role IN (0, 3) AND "user" > {{low}} AND "user" <= {{high}})
            WHERE pos >= 1 {keep}
            GROUP BY "user", win
        """
        batches = (batch for low, high in ranges
                   for batch in _arrow_reader(con.sql(windows.format(low=low, high=high)),
                                              prepared_folder.BATCH_ROWS))
        sizes["train"] = prepared_folder.write_sequences(batches, stage, rows_per_shard)
    # Serving: each user's last H watches, all of them (same-second ones too), in the same
    # ranges of users (list aggregates do not spill either).
    latest = f"""
        SELECT "user", list(video ORDER BY pos) AS watch_history FROM p2
        WHERE pos >= n - {H} AND "user" > {{low}} AND "user" <= {{high}} GROUP BY "user"
    """
    batches = (batch for low, high in ranges
               for batch in _arrow_reader(con.sql(latest.format(low=low, high=high)),
                                          prepared_folder.BATCH_ROWS))
    sizes["users"] = prepared_folder.write_latest(batches, stage, H)
    _mark("histories and Parquet writing")
    sizes["watches"] = int(n_rows)
    return {"counts": sizes, "example_age_reference": {
        "train": reference[0], "validation": reference[1], "test": reference[2]}}


_BYTES_PER_WINDOW_ROW = 128
"""Memory the history window takes per watch of one pass, with a margin: on a log of 10^4 users
with 1,000 watches each, a pass of 2 M watches ran out of a 100 MB limit, one of 1 M did not."""

_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
          "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def _rows_per_pass(con) -> int:
    """Watches per pass of the history window under the connection's memory limit."""
    value, unit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0].split()
    return max(1 << 14, int(float(value) * _UNITS[unit]) // _BYTES_PER_WINDOW_ROW)


def _user_ranges(watches_per_user: np.ndarray, rows_per_pass: int) -> list[int]:
    """Bounds `b` of passes over user model ids `(b[i], b[i + 1]]`, each of at most
    `rows_per_pass` watches (or one user with more). `watches_per_user[i]`: user id `i + 1`'s."""
    total = np.cumsum(watches_per_user)
    bounds = [0]
    while bounds[-1] < len(total):
        done = total[bounds[-1] - 1] if bounds[-1] else 0
        bounds.append(max(bounds[-1] + 1,
                          int(np.searchsorted(total, done + rows_per_pass, side="right"))))
    return bounds


def _arrow_reader(relation, rows: int):
    """A pyarrow RecordBatchReader over a DuckDB relation (the name changed in DuckDB 1.4)."""
    method = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    return method(rows)


def expand(paths: Any) -> list[str]:
    """Files of a log path: a file, a folder of shards, or a glob (sorted; error if none)."""
    return log_files.expand(paths)
