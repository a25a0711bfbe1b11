"""prepare_sequences: the sequence model's training data, as `keras-yt train --log` builds it in
memory for an attention preset, on DuckDB and Spark."""

import json
import shutil

import numpy as np
import pytest

from keras_yt.data import ExampleShards
from keras_yt.data._prepared_folder import read_sequences
from keras_yt.data.prepare import prepare_examples, prepare_sequences
from tests.data.test_prepare import check_held_out_and_state, random_log, write_csv
from tests.data.test_prepare import reference as prepare_reference

WINDOW_FEATURES = ("watch_history", "example_age", "user", "watch_time", "sequence_length")


def window_set(w):
    return sorted(zip(
        np.asarray(w["user"]).tolist(), map(tuple, np.asarray(w["watch_history"]).tolist()),
        map(tuple, np.asarray(w["label"]).tolist()),
        map(tuple, np.round(np.asarray(w["example_age"], np.float64), 4).tolist()),
        map(tuple, np.round(np.asarray(w["watch_time"], np.float64), 2).tolist()),
        np.asarray(w["sequence_length"]).tolist()))


def reference(path, max_history, max_windows=None):
    return prepare_reference(path, max_history, max_windows, sequences=True)


def streamed_windows(shards):
    parts = list(shards.batches(batch_size=64, features=WINDOW_FEATURES, shuffle_buffer=50,
                                repeat=False))
    out = {k: np.concatenate([x[k] for x, _ in parts]) for k in WINDOW_FEATURES}
    out["label"] = np.concatenate([y for _, y in parts])
    return out


@pytest.mark.parametrize("max_windows", [None, 2])
def test_duckdb_sequences_equal_the_in_memory_path(tmp_path, max_windows):
    path = write_csv(tmp_path / "log.csv", random_log(11, n=2500, strings=True))
    manifest = prepare_sequences(path, tmp_path / "seq", max_history=8,
                                 max_windows_per_user=max_windows, rows_per_shard=100)
    ref = reference(path, 8, max_windows)
    assert manifest["content"] == "sequences"
    assert manifest["counts"]["train"] == len(ref["train"]["user"])
    shards = ExampleShards(tmp_path / "seq")
    assert shards.sequences and len(shards.train_files) > 1
    assert window_set(read_sequences(tmp_path / "seq", 8)) == window_set(ref["train"])
    streamed = streamed_windows(shards)  # one epoch: every window once, padded as in memory
    assert streamed["watch_history"].shape == (len(ref["train"]["user"]), 8)
    assert window_set(streamed) == window_set(ref["train"])
    check_held_out_and_state(shards, ref)


def test_held_out_sequences_read_same_second_watches_the_rollback_does_not(tmp_path):
    """One user whose last three watches share a second: the sequence folder's test example
    reads both same-second predecessors, the rollback folder's neither."""
    log = {"user": [5] * 6, "video": [10, 11, 12, 13, 14, 15],
           "timestamp": [1, 2, 3, 9, 9, 9]}
    path = write_csv(tmp_path / "log.csv", log)
    prepare_sequences(path, tmp_path / "seq", max_history=6)
    prepare_examples(path, tmp_path / "ex", max_history=6)
    videos = ExampleShards(tmp_path / "seq").videos
    as_raw = np.concatenate([[0], videos.ids])  # model id -> raw id, 0: padding
    seq, ex = (ExampleShards(tmp_path / name).held_out("test") for name in ("seq", "ex"))
    assert as_raw[seq["watch_history"][0]].tolist() == [0, 10, 11, 12, 13, 14]
    assert as_raw[ex["watch_history"][0]].tolist() == [0, 0, 0, 10, 11, 12]
    assert as_raw[seq["label"]].tolist() == as_raw[ex["label"]].tolist() == [15]


def test_several_passes_give_the_windows_of_one(tmp_path, monkeypatch):
    """The windows and held-out histories are list aggregates run over ranges of users (they do
    not spill): small passes give the same folder."""
    from keras_yt.data import duckdb_examples

    log = random_log(2, n=2000, users=60)
    log["user"] = np.where(np.arange(2000) < 600, 7, log["user"])  # one user with 600 watches
    path = write_csv(tmp_path / "log.csv", log)
    monkeypatch.setattr(duckdb_examples, "_rows_per_pass", lambda con: 150)
    prepare_sequences(path, tmp_path / "seq", max_history=16)
    ref = reference(path, 16)
    shards = ExampleShards(tmp_path / "seq")
    assert window_set(read_sequences(tmp_path / "seq", 16)) == window_set(ref["train"])
    check_held_out_and_state(shards, ref)


def test_bad_arguments_name_them(tmp_path):
    path = write_csv(tmp_path / "log.csv", random_log(3, n=50))
    with pytest.raises(ValueError, match="max_windows_per_user must be an integer >= 1, got 0"):
        prepare_sequences(path, tmp_path / "seq", max_windows_per_user=0)
    with pytest.raises(ValueError, match="max_history must be an integer >= 1, got -2"):
        prepare_sequences(path, tmp_path / "seq", max_history=-2)
    assert not (tmp_path / "seq").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")
def test_spark_writes_the_duckdb_sequences(tmp_path):
    pytest.importorskip("pyspark")
    from keras_yt.data.spark_examples import session

    path = write_csv(tmp_path / "log.csv", random_log(12, n=600, users=20, big=True))
    spark = session(str(tmp_path / "spill"))
    spark.sparkContext.setLogLevel("ERROR")
    manifest = prepare_sequences(path, tmp_path / "spark", engine="spark", max_history=5,
                                 spark=spark)
    prepare_sequences(path, tmp_path / "duck", max_history=5)
    ref = reference(path, 5)
    from keras_yt.data import spark_submit  # the cluster entry point runs the same job

    assert spark_submit.main(["--log", str(path), "--out", str(tmp_path / "submitted"),
                              "--sequences", "--max-history", "5"], spark=spark) == 0
    submitted = ExampleShards(tmp_path / "submitted")
    assert submitted.sequences and submitted.num_examples == len(ref["train"]["user"])
    assert manifest["counts"]["train"] == len(ref["train"]["user"])
    assert window_set(read_sequences(tmp_path / "spark", 5)) == window_set(ref["train"])
    check_held_out_and_state(ExampleShards(tmp_path / "spark"), ref)
    duck = json.loads((tmp_path / "duck" / "manifest.json").read_text())
    assert manifest["counts"] == duck["counts"]
