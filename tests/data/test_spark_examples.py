"""The Spark engine writes exactly the examples of the DuckDB engine (local[2], Java 17)."""

import shutil

import numpy as np
import pytest

from keras_yt.data import ExampleShards, prepare_examples
from tests.data.test_prepare import as_set, random_log, train_examples, write_csv

pyspark = pytest.importorskip("pyspark")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from keras_yt.data.spark_examples import session

    spark = session(str(tmp_path_factory.mktemp("spill")), master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


def same_folders(a, b):
    a, b = ExampleShards(a), ExampleShards(b)
    assert as_set(train_examples(a)) == as_set(train_examples(b))
    for split in ("validation", "test"):
        assert as_set(a.held_out(split)) == as_set(b.held_out(split))
    for name in ("videos", "users"):
        np.testing.assert_array_equal(getattr(a, name).ids, getattr(b, name).ids)
        np.testing.assert_array_equal(getattr(a, name).counts, getattr(b, name).counts)
    np.testing.assert_array_equal(a.latest(), b.latest())
    for key in ("indptr", "indices"):
        np.testing.assert_array_equal(a.watched()[key], b.watched()[key])


@pytest.mark.slow
@pytest.mark.parametrize("strings", [False, True])
def test_spark_writes_the_duckdb_examples(tmp_path, spark, strings):
    log = random_log(5, n=800, users=30, videos=25, ties=15, big=not strings, strings=strings)
    path = write_csv(tmp_path / "log.csv", log)
    kwargs = {"max_history": 6, "max_examples_per_user": 20 if strings else None}
    prepare_examples(path, tmp_path / "duck", **kwargs)
    manifest = prepare_examples(path, tmp_path / "spark", engine="spark", spark=spark, **kwargs)
    assert manifest["engine"] == "spark" and manifest["counts"]["train"] > 300
    same_folders(tmp_path / "duck", tmp_path / "spark")


@pytest.mark.slow
def test_spark_bad_rows_name_the_file_and_line(tmp_path, spark):
    path = tmp_path / "bad.csv"
    path.write_text("user,video,timestamp\n1,2,3\n\n1,3,yesterday\n")
    with pytest.raises(ValueError, match=r"Column 'timestamp'.*'yesterday' on line 4"):
        prepare_examples(path, tmp_path / "ex", engine="spark", spark=spark)
    assert not (tmp_path / "ex").exists()
