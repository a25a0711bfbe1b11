"""RunFolder: staged, all-or-nothing writes; the stored data checked on load."""

import contextlib
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from keras_yt.data import Vocabulary
from keras_yt.run_folder import RunFolder


def _reseal(path):
    from keras_yt.run_folder import _seal

    _seal(path)


def _write(path, videos=("a", "b", "c"), fail=False):
    with RunFolder.create(path) as run:
        run.save_data(
            videos=Vocabulary(list(videos)), users=Vocabulary([7, 2**40], name="user"),
            watched=([7, 7, 2**40, 2**40, 5], ["b", "a", "c", "c", "a"]),
            latest={"watch_history": np.array([[0, 0], [1, 2], [0, 3]], "int32")},
        )
        (run.path / "candidate_generator.keras").write_bytes(b"model")
        if fail:
            raise RuntimeError("killed after the model was saved")


def test_data_round_trip_and_whole_history_as_csr(tmp_path):
    _write(tmp_path / "run")
    run = RunFolder(tmp_path / "run")
    assert run.is_run()
    rows = run.user_rows(["7", 2**40])
    assert rows.tolist() == [1, 2]
    # watched: every (user, video) pair once, model ids sorted; the unknown user 5 is dropped
    assert [w.tolist() for w in run.watched(rows)] == [[1, 2], [3]]
    assert run.latest_features([2])["watch_history"].tolist() == [[0, 3]]
    with pytest.raises(ValueError, match="unknown user 5"):
        run.user_rows([5])


def test_a_failed_write_leaves_the_previous_run_and_no_stray_folders(tmp_path):
    _write(tmp_path / "run", videos=("a", "b", "c"))
    with pytest.raises(RuntimeError, match="killed"):
        _write(tmp_path / "run", videos=("x", "y", "z"), fail=True)
    assert RunFolder(tmp_path / "run").videos.ids.tolist() == ["a", "b", "c"]
    assert sorted(os.listdir(tmp_path)) == ["run"]
    _write(tmp_path / "run", videos=("x", "y", "z"))  # a successful write replaces it
    assert RunFolder(tmp_path / "run").videos.ids.tolist() == ["x", "y", "z"]
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.parametrize("name", ["run", "my-run-2"])
def test_leftovers_of_a_killed_writer_are_cleaned_up(tmp_path, name):
    _write(tmp_path / name)
    # a writer killed mid-swap: the old run moved aside, the staged one never moved in
    (tmp_path / f".{name}.staging-999999999-x").mkdir()
    aside = tmp_path / f".{name}.old-999999999-y"
    aside.mkdir()
    shutil.move(tmp_path / name, aside / "run")
    # a writer still at work (this process) is left alone
    busy = tmp_path / f".{name}.staging-{os.getpid()}-z"
    busy.mkdir()
    assert not (tmp_path / name).exists()
    with pytest.raises(RuntimeError):
        _write(tmp_path / name, fail=True)
    assert RunFolder(tmp_path / name).is_run()  # the old run was put back
    assert sorted(os.listdir(tmp_path)) == sorted([name, busy.name])


def test_refuses_to_replace_a_file_or_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        _write(tmp_path / "file")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="not a keras-yt run folder; refusing"):
        _write(tmp_path / "docs")
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "x"


@pytest.mark.parametrize("damage, message", [
    ("random", "not a readable HDF5 file"),
    ("indices", "'watched/indices' must hold video model ids"),
    ("indptr", "not a valid CSR row pointer"),
    ("history", "'latest/watch_history' must hold video model ids"),
    ("group", "has no 'latest' group"),
    ("history_3d", r"'latest/watch_history' must be a 2-D array"),
    ("max_history", r"max_history must be .*got 1000000000000"),
    ("max_history_mismatch", r"max_history must be .*got 7"),
])
def test_damaged_data_file_raises_a_clear_error(tmp_path, damage, message):
    """Crafted files (the checksum rewritten to match) are caught by the structural checks."""
    _write(tmp_path / "run")
    path = tmp_path / "run" / "run.h5"
    if damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        with h5py.File(path, "r+") as f:
            if damage == "indices":
                f["watched/indices"][0] = 10**6
            elif damage == "indptr":
                f["watched/indptr"][1] = 99
            elif damage == "history":
                f["latest/watch_history"][1, 0] = -4
            elif damage == "history_3d":
                del f["latest/watch_history"]
                f["latest/watch_history"] = np.ones((3, 2, 2), "int32")
            elif damage == "max_history":
                f.attrs["max_history"] = 10**12
            elif damage == "max_history_mismatch":
                f.attrs["max_history"] = 7
            else:
                del f["latest"]
        _reseal(path)
    with pytest.raises(ValueError, match=message):
        RunFolder(tmp_path / "run").watched([1])


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a zip at all"])
def test_unloadable_model_file_is_a_clear_error(tmp_path, content):
    _write(tmp_path / "run")
    (tmp_path / "run" / "candidate_generator.keras").write_bytes(content)
    with pytest.raises(ValueError, match="candidate_generator.keras.*(not a .keras model|could "
                                         "not be loaded)"):
        RunFolder(tmp_path / "run").load_model()


@pytest.mark.parametrize("text", ["1_0", "+5", " 1 ", "\u0663", "010", "1.0", "3\n", "\u00b2"])
def test_user_ids_given_as_text_must_be_exact(tmp_path, text):
    """Integer user ids given as text (command line, JSON) are canonical decimals only."""
    with RunFolder.create(tmp_path / "run") as run:
        run.save_data(
            videos=Vocabulary(["a"]), users=Vocabulary([10, 5, 1, 3], name="user"),
            watched=([10], ["a"]), latest={"watch_history": np.ones((5, 2), "int32")},
        )
    run = RunFolder(tmp_path / "run")
    assert run.user_rows(["10", 5, "1", "3"]).tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="unknown user"):
        run.user_rows([text])


def test_a_flipped_byte_in_run_h5_is_caught_by_its_checksum(tmp_path):
    """A bit flip that leaves every value plausible is still an error, never served."""
    _write(tmp_path / "run")
    path = tmp_path / "run" / "run.h5"
    with h5py.File(path, "r") as f:
        offset = f["latest/watch_history"].id.get_offset()
        assert offset is not None  # contiguous: the values sit at this byte offset
    data = bytearray(path.read_bytes())
    assert data[offset + 8] == 1  # row 1 = [1, 2]: its first value, int32 little-endian
    data[offset + 8] = 2
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"run.h5.*corrupt.*checksum.*re-run keras-yt train"):
        RunFolder(tmp_path / "run").latest_features([1])


def test_a_run_h5_without_checksum_asks_to_train_again(tmp_path):
    _write(tmp_path / "run")
    path = tmp_path / "run" / "run.h5"
    with h5py.File(path, "r") as f, h5py.File(tmp_path / "plain.h5", "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        for name in f:
            f.copy(f[name], g, name)
    os.replace(tmp_path / "plain.h5", path)  # an older run.h5: no user block, no checksum
    with pytest.raises(ValueError, match=r"run.h5.*no checksum.*re-run keras-yt train"):
        RunFolder(tmp_path / "run").videos


_HOLD_LOCK = """
import sys
from keras_yt.run_folder import RunFolder
with RunFolder.lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def _lock_held_by_another_process(path):
    process = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert process.stdout.readline().strip() == "locked"
        yield
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def test_a_second_writer_of_the_same_run_fails_clearly(tmp_path):
    _write(tmp_path / "run", videos=("a", "b", "c"))
    with _lock_held_by_another_process(tmp_path / "run"):
        with pytest.raises(ValueError, match=r"another keras-yt process is writing .*run"):
            _write(tmp_path / "run", videos=("x", "y", "z"))
        with pytest.raises(ValueError, match=r"another keras-yt process is writing"):
            _write(tmp_path / "link-free-alias" / ".." / "run", videos=("x", "y", "z"))
    assert RunFolder(tmp_path / "run").videos.ids.tolist() == ["a", "b", "c"]
    _write(tmp_path / "run", videos=("x", "y", "z"))  # the lock is released with the process
    assert RunFolder(tmp_path / "run").videos.ids.tolist() == ["x", "y", "z"]


def test_out_given_as_a_symlink_to_a_run_writes_the_run_it_points_to(tmp_path):
    _write(tmp_path / "real", videos=("a", "b", "c"))
    (tmp_path / "link").symlink_to(tmp_path / "real")
    _write(tmp_path / "link", videos=("x", "y", "z"))
    assert (tmp_path / "link").is_symlink()
    assert RunFolder(tmp_path / "real").videos.ids.tolist() == ["x", "y", "z"]
    with _lock_held_by_another_process(tmp_path / "real"):  # one lock for the link and its run
        with pytest.raises(ValueError, match="another keras-yt process is writing"):
            _write(tmp_path / "link")


def test_served_arrays_are_mapped_and_an_unchanged_file_is_not_hashed_again(
        tmp_path, monkeypatch):
    """W, b and the user vectors are memory maps of run.h5; its seal is hashed on the first
    load of the file and trusted on later loads while the file is unchanged."""
    import json
    import time

    from keras_yt import _files

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    class Tower:
        input = {"watch_history": None}

        def predict(self, features, **kwargs):
            return np.ones((len(features["watch_history"]), 2), "float32")

    class Model:
        def get_output_embeddings(self):
            return np.arange(8, dtype="float32").reshape(4, 2), np.zeros(4, "float32")

        def user_model(self):
            return Tower()

    with RunFolder.create(tmp_path / "run") as run:
        run.save_data(videos=Vocabulary(["a", "b", "c"]), users=Vocabulary([7], name="user"),
                      watched=([7], ["b"]),
                      latest={"watch_history": np.array([[0, 0], [1, 2]], "int32")},
                      model=Model())
    path = tmp_path / "run" / "run.h5"
    hashed = []
    real = _files.sha256_after
    monkeypatch.setattr(_files, "sha256_after", lambda *a: hashed.append(a) or real(*a))
    arrays = RunFolder(tmp_path / "run").serving_arrays()
    assert len(hashed) == 1 and isinstance(arrays["W"], np.memmap)
    assert arrays["W"].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    from keras_yt._files import embeddings_fingerprint

    assert RunFolder(tmp_path / "run").fingerprint == embeddings_fingerprint(
        arrays["W"][1:], arrays["b"][1:])
    record = _files._seal_record_path(path)
    data = json.loads(open(record).read())
    data["checked_ns"] = data["state"]["ctime_ns"] + 3 * 10**9  # checked 3 s after the write
    with open(record, "w") as fh:
        json.dump(data, fh)
    hashed.clear()
    RunFolder(tmp_path / "run").videos
    assert hashed == [], "an unchanged file checked before is not hashed again"
    time.sleep(0.01)
    with h5py.File(path, "r") as f:
        offset = f["serving/W"].id.get_offset()
    with open(path, "r+b") as fh:  # a changed byte: hashed again and caught
        fh.seek(offset)
        fh.write(b"\x7f")
    with pytest.raises(ValueError, match="run.h5.*corrupt"):
        RunFolder(tmp_path / "run").videos
    assert len(hashed) == 1


def test_every_dataset_of_run_and_index_files_is_aligned_for_memory_maps(tiny_run, tmp_path):
    """numpy gives only aligned arrays to BLAS: W memory-mapped at an odd byte offset was scored
    16x slower. Every stored array starts at a multiple of 64 bytes of its file."""
    from keras_yt._files import mapped_dataset
    from keras_yt.serving import CandidateIndex

    run = RunFolder(tiny_run)
    W = np.random.default_rng(0).normal(size=(300, 8)).astype("float32")
    CandidateIndex.from_embeddings(W, random_state=0, exhaustive_below=0).save(tmp_path / "i.h5")
    for path in (run.data_path, tmp_path / "i.h5"):
        offsets = {}
        with h5py.File(path, "r") as f:
            def visit(name, obj, f=f):
                if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                    offsets[name] = obj.id.get_offset()
                    mapped = mapped_dataset(obj)
                    assert mapped is None or mapped.flags.aligned, name

            f.visititems(visit)
        assert {name: offset % 64 for name, offset in offsets.items()} == dict.fromkeys(offsets, 0)
        assert len(offsets) >= 5, offsets
