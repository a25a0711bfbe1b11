"""prepare_examples (DuckDB): the same examples, vocabularies and serving state as the in-memory
path of `keras-yt train --log`, read from CSV / Parquet / shards; bad input; atomic output."""

import os

import numpy as np
import pytest

from keras_yt import data as yt_data
from keras_yt import pipeline
from keras_yt.data import ExampleShards, Vocabulary, prepare_examples
from keras_yt.data import _prepared_folder as prepared_folder
from keras_yt.evaluation import LeaveLastOut


def write_csv(path, columns, header=None):
    names = header or list(columns)
    rows = zip(*(columns[c] for c in names))
    path.write_text(",".join(names) + "\n" + "".join(
        ",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def random_log(seed, n=3000, users=80, videos=60, ties=40, big=False, strings=False):
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    video = rng.zipf(1.4, n) % videos
    log = {
        "user": [f"u{u}" for u in user] if strings else (user * (2**56) if big else user),
        "video": [f"v{v}" for v in video] if strings else
        (video * (2**57) + (video > 0) if big else video),
        "timestamp": rng.integers(0, ties, n) * 3600 + 1_000_000_000,  # many equal timestamps
        "watch_time": np.round(rng.random(n) * 100, 2),
    }
    return log


def reference(path, max_history, cap=None, sequences=False):
    """What `keras-yt train --log` builds in memory (keras_yt/cli.py): for a bag preset the
    paper's rollback examples; for an attention preset (`sequences`) held-out watches reading
    every earlier watch and the sequence windows of the watches not held out (`cap`: the most
    recent examples, or windows, per user)."""
    raw = yt_data.read_raw_watch_log(path)
    watches, videos, users = pipeline.index_watch_log(raw)
    split = LeaveLastOut(watches, max_history=max_history, num_items=videos.size,
                         same_time_history=sequences)
    if sequences:
        train = yt_data.sequence_examples(split.fit_watches, max_history=max_history,
                                          max_windows_per_user=cap)
    else:
        train = yt_data.candidate_examples(split.fit_watches, max_history=max_history,
                                           max_examples_per_user=cap)
    counts = np.bincount(split.train_watches["video"], minlength=videos.size)[1:]
    latest = pipeline.latest_features(watches, users.size, max_history)["watch_history"]
    return {"train": train, "validation": split.validation, "test": split.test,
            "videos": videos, "users": users, "counts": counts, "latest": latest,
            "watches": watches}


def as_set(examples):
    """(user, history, label, example age, watch time) of every example."""
    return sorted(zip(
        np.asarray(examples["user"]).tolist(),
        map(tuple, np.asarray(examples["watch_history"]).tolist()),
        np.asarray(examples["label"]).tolist(),
        np.round(np.asarray(examples["example_age"], np.float64), 4).tolist(),
        np.round(np.asarray(examples["watch_time"], np.float64), 2).tolist(),
    ))


def train_examples(shards):
    parts = [dict(zip(("x", "y"), b)) for b in shards.batches(
        batch_size=1000, features=("watch_history", "example_age", "user", "watch_time"),
        shuffle_buffer=10, repeat=False)]
    if not parts:
        return {k: np.zeros(0) for k in ("watch_history", "example_age", "user", "watch_time",
                                         "label")}
    out = {k: np.concatenate([p["x"][k] for p in parts]) for k in parts[0]["x"]}
    out["label"] = np.concatenate([p["y"] for p in parts])
    return out


def check_same(shards, ref):
    assert as_set(train_examples(shards)) == as_set(ref["train"])
    check_held_out_and_state(shards, ref)


def check_held_out_and_state(shards, ref):
    """Everything but the training rows: held-out examples, vocabularies, serving state."""
    for split in ("validation", "test"):
        mine = shards.held_out(split)
        assert as_set(mine) == as_set(ref[split])
        np.testing.assert_array_equal(mine["user"], ref[split]["user"])  # ordered by user
    np.testing.assert_array_equal(shards.videos.ids, ref["videos"].ids)
    np.testing.assert_array_equal(shards.videos.counts, ref["counts"])
    np.testing.assert_array_equal(shards.users.ids, ref["users"].ids)
    np.testing.assert_array_equal(shards.users.counts, ref["users"].counts)
    np.testing.assert_array_equal(shards.latest(), ref["latest"])
    watched = shards.watched()
    w = ref["watches"]
    pairs = np.unique(np.stack([w["user"], w["video"]], 1), axis=0)
    np.testing.assert_array_equal(watched["indices"], pairs[:, 1])
    np.testing.assert_array_equal(np.diff(watched["indptr"]),
                                  np.bincount(pairs[:, 0], minlength=ref["users"].size))


@pytest.mark.parametrize("kind", ["small_ints", "big_ints", "strings"])
def test_duckdb_examples_equal_the_in_memory_path(tmp_path, kind):
    log = random_log(1, big=kind == "big_ints", strings=kind == "strings")
    path = write_csv(tmp_path / "log.csv", log, header=["video", "watch_time", "user",
                                                         "timestamp"])
    manifest = prepare_examples(path, tmp_path / "ex", max_history=7, rows_per_shard=1000)
    shards = ExampleShards(tmp_path / "ex")
    assert len(shards.train_files) == manifest["counts"]["train"] // 1000 + 1
    assert shards.videos.is_string == (kind == "strings")
    check_same(shards, reference(path, 7))


def test_histories_written_in_several_passes_equal_one_pass(tmp_path, monkeypatch):
    """Under a memory limit the history window runs over ranges of users (DuckDB's list window
    does not spill): the examples are those of the in-memory path whatever the pass size."""
    from keras_yt.data import duckdb_examples

    log = random_log(2, n=2000, users=60)
    log["user"] = np.where(np.arange(2000) < 600, 7, log["user"])  # one user with 600 watches
    path = write_csv(tmp_path / "log.csv", log)
    ranges = []
    original = duckdb_examples._user_ranges

    def small_passes(watches_per_user, rows_per_pass):
        ranges.append(original(watches_per_user, 150))
        return ranges[-1]

    monkeypatch.setattr(duckdb_examples, "_user_ranges", small_passes)
    prepare_examples(path, tmp_path / "ex", max_history=5, rows_per_shard=700)
    check_same(ExampleShards(tmp_path / "ex"), reference(path, 5))
    (bounds,) = ranges
    counts = ExampleShards(tmp_path / "ex").users.counts
    assert bounds[0] == 0 and bounds[-1] == len(counts) and len(bounds) > 10
    sizes = [counts[low:high].sum() for low, high in zip(bounds[:-1], bounds[1:])]
    assert sizes[0] == counts[0] >= 600 and max(sizes[1:]) <= 150  # the big user alone first


def test_cap_iso_timestamps_parquet_and_shard_globs(tmp_path):
    log = random_log(2, n=2000)
    iso = np.datetime64("2016-09-15T10:00:00") + np.asarray(log["timestamp"] - 10**9,
                                                             "timedelta64[s]")
    log["timestamp"] = [f"{t}Z" if i % 2 else str(t).replace("T", " ") for i, t in
                        enumerate(iso)]
    whole = write_csv(tmp_path / "log.csv", log)
    ref = reference(whole, 5, cap=3)
    prepare_examples(whole, tmp_path / "ex", max_history=5, max_examples_per_user=3)
    check_same(ExampleShards(tmp_path / "ex"), ref)
    # The same rows in three CSV shards (input order: shard name, then line) and in Parquet.
    shards_dir = tmp_path / "shards"
    shards_dir.mkdir()
    lines = whole.read_text().splitlines(keepends=True)
    for i, start in enumerate(range(1, len(lines), 700)):
        (shards_dir / f"part-{i}.csv").write_text(lines[0] + "".join(lines[start:start + 700]))
    prepare_examples(str(shards_dir / "part-*.csv"), tmp_path / "ex2", max_history=5,
                     max_examples_per_user=3)
    check_same(ExampleShards(tmp_path / "ex2"), ref)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"user": log["user"], "video": log["video"],
                          "timestamp": pd.to_datetime(iso), "watch_time": log["watch_time"]})
    frame.to_parquet(tmp_path / "log.parquet", row_group_size=500)
    prepare_examples(tmp_path / "log.parquet", tmp_path / "ex3", max_history=5,
                     max_examples_per_user=3)
    check_same(ExampleShards(tmp_path / "ex3"), ref)


def test_zero_and_largest_ids_and_one_watch_users(tmp_path):
    log = {"user": [2**63 - 1, 2**63 - 1, 2**63 - 1, 0, 5, 5],
           "video": [0, 2**63 - 1, 0, 7, 7, 0], "timestamp": [3, 1, 2, 1, 1, 1]}
    path = write_csv(tmp_path / "log.csv", log)
    prepare_examples(path, tmp_path / "ex", max_history=3)
    shards = ExampleShards(tmp_path / "ex")
    assert shards.videos.ids.tolist() == [0, 7, 2**63 - 1]
    check_same(shards, reference(path, 3))


def test_bad_rows_are_errors_naming_file_and_line(tmp_path):
    cases = [
        ("user,video,timestamp\n1,2,3\n1,3\n", r"line 3: 2 values for 3 header columns"),
        ("user,video,timestamp\n1,2,3\n\n1,3,yesterday\n",
         r"Column 'timestamp' .*'yesterday' on line 4"),
        ("user,video,timestamp\n1,2,3\n1,,4\n", r"Column 'video' .*non-empty ids.* on line 3"),
        ("user,video,timestamp,watch_time\n1,2,3,x\n", r"Column 'watch_time'.*'x' on line 2"),
        ("user,video,timestamp\n1,2,nan\n", r"Column 'timestamp'.*'nan' on line 2"),
        ("user,video\n1,2\n", r"missing column\(s\) \['timestamp'\]"),
        ("user,video,user,timestamp\n1,2,3,4\n", r"names column 'user' twice"),
    ]
    for i, (text, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as info:
            prepare_examples(path, tmp_path / f"ex{i}")
        assert str(path) in str(info.value) or "header" in message or "twice" in message
        assert not (tmp_path / f"ex{i}").exists()
    (tmp_path / "bin.csv").write_bytes(b"user,video,timestamp\n1,\xff\xfe,3\n")
    with pytest.raises(ValueError, match="UTF-8|unicode"):
        prepare_examples(tmp_path / "bin.csv", tmp_path / "exb")
    with pytest.raises(FileNotFoundError):
        prepare_examples(tmp_path / "nothing-*.csv", tmp_path / "exc")
    pd = pytest.importorskip("pandas")
    pd.DataFrame({"user": [1, 2, 3], "video": [1, -2, 3], "timestamp": [1, 2, 3]}).to_parquet(
        tmp_path / "neg.parquet", row_group_size=2)
    with pytest.raises(ValueError, match=r"Column 'video'.*>= 0.*row 1 \(row group 0"):
        prepare_examples(tmp_path / "neg.parquet", tmp_path / "exd")


def test_a_failed_prepare_leaves_no_output_and_the_previous_one_intact(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "log.csv", random_log(3, n=500))
    prepare_examples(path, tmp_path / "ex", max_history=4)
    before = sorted(os.listdir(tmp_path / "ex"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepared_folder, "split_and_write", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_examples(path, tmp_path / "ex", max_history=9)
    assert sorted(os.listdir(tmp_path / "ex")) == before
    assert ExampleShards(tmp_path / "ex").max_history == 4
    assert [p for p in os.listdir(tmp_path) if p.startswith(".ex.")] == []
    with pytest.raises(KeyboardInterrupt):
        prepare_examples(path, tmp_path / "new", max_history=9)
    assert not (tmp_path / "new").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="not a prepared examples folder"):
        prepare_examples(path, tmp_path / "other")


def test_bad_arguments_and_folders():
    with pytest.raises(ValueError, match="engine must be one of"):
        prepare_examples("x.csv", "out", engine="pandas")
    with pytest.raises(ValueError, match="max_history must be an integer >= 1, got 0"):
        prepare_examples("x.csv", "out", max_history=0)
    with pytest.raises(ValueError, match="not a prepared examples folder"):
        ExampleShards(os.getcwd())


def test_vocabulary_rule_matches_from_ids(tmp_path):
    # Equal counts are ordered by raw id (the Vocabulary rule), strings by code point.
    log = {"user": ["b", "a", "b", "a", "é", "é"], "video": ["z", "y", "Z", "ä", "y", "z"],
           "timestamp": [1, 1, 2, 2, 3, 3]}
    prepare_examples(write_csv(tmp_path / "log.csv", log), tmp_path / "ex", max_history=2)
    shards = ExampleShards(tmp_path / "ex")
    np.testing.assert_array_equal(shards.videos.ids, Vocabulary.from_ids(log["video"]).ids)
    np.testing.assert_array_equal(shards.users.ids, Vocabulary.from_ids(log["user"]).ids)
