"""The example-generation job on Apache Spark (engine of `keras_yt.data.prepare_examples`).

The same job as `keras_yt.data.duckdb_examples`, written with Spark's DataFrame API so that it
runs on one machine (`local[*]`) or a cluster: the examples are identical (tested on the same
logs). Spark writes the large outputs itself (`train/` shards, the per-user files as Parquet
folders); only the vocabularies pass through the driver.

On a cluster, submit this module (the log and the output folder on storage that the driver and
the executors share, e.g. a mounted network file system):

    spark-submit --master yarn keras_yt/data/spark_examples.py --log /shared/logs/ --out
    /shared/examples

then train on the output with `keras-yt train --examples /shared/examples --out RUN`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_yt.data import _log_files as log_files
from keras_yt.data import _prepared_folder as prepared_folder
from keras_yt.data.io import WATCH_COLUMNS

ID_PATTERN = r"^[0-9]+\s*$"


def session(spill: str | None = None, master: str = "local[2]"):
    """A local SparkSession for the job (UTC session time zone)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ImportError("engine='spark' needs the spark extra: pip install 'keras-yt[spark]' "
                          "(pyspark; Java 17)") from None
    builder = (SparkSession.builder.master(master).appName("keras_yt.prepare")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4"))
    if spill:
        os.makedirs(spill, exist_ok=True)
        builder = builder.config("spark.local.dir", spill)
    return builder.getOrCreate()


def run(paths: list[str], stage: str, max_history: int, cap: int | None, spill: str,
        rows_per_shard: int, spark: Any = None, sequences: bool = False) -> dict:
    """Writes the prepared folder's files into `stage`; returns the manifest's engine part
    (`sequences`: the sequence model's folder, as `keras_yt.data.duckdb_examples._job`)."""
    from pyspark.sql import functions as F

    spark = spark or session(spill)
    previous_zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        w, kinds = _load(spark, paths)
        return _job(spark, F, w, kinds, stage, max_history, cap, rows_per_shard,
                    sequences)
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous_zone)


def _model_ids(spark, F, w, kinds: dict):
    """(watches, vocabularies, the log in model ids with its input-order columns)."""
    n_rows = w.count()
    if n_rows == 0:
        raise ValueError("the watch log has no rows")
    vocab, tables = {}, {}
    for table, column in (("videos", "v"), ("users", "u")):
        counts = w.groupBy(column).count().withColumnRenamed(column, "raw")
        rows = counts.orderBy(F.col("count").desc(), F.col("raw")).collect()
        ids = [r["raw"] for r in rows]
        vocab[table] = (ids, np.asarray([r["count"] for r in rows], np.int64))
        tables[table] = spark.createDataFrame(
            [(raw, i + 1) for i, raw in enumerate(ids)],
            schema=f"raw {'string' if kinds[table[:-1]] == 'string' else 'bigint'}, id bigint")
    s = (w.join(F.broadcast(tables["users"]).withColumnRenamed("id", "user"), w.u ==
                F.col("raw")).drop("raw")
          .join(F.broadcast(tables["videos"]).withColumnRenamed("id", "video"), w.v ==
                F.col("raw")).drop("raw"))
    return n_rows, vocab, s.withColumn("video", F.col("video").cast("int"))


# ---------------------------------------------------------------------- reading and validation


def _load(spark, paths: list[str]):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    parquet = all(p.lower().endswith((".parquet", ".pq")) for p in paths)
    if parquet:
        try:
            df = spark.read.parquet(*paths)
        except Exception as error:
            raise ValueError(f"watch log {paths[0]!r}: not a readable Parquet file "
                             f"({log_files.first_line(error)})") from None
        columns = {f.name: f.dataType for f in df.schema.fields}
    else:
        header = None
        for path in paths:
            this = log_files.csv_header(path)
            if header is not None and this != header:
                raise ValueError(f"watch log {path!r}: header {this} differs from the header "
                                 f"{header} of {paths[0]!r}; every shard needs the same columns")
            header = this
        schema = T.StructType([T.StructField(c, T.StringType()) for c in header])
        df = spark.read.csv(paths, header=True, schema=schema, mode="FAILFAST",
                            enforceSchema=True, quote='"', escape='"')
        columns = {c: T.StringType() for c in header}
    missing = [c for c in WATCH_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"watch log {paths[0]!r} is missing column(s) {missing}; expected "
                         f"columns {list(WATCH_COLUMNS)} (+ optional 'watch_time')")
    # Input order: files in sorted-name order, rows in file order within a file.
    order = {p: i for i, p in enumerate(paths)}
    df = df.withColumn("_file", F.input_file_name()).withColumn(
        "_row", F.monotonically_increasing_id())
    file_index = F.lit(-1)
    for path, i in order.items():
        file_index = F.when(F.col("_file").endswith(os.path.abspath(path)), F.lit(i)).otherwise(
            file_index)
    df = df.withColumn("_fi", file_index)
    try:
        df = df.cache()
        df.count()
    except Exception as error:
        raise ValueError(f"watch log {paths[0] if len(paths) == 1 else paths}: "
                         f"{_spark_error(error)}") from None
    kinds, exprs = {}, {}
    for name in ("user", "video"):
        kinds[name], exprs[name] = _id_kind(F, T, df, name, columns[name])
    time_expr = _time_expr(F, T, columns["timestamp"])
    _check(F, df, time_expr.isNull() | F.isnan(time_expr) | (F.abs(time_expr) == float("inf")),
           "timestamp", "numbers (Unix seconds) or ISO-8601 date-times")
    if "watch_time" in columns:
        wt = F.expr("try_cast(watch_time AS DOUBLE)")
        _check(F, df, wt.isNull() | F.isnan(wt) | (F.abs(wt) == float("inf")), "watch_time",
               "numbers")
    else:
        wt = F.lit(1.0)
    w = df.select(F.col("_fi"), F.col("_row"), exprs["user"].alias("u"),
                  exprs["video"].alias("v"), time_expr.alias("ts"),
                  wt.cast("float").alias("wt"))
    return w, kinds


def _spark_error(error: BaseException) -> str:
    text = str(error)
    if "Malformed" in text or "malformed" in text:
        return ("a malformed CSV row (a row with more or fewer values than the header, or a "
                "bad quote); " + log_files.first_line(error)[:300])
    return log_files.first_line(error)[:300]


def _id_kind(F, T, df, name: str, dtype):
    column = F.col(name)
    if isinstance(dtype, (T.LongType, T.IntegerType, T.ShortType, T.ByteType)):
        _check(F, df, column.isNull(), name, "ids (integers or strings)")
        _check(F, df, column < 0, name, "integers >= 0")
        return "int", column.cast("long")
    if isinstance(dtype, T.DecimalType):  # Spark's unsigned 64-bit
        _check(F, df, column.isNull(), name, "ids (integers or strings)")
        _check(F, df, column < 0, name, "integers >= 0")
        if df.filter(column > 9223372036854775807).limit(1).count():
            return "string", column.cast("string")
        return "int", column.cast("long")
    if not isinstance(dtype, T.StringType):
        raise ValueError(f"Column '{name}' of the watch log must hold integer or string ids, "
                         f"got {dtype.simpleString()}")
    text = F.ltrim(column)
    _check(F, df, column.isNull() | (text == ""), name, "non-empty ids")
    as_int = F.expr(f"try_cast(trim(`{name}`) AS BIGINT)")
    bad = df.filter(~(text.rlike(ID_PATTERN) & as_int.isNotNull())).limit(1).count()
    if bad == 0:
        return "int", as_int
    return "string", text


def _time_expr(F, T, dtype):
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        return F.expr("unix_micros(CAST(`timestamp` AS TIMESTAMP)) / 1e6").cast("double")
    if not isinstance(dtype, T.StringType):
        return F.col("timestamp").cast("double")
    number = F.expr("try_cast(`timestamp` AS DOUBLE)")
    date_time = F.expr("unix_micros(try_cast(trim(`timestamp`) AS TIMESTAMP)) / 1e6")
    return F.coalesce(number, date_time.cast("double"))


def _check(F, df, bad, name: str, expected: str) -> None:
    """Raises a ValueError naming the file (and line, for a local CSV) of the first bad row."""
    rows = df.filter(bad).orderBy("_fi", "_row").select(
        F.col(name).cast("string").alias("value"), "_file", "_fi", "_row").limit(1).collect()
    if not rows:
        return
    value, filename = rows[0]["value"], rows[0]["_file"]
    local = filename[len("file:"):] if filename.startswith("file:") else filename
    index = df.filter((F.col("_fi") == rows[0]["_fi"]) & (F.col("_row") < rows[0]["_row"]))
    where = log_files.where(local, index.count()) if os.path.exists(local) else ""
    raise ValueError(f"Column '{name}' of watch log {local!r} must hold {expected}; got "
                     f"{value!r} {where}".rstrip())


# ---------------------------------------------------------------------- the job


def _job(spark, F, w, kinds: dict, stage: str, H: int, cap: int | None,
         rows_per_shard: int, sequences: bool = False) -> dict:
    from pyspark.sql import Window

    n_rows, vocab, s = _model_ids(spark, F, w, kinds)
    by_time = Window.partitionBy("user").orderBy("ts", "_fi", "_row")
    by_pos = Window.partitionBy("user").orderBy("pos")
    whole = Window.partitionBy("user")
    p = (s.withColumn("pos", F.row_number().over(by_time) - 1)
          .withColumn("n", F.count(F.lit(1)).over(whole))
          .withColumn("ts_prev", F.lag("ts").over(by_pos)))
    running = by_pos.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    # r: where a label's history ends (before its run of equal timestamps, or, for sequences,
    # before the label itself), as `keras_yt.data.duckdb_examples._job`.
    p = p.withColumn("r", F.col("pos") if sequences else F.max(F.when(
        F.col("ts_prev").isNull() | (F.col("ts_prev") != F.col("ts")), F.col("pos"))).over(running))
    held = F.max(F.when((F.col("pos") == F.col("n") - 1) & (F.col("r") >= 1), 1).otherwise(0)
                 ).over(whole)
    p = p.withColumn("held", held).withColumn(
        "role", F.when((F.col("pos") == F.col("n") - 1) & (F.col("r") >= 1), 2)
        .when((F.col("pos") == F.col("n") - 1 - F.col("held")) & (F.col("r") >= 1), 1)
        .when(F.col("r") >= 1, 0).otherwise(3))
    if cap is not None and not sequences:
        k = F.row_number().over(Window.partitionBy("user", F.col("role") == 0)
                                .orderBy(F.col("pos").desc()))
        p = p.withColumn("k", k).withColumn(
            "role", F.when((F.col("role") == 0) & (F.col("k") > cap), 3)
            .otherwise(F.col("role")))
    window_h = by_pos.rowsBetween(-H, -1)

    def with_histories(frame):
        # The H watches before each row; a row's history is that of row r (the first of its run
        # of equal timestamps for the rollback, itself for sequences).
        frame = frame.withColumn("h_all", F.collect_list("video").over(window_h))
        frame = frame.withColumn("watch_history", F.last(F.when(
            F.col("pos") == F.col("r"), F.col("h_all")), ignorenulls=True).over(running))
        # Serving: each user's last H watches, all of them (same-second ones too).
        return frame.withColumn("h_all", F.when(F.col("pos") == F.col("n") - 1, F.col("h_all")))

    if sequences:  # histories only for the held-out and serving rows: each user's last H + 2
        p = p.persist()
        rows = with_histories(p.filter(F.col("pos") >= F.col("n") - 2 - H))
    else:
        p = rows = with_histories(p).persist()
    refs = p.agg(F.max("ts"), F.max(F.when(F.col("role") != 2, F.col("ts"))),
                 F.max(F.when(F.col("role").isin(0, 3), F.col("ts")))).collect()[0]
    reference = {2: refs[0], 1: refs[1], 0: refs[2]}
    counts = dict(p.filter(F.col("role") != 2).groupBy("video").count().collect())
    video_counts = np.zeros(len(vocab["videos"][0]), np.int64)
    for video, count in counts.items():
        video_counts[video - 1] = count
    prepared_folder.write_vocabularies(stage, vocab, kinds, video_counts)

    ref = {k: float(v if v is not None else 0.0) for k, v in reference.items()}
    age_ref = (F.when(F.col("role") == 2, F.lit(ref[2]))
               .when(F.col("role") == 1, F.lit(ref[1])).otherwise(F.lit(ref[0])))
    examples = rows.select(
        "role", F.col("user").cast("long").alias("user"),
        F.col("video").cast("long").alias("label"), F.col("ts").alias("timestamp"),
        F.col("wt").cast("float").alias("watch_time"),
        ((age_ref - F.col("ts")) / 86400.0).cast("float").alias("example_age"),
        F.col("watch_history").cast("array<int>").alias("watch_history"))
    columns = list(prepared_folder.EXAMPLE_COLUMNS)
    sizes = {}
    for role, name in ((0, prepared_folder.TRAIN_DIR), (1, "validation.parquet"),
                       (2, "test.parquet")):
        if sequences and role == 0:
            part = _windows(F, p, H, cap, ref[0])
            part.write.mode("error").option("maxRecordsPerFile", rows_per_shard).parquet(
                os.path.join(stage, name))
            sizes["train"] = part.count()
            continue
        part = examples.filter(F.col("role") == role).select(*columns)
        writer = part.write.mode("error").option("maxRecordsPerFile", rows_per_shard)
        writer.parquet(os.path.join(stage, name))
        sizes[name.split(".")[0]] = part.count()
    last = rows.filter(F.col("pos") == F.col("n") - 1)
    tail = F.slice(F.concat(F.array_repeat(F.lit(0), H), F.col("h_all"),
                            F.array(F.col("video"))), -H, H)
    last.select(F.col("user").cast("long").alias("user"),
                tail.cast("array<int>").alias("watch_history")).write.parquet(
        os.path.join(stage, "latest.parquet"))
    sizes["users"] = last.count()
    (p.select(F.col("user").cast("long").alias("user"), "video").distinct()
     .orderBy("user", "video").write.parquet(prepared_folder.watched_path(stage)))
    p.unpersist()
    sizes["watches"] = int(n_rows)
    return {"counts": sizes, "example_age_reference": {
        "train": reference[0], "validation": reference[1], "test": reference[2]}}


def _windows(F, p, H: int, cap: int | None, reference: float):
    """`keras_yt.data.sequence_examples`' windows of the watches that are not held out."""
    from pyspark.sql import Window

    fit = p.filter(F.col("role").isin(0, 3)).select("user", "video", "ts", "wt", "pos")
    by_pos = Window.partitionBy("user").orderBy("pos")
    fit = (fit.withColumn("input", F.lag("video").over(by_pos))
              .withColumn("win", F.floor((F.count(F.lit(1)).over(Window.partitionBy("user"))
                                          - 1 - F.col("pos")) / H)))
    fit = fit.filter(F.col("pos") >= 1)
    if cap is not None:
        fit = fit.filter(F.col("win") < cap)
    item = F.struct("pos", "input", "video", "ts", "wt")
    windows = fit.groupBy("user", "win").agg(F.array_sort(F.collect_list(item)).alias("s"),
                                             F.count(F.lit(1)).alias("sequence_length"))
    return windows.select(
        F.col("user").cast("long").alias("user"),
        F.col("s.input").cast("array<int>").alias("watch_history"),
        F.col("s.video").cast("array<int>").alias("label"),
        F.col("s.ts").cast("array<double>").alias("timestamp"),
        F.col("s.wt").cast("array<float>").alias("watch_time"),
        F.transform("s.ts", lambda t: ((F.lit(float(reference)) - t) / 86400.0)
                    .cast("float")).alias("example_age"),
        F.col("sequence_length").cast("int").alias("sequence_length"))
