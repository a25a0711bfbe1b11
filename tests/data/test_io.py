"""read_watch_log / iter_watch_log: parsing, chunking and validation messages."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_yt.data import iter_watch_log, read_watch_log, to_watch_log


def write(path, text):
    path.write_text(text)
    return path


def test_reads_columns_in_any_order(tmp_path):
    path = write(tmp_path / "a.csv",
                 "timestamp,extra,video,user,watch_time\n10,x,3,1,2.5\n20.5,y,4,2,0\n")
    log = read_watch_log(path)
    assert log["user"].tolist() == [1, 2] and log["video"].tolist() == [3, 4]
    assert log["timestamp"].tolist() == [10.0, 20.5] and log["watch_time"].tolist() == [2.5, 0.0]
    path = write(tmp_path / "b.csv", "user,video,timestamp\n" + "".join(
        f"{i},{i + 1},{i * 10}\n" for i in range(11)))
    chunks = list(iter_watch_log(path, chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(chunks)["video"], np.arange(1, 12))
    assert read_watch_log(path)["watch_time"].tolist() == [1.0] * 11


def test_validation_names_the_column(tmp_path):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['video'\]"):
        read_watch_log(write(tmp_path / "c.csv", "user,timestamp\n1,2\n"))
    with pytest.raises(ValueError, match="Column 'video'.*must hold integers"):
        read_watch_log(write(tmp_path / "d.csv", "user,video,timestamp\n1,abc,2\n"))
    with pytest.raises(ValueError, match="Column 'timestamp'.*must hold numbers"):
        read_watch_log(write(tmp_path / "e.csv", "user,video,timestamp\n1,2,yesterday\n"))
    with pytest.raises(ValueError, match="Column 'video'.*ids >= 1.*got 0"):
        read_watch_log(write(tmp_path / "f.csv", "user,video,timestamp\n1,0,2\n"))
    with pytest.raises(FileNotFoundError):
        read_watch_log(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="Column 'user'.*must hold integers"):
        to_watch_log({"user": [1.5], "video": [1], "timestamp": [0]})
    with pytest.raises(ValueError, match="Column 'timestamp'.*must hold numbers"):
        to_watch_log({"user": [1], "video": [1], "timestamp": ["noon"]})


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "log.parquet"
    frame = pd.DataFrame({"user": [1, 2], "video": [3, 4], "timestamp": [1.0, 2.0]})
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(ImportError, match="pyarrow"):
            read_watch_log(path)
        return
    frame.to_parquet(path)
    assert read_watch_log(path)["video"].tolist() == [3, 4]


def test_timestamps_in_unix_seconds_or_iso_8601(tmp_path):
    path = write(tmp_path / "t.csv", "user,video,timestamp\n"
                 "1,3,1473933600\n1,4,1473933600.5\n1,5,2016-09-15T10:00:00Z\n"
                 "1,6,2016-09-15 12:00:00+02:00\n1,7,2016-09-15\n")
    expected = [1473933600.0, 1473933600.5, 1473933600.0, 1473933600.0, 1473897600.0]
    assert read_watch_log(path)["timestamp"].tolist() == expected
    import datetime

    log = to_watch_log({"user": [1, 1], "video": [2, 3], "timestamp": np.array(
        ["2016-09-15T10:00:00", "1970-01-01T00:00:01"], dtype="datetime64[s]")})
    assert log["timestamp"].tolist() == [1473933600.0, 1.0]
    when = datetime.datetime(2016, 9, 15, 10, tzinfo=datetime.timezone.utc)
    assert to_watch_log({"user": [1], "video": [2], "timestamp": np.array([when], object)})[
        "timestamp"].tolist() == [1473933600.0]
    with pytest.raises(ValueError, match="Column 'timestamp'.*ISO-8601.*'15/09/2016'.*line 3"):
        read_watch_log(write(tmp_path / "u.csv", "user,video,timestamp\n1,2,3\n1,2,15/09/2016\n"))


def test_raw_ids_strings_zero_and_64_bit(tmp_path):
    from keras_yt.data import read_raw_watch_log

    path = write(tmp_path / "r.csv", "user,video,timestamp\n"
                 f"0,{2**40},1\n0,0,2\n{2**33},{2**40},3\n")
    log = read_raw_watch_log(path)
    assert log["user"].dtype == np.int64 and log["video"].tolist() == [2**40, 0, 2**40]
    assert log["user"].tolist() == [0, 0, 2**33]
    path = write(tmp_path / "s.csv", "user,video,timestamp,watch_time\n"
                 "ana,v248,2016-09-15T10:00:00Z,3\nbo,17,1473933601,4.5\n")
    log = read_raw_watch_log(path)
    assert log["video"].tolist() == ["v248", "17"] and log["user"].tolist() == ["ana", "bo"]
    assert log["timestamp"].tolist() == [1473933600.0, 1473933601.0]
    assert log["watch_time"].tolist() == [3.0, 4.5]


@pytest.mark.parametrize("content, message", [
    (b"user,video,timestamp,video\n1,2,3,4\n", r"line 1: the header names column 'video' twice"),
    (b"user,video,timestamp\n1,2,3\n1,2,3,9\n", r"line 3: 4 values for 3 header columns \(an "
                                                r"extra value\)"),
    (b"user,video,timestamp\n1,2,3\n\n1,2\n", r"line 4: 2 values for 3 header columns"),
    (b"user,video,timestamp\n1,2,3\n\x89PNG\xff\xfe\n", r"line 3: not UTF-8 text"),
    (b"user,video,timestamp\n1,2\x00,3\n", r"line 2: holds NUL bytes"),
])
def test_malformed_csv_names_the_file_and_line(tmp_path, content, message):
    from keras_yt.data import read_raw_watch_log

    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    for reader in (read_watch_log, read_raw_watch_log):
        with pytest.raises(ValueError, match=message) as info:
            reader(path)
        assert "bad.csv" in str(info.value)


def test_parquet_without_the_extra_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name in ("pyarrow", "pandas"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    path = tmp_path / "log.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ImportError, match=r"pip install 'keras-yt\[parquet\]'"):
        read_watch_log(path)


def test_parquet_with_raw_ids_and_datetimes(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from keras_yt.data import read_raw_watch_log

    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": ["a", "b"], "video": [2**40, 0],
                  "timestamp": pd.to_datetime(["2016-09-15T10:00:00Z", "1970-01-01T00:00:00Z"]),
                  }).to_parquet(path)
    log = read_raw_watch_log(path)
    assert log["video"].tolist() == [2**40, 0] and log["user"].tolist() == ["a", "b"]
    assert log["timestamp"].tolist() == [1473933600.0, 0.0]


def test_raw_ids_are_exact_no_coercion_of_free_text(tmp_path):
    """`007`, `7`, `0007` are three ids; `+5`, `1_0`, Arabic-Indic digits are strings."""
    from keras_yt.data import read_raw_watch_log

    path = write(tmp_path / "z.csv", "user,video,timestamp\n007,1,1\n7,1,2\n0007,1,3\n")
    assert read_raw_watch_log(path)["user"].tolist() == ["007", "7", "0007"]
    path = write(tmp_path / "p.csv",
                 "user,video,timestamp\n+5,1_0,1\n5,10,2\n\u0663,\u00b2,3\n3 ,2,4\n")
    log = read_raw_watch_log(path)
    assert log["user"].tolist() == ["+5", "5", "\u0663", "3 "]
    assert log["video"].tolist() == ["1_0", "10", "\u00b2", "2"]
    path = write(tmp_path / "i.csv", f"user,video,timestamp\n0,10,1\n{2**63 - 1},7,2\n")
    log = read_raw_watch_log(path)
    assert log["user"].dtype == np.int64 and log["user"].tolist() == [0, 2**63 - 1]


_ID_TEXT = st.one_of(
    st.integers(0, 2**64).map(str),
    st.text(alphabet="0123456789+-_ .e\u0663\u00b2x", min_size=1, max_size=6),
)


@given(st.lists(_ID_TEXT, min_size=1, max_size=6))
def test_raw_id_column_round_trips_exactly(texts):
    """A column of text ids reads back as the same ids: int64 only when every one is canonical."""
    from keras_yt.data.io import _raw_ids

    out = _raw_ids(np.asarray(texts, dtype=str))
    canonical = all(t == str(int(t)) and 0 <= int(t) < 2**63 for t in texts
                    if t.isascii() and t.isdigit()) and all(t.isascii() and t.isdigit()
                                                             for t in texts)
    assert (out.dtype == np.int64) == canonical
    assert [str(v) for v in out.tolist()] == texts


@pytest.mark.parametrize("column, value, message", [
    ("timestamp", "1473933600000", r"milliseconds.*got '1473933600000' on line 3"),
    ("timestamp", "1e300", r"got '1e300' on line 3"),
    ("timestamp", "-1e12", r"got '-1e12' on line 3"),
    ("timestamp", "1_000", r"got '1_000' on line 3"),
    ("timestamp", "nan", r"got 'nan' on line 3"),
    ("timestamp", "\u0663", r"line 3"),
    ("watch_time", "-5", r"Column 'watch_time'.*>= 0.*line 3"),
    ("watch_time", "nan", r"Column 'watch_time'.*line 3"),
    ("watch_time", "inf", r"Column 'watch_time'.*line 3"),
    ("watch_time", "1_0", r"Column 'watch_time'.*line 3"),
    ("video", "\u0663", r"Column 'video'.*line 3"),
    ("video", "1_0", r"Column 'video'.*line 3"),
])
def test_implausible_timestamps_and_watch_times_are_rejected_with_the_line(
        tmp_path, column, value, message):
    from keras_yt.data import read_raw_watch_log

    row = {"user": "1", "video": "2", "timestamp": "1473933601", "watch_time": "3.5"}
    row[column] = value
    path = write(tmp_path / "bad.csv", "user,video,timestamp,watch_time\n"
                 "1,2,1473933600,3\n" + ",".join(row.values()) + "\n")
    readers = [read_watch_log] + ([read_raw_watch_log] if column != "video" else [])
    for reader in readers:
        with pytest.raises(ValueError, match=message):
            reader(path)


@pytest.mark.parametrize("column, values, message", [
    ("timestamp", [1473933600, 1473933600 * 1000], r"milliseconds.*position 1"),
    ("timestamp", [1e300, 0], r"position 0"),
    ("watch_time", [1.0, -5.0], r"Column 'watch_time'.*>= 0.*position 1"),
    ("watch_time", [np.inf, 1.0], r"Column 'watch_time'"),
])
def test_implausible_values_in_memory_are_rejected_with_the_position(column, values, message):
    data = {"user": [1, 1], "video": [2, 3], "timestamp": [1, 2], "watch_time": [1.0, 1.0]}
    data[column] = values
    with pytest.raises(ValueError, match=message):
        to_watch_log(data)


@given(st.floats(-1e10, 1e10, allow_nan=False), st.floats(0, 1e6, allow_nan=False))
def test_plausible_seconds_and_watch_times_read_back(timestamp, watch_time):
    log = to_watch_log({"user": [1], "video": [2], "timestamp": [timestamp],
                        "watch_time": [watch_time]})
    assert log["timestamp"][0] == timestamp
