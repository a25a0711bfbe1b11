"""read_watch_log / iter_watch_log: parsing, chunking and validation messages."""

import numpy as np
import pytest

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
