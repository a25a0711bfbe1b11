"""Atomic writes (`keras_yt._files`): failed HDF5 writes are errors, not crashes; the temporary
files and folders of dead writers are removed by the next write into the folder."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_yt._files import atomic_path, clean_stale_temps, h5_writer


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid

def test_the_next_write_removes_dead_writers_temporaries_of_any_target(tmp_path):
    pid = dead_pid()
    keras_folder = tmp_path / f".tmp-model.keras.{pid}.abcd_123"  # a private folder ...
    keras_folder.mkdir()
    (keras_folder / "tmpk2j3h4g5").write_bytes(b"x" * 1000)  # ... holding Keras' temp file
    other_target = tmp_path / f".tmp-index.h5.{pid}.zz9yy8xx"
    other_target.write_bytes(b"x" * 1000)
    alive = tmp_path / f".tmp-index.h5.{os.getpid()}.aaaaaaaa"  # a live writer's: kept
    alive.write_bytes(b"")
    keep = tmp_path / ".tmp-notes"  # not a temporary name of ours: kept
    keep.write_bytes(b"")
    with atomic_path(tmp_path / "history.json") as tmp:
        with open(tmp, "w") as fh:
            fh.write("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, keep.name, "history.json"])
    assert clean_stale_temps(tmp_path / "x") == []

def test_a_private_folder_is_removed_with_what_the_writer_left_in_it(tmp_path):
    with atomic_path(tmp_path / "model.keras", suffix=".keras", private_folder=True) as tmp:
        assert os.path.dirname(tmp) != str(tmp_path) and tmp.endswith(".keras")
        with open(tmp, "wb") as fh:
            fh.write(b"model")
        with open(os.path.join(os.path.dirname(tmp), "tmpkeras"), "wb") as fh:
            fh.write(b"scratch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model.keras", private_folder=True):
        raise RuntimeError("the writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    assert (tmp_path / "model.keras").read_bytes() == b"model"

def test_h5_writer_writes_what_h5py_writes(tmp_path):
    import h5py

    data = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    with h5_writer(str(tmp_path / "a.h5"), userblock_size=512) as f:
        f.create_dataset("data", data=data)
        f.attrs["kind"] = "test"
    with h5py.File(tmp_path / "a.h5", "r") as f:
        np.testing.assert_array_equal(f["data"][...], data)
        assert f.attrs["kind"] == "test" and f.userblock_size == 512

def test_a_failed_hdf5_write_is_an_error_and_the_process_lives_on(tmp_path):
    # Regression (issue 24, item 9): HDF5 could neither flush nor close a file whose write
    # failed; the process then crashed (SIGSEGV) or hung at exit.
    script = textwrap.dedent(f"""
        import os, resource
        import numpy as np
        from keras_yt.serving.exact_index import ExactIndex
        W = np.random.default_rng(0).normal(size=(5000, 32)).astype("float32")
        index = ExactIndex.from_embeddings(W)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            index.save({str(tmp_path / 'index.h5')!r})
        except OSError as error:
            print("error:", error)
        print("alive")
    """)
    (tmp_path / "index.h5").write_bytes(b"old index")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "could not write" in out.stdout and "index.h5" in out.stdout, out.stdout
    assert "File too large" in out.stdout and out.stdout.strip().endswith("alive")
    assert (tmp_path / "index.h5").read_bytes() == b"old index"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.h5"]

def test_sigterm_removes_the_temporary_file(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, time
        from keras_yt._files import atomic_path, terminate_as_interrupt
        terminate_as_interrupt()
        try:
            with atomic_path({str(tmp_path / 'out.bin')!r}) as tmp:
                open(tmp, "wb").write(b"x" * 100_000)
                print("writing", flush=True)
                time.sleep(60)
        except KeyboardInterrupt:
            print("interrupted")
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert process.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.iterdir())) == 1  # the temporary file
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert "interrupted" in out and list(tmp_path.iterdir()) == []
