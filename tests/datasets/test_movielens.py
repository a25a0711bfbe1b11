"""MovieLens-100K loading from the real files (shared script / Keras cache), never committed."""

import shutil

import keras
import numpy as np
import pytest

from keras_yt.data import WATCH_DTYPE
from keras_yt.datasets import movielens


@pytest.fixture(scope="module")
def data(movielens_dir):
    return movielens.load_data(data_dir=movielens_dir)


def test_counts_and_spot_checks(data, movielens_dir):
    w = data.watches
    assert w.dtype == WATCH_DTYPE
    assert len(w) == 100_000 and data.num_users == 943 and data.num_videos == 1683
    assert len(np.unique(w["user"])) == 943 and len(np.unique(w["video"])) == 1682
    assert w["video"].min() == 1 and w["video"].max() == 1682
    # Independent read of a few lines of u.data.
    with open(movielens_dir / "u.data") as f:
        lines = f.read().splitlines()
    for i in (0, 1, 4567, 99_999):
        user, item, rating, ts = (int(x) for x in lines[i].split("\t"))
        assert (w["user"][i], w["video"][i], w["watch_time"][i], w["timestamp"][i]) == (
            user, item, rating, ts)
    assert tuple(w[0]) == (196, 242, 881250949.0, 3.0)
    assert set(np.unique(w["watch_time"]).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    u = data.users
    assert u["id"].tolist() == list(range(1, 944))
    assert tuple(u[0])[:5] == (1, 24, "M", "technician", "85711")
    assert u["gender_id"][0] == 2 and u["gender_id"][1] == 1
    assert data.occupations[u["occupation_id"][0] - 1] == "technician"
    v = data.videos
    assert v["id"].tolist() == list(range(1, 1683))
    assert (v["title"][0], v["year"][0], v["genres"][0]) == (
        "Toy Story", 1995, "Animation|Children's|Comedy")
    assert v["year"][266] == 0  # item 267 has no date


def test_reads_keras_cache(movielens_dir, tmp_path, monkeypatch):
    cache = tmp_path / "home" / "datasets" / "ml-100k"
    cache.mkdir(parents=True)
    for name in ("u.data", "u.user"):
        shutil.copy(movielens_dir / name, cache / name)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    data = movielens.load_data()
    assert len(data.watches) == 100_000 and len(data.videos) == 0
    assert data.num_videos == 1683


def test_u_item_format(movielens_dir, tmp_path):
    for name in ("u.data", "u.user"):
        shutil.copy(movielens_dir / name, tmp_path / name)
    flags = ["0"] * 19
    flags[1] = flags[15] = "1"
    (tmp_path / "u.item").write_bytes(
        ("1|Caf\xe9 Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n").encode(
            "latin-1"))
    v = movielens.load_data(data_dir=tmp_path).videos
    assert (v["id"][0], v["title"][0], v["year"][0], v["genres"][0]) == (
        1, "Caf\xe9 Story", 1995, "Action|Sci-Fi")


def test_checksum_mismatch(movielens_dir, tmp_path):
    shutil.copy(movielens_dir / "u.user", tmp_path / "u.user")
    content = (movielens_dir / "u.data").read_bytes()
    (tmp_path / "u.data").write_bytes(content[:-2] + b"4\n")
    with pytest.raises(ValueError, match="u.data has md5 .* expected 6e47046882bad158b0efbb84cd"):
        movielens.load_data(data_dir=tmp_path)


def test_missing_files_and_failed_download(tmp_path, monkeypatch, movielens_dir):
    with pytest.raises(FileNotFoundError, match="get-movielens-100k"):
        movielens.load_data(data_dir=tmp_path)
    with pytest.raises(ValueError, match="name must be 'ml-100k'.*got 'ml-1m'"):
        movielens.load_data("ml-1m")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    calls = []

    def offline(**kwargs):
        calls.append(kwargs)
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(FileNotFoundError, match="downloading .*ml-100k.zip failed.*get-movielens"):
        movielens.load_data()
    assert calls[0]["origin"] == movielens.ORIGIN and calls[0]["extract"] is True
    assert calls[0]["file_hash"] == "0e33842e24a9c977be4e0107933c0723"
    assert calls[0]["cache_subdir"] == "datasets"

    def fake_download(**kwargs):  # what get_file leaves behind: <cache>/ml-100k/ml-100k/...
        target = tmp_path / "empty" / "datasets" / "ml-100k"
        (target / "ml-100k").mkdir(parents=True, exist_ok=True)
        for name in ("u.data", "u.user"):
            shutil.copy(movielens_dir / name, target / "ml-100k" / name)
        return str(target)

    monkeypatch.setattr(keras.utils, "get_file", fake_download)
    assert len(movielens.load_data().watches) == 100_000
