"""prepare_sequences: the per-user sequence windows of `sequence_examples`, on DuckDB and Spark."""

import shutil

import numpy as np
import pytest

from keras_yt import data as yt_data
from keras_yt import pipeline
from keras_yt.data._prepared_folder import read_sequences
from keras_yt.data.prepare import prepare_sequences
from tests.data.test_prepare import random_log, write_csv


def window_set(w):
    return sorted(zip(
        np.asarray(w["user"]).tolist(), map(tuple, np.asarray(w["watch_history"]).tolist()),
        map(tuple, np.asarray(w["label"]).tolist()),
        map(tuple, np.round(np.asarray(w["example_age"], np.float64), 4).tolist()),
        map(tuple, np.round(np.asarray(w["watch_time"], np.float64), 2).tolist()),
        np.asarray(w["sequence_length"]).tolist()))


def reference(path, max_history, max_windows):
    watches, _, _ = pipeline.index_watch_log(yt_data.read_raw_watch_log(path))
    return yt_data.sequence_examples(watches, max_history=max_history,
                                     max_windows_per_user=max_windows)


@pytest.mark.parametrize("max_windows", [None, 2])
def test_duckdb_windows_equal_sequence_examples(tmp_path, max_windows):
    path = write_csv(tmp_path / "log.csv", random_log(11, n=2500, strings=True))
    manifest = prepare_sequences(path, tmp_path / "seq", max_history=8,
                                 max_windows_per_user=max_windows, rows_per_shard=100)
    ref = reference(path, 8, max_windows)
    assert manifest["counts"]["windows"] == len(ref["user"])
    assert window_set(read_sequences(tmp_path / "seq", 8)) == window_set(ref)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")
def test_spark_windows_equal_sequence_examples(tmp_path):
    pytest.importorskip("pyspark")
    from keras_yt.data.spark_examples import session

    path = write_csv(tmp_path / "log.csv", random_log(12, n=600, users=20, big=True))
    spark = session(str(tmp_path / "spill"))
    spark.sparkContext.setLogLevel("ERROR")
    prepare_sequences(path, tmp_path / "seq", engine="spark", max_history=5,
                      max_windows_per_user=None, spark=spark)
    assert window_set(read_sequences(tmp_path / "seq", 5)) == window_set(reference(path, 5, None))
