"""`RunFolder`: the folder `keras-yt train` / `keras-yt demo` write and every later command reads.

One owner for the layout, used by the command line, the demo and the recommendation service:

* `candidate_generator.keras` – the trained candidate generator (model ids in, user vector out);
* `run.h5` – the data the model needs at serving, no pickle:
  `videos` and `users` (`keras_yt.data.Vocabulary`: raw id ↔ model id, counts, titles),
  `watched` (every video each user watched in training, CSR arrays `indptr`/`indices` by user
  model id, video model ids sorted), `latest` (each user's serving features: the last
  `max_history` watches and, for the demo, its other features), `test` (the held-out last watch
  of each user, `keras_yt.data.leave_last_out_split`);
* written by later commands: `metrics.json`, `history.json`, `user_tower/` (SavedModel taking raw
  ids), `index.h5`, plots; the demo adds the ranker.

A run folder is written whole or not at all: `RunFolder.create(path)` stages it in a hidden folder
next to `path` and swaps it in when the block succeeds, so a failed or killed `train` leaves the
previous run intact. Leftover staging folders of killed writers are removed on the next write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from keras_yt._files import (
    H5_ALIGNMENT,
    current_umask,
    embeddings_fingerprint,
    mapped_dataset,
    record_seal,
    remove_stale_stages,
    seal_state,
    sha256_after,
    staged_folder,
)
from keras_yt.data.vocabulary import Vocabulary

MODEL_FILE = "candidate_generator.keras"
DATA_FILE = "run.h5"
FORMAT_KIND = "keras_yt.RunFolder"
FORMAT_VERSION = 1
# run.h5 starts with a 512-byte HDF5 user block holding the sha256 of the rest of the file (as
# index.h5 does): a damaged file is rejected before HDF5 parses it or a value is served.
_USERBLOCK = 512
_SEAL_MAGIC = b"keras_yt run.h5 sha256 "
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class RunFolder:
    """Reads and writes a run folder (see the module docstring for the layout).

    Args:
        path: the run folder.

    Example:
    >>> import tempfile, numpy as np
    >>> from keras_yt.data import Vocabulary
    >>> path = tempfile.mkdtemp() + "/run"
    >>> with RunFolder.create(path) as run:
    ...     run.save_data(videos=Vocabulary(["a", "b"]), users=Vocabulary([7], name="user"),
    ...                   watched=([7, 7], ["b", "a"]),
    ...                   latest={"watch_history": np.array([[0, 0], [1, 2]], "int32")})
    >>> RunFolder(path).watched([1])[0].tolist()
    [1, 2]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._data: dict | None = None

    # ------------------------------------------------------------------ paths

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def data_path(self) -> Path:
        return self.path / DATA_FILE

    @property
    def index_path(self) -> Path:
        return self.path / "index.h5"

    @property
    def user_tower_path(self) -> Path:
        return self.path / "user_tower"

    def is_run(self) -> bool:
        """Whether the folder holds a model and its data (a run folder)."""
        return self.model_path.is_file() and self.data_path.is_file()

    def check(self) -> None:
        """Raises a ValueError naming the folder if it is not a run folder."""
        if not self.path.is_dir():
            raise ValueError(f"run folder {str(self.path)!r} does not exist; create one with "
                             "`keras-yt train` or `keras-yt demo`")
        if not self.is_run():
            raise ValueError(
                f"{str(self.path)!r} is not a keras-yt run folder (expected {MODEL_FILE} and "
                f"{DATA_FILE}; create one with `keras-yt train` or `keras-yt demo`)"
            )

    # ------------------------------------------------------------------ writing

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: str | os.PathLike) -> Iterator[RunFolder]:
        """Stages a new run folder and swaps it in at `path` when the block succeeds.

        Args:
            path: the run folder to write; an existing run folder there is replaced only once
                the new one is complete.

        Raises:
            ValueError: `path` is an existing file, or a non-empty folder that is not a run
                folder (never replaced).

        Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/run"
        >>> with RunFolder.create(path) as run:
        ...     _ = run.write_json("metrics.json", {"recall@10": 0.5})
        >>> RunFolder(path).read_json("metrics.json")
        {'recall@10': 0.5}
        """
        path = cls.check_target(path)
        with cls.lock(path):
            remove_stale_stages(path, "run")
            with staged_folder(path, "run") as stage:
                yield cls(stage)

    @classmethod
    @contextlib.contextmanager
    def lock(cls, path: str | os.PathLike) -> Iterator[Path]:
        """Holds the write lock of the run folder `path` (re-entrant within this process).

        The lock is an exclusive `fcntl.flock` on the file `.NAME.lock` beside the folder
        (removed on release; the system releases the lock when its process ends, even killed).
        `--out` given as a symbolic link locks and writes the run it points to. `keras-yt
        train` takes it before reading the log, so that a second `train` into the same folder
        fails at once.

        Raises:
            ValueError: another process holds the lock.

        Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/run"
        >>> with RunFolder.lock(path):
        ...     pass
        """
        path = _real(path)
        key = str(path)
        if key in _HELD_LOCKS:
            _HELD_LOCKS[key] += 1
            try:
                yield path
            finally:
                _HELD_LOCKS[key] -= 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.parent / f".{path.name}.lock"
        fd = _acquire(lock_path, key)
        _HELD_LOCKS[key] = 1
        try:
            yield path
        finally:
            del _HELD_LOCKS[key]
            with contextlib.suppress(OSError):
                os.unlink(lock_path)  # still held: no other process has it open and locked
            os.close(fd)  # releases the lock

    @classmethod
    def check_target(cls, path: str | os.PathLike) -> Path:
        """Raises a ValueError if `create(path)` would refuse `path`; returns it as a Path.

        Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "file.txt")
        >>> _ = open(path, "w").write("x")
        >>> RunFolder.check_target(path)
        Traceback (most recent call last):
        ...
        ValueError: ... is an existing file, not a run folder: choose another output folder
        """
        path = _real(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{str(path)!r} is an existing file, not a run folder: choose "
                             "another output folder")
        if path.is_dir() and any(path.iterdir()) and not cls(path).is_run():
            raise ValueError(
                f"{str(path)!r} is a non-empty folder that is not a keras-yt run folder; "
                "refusing to replace it: choose a new or empty folder"
            )
        return path

    def save_data(
        self,
        videos: Vocabulary,
        users: Vocabulary,
        watched: tuple[Any, Any] | dict,
        latest: dict,
        test: dict | None = None,
        max_history: int | None = None,
        model: Any = None,
    ) -> None:
        """Writes `run.h5`.

        Args:
            videos: the video vocabulary (model ids of the model).
            users: the user vocabulary; row r of `latest` belongs to user model id r (row 0:
                the unknown user).
            watched: `(raw user ids, raw video ids)` of every training watch; stored as CSR.
                Or that CSR already built by model ids, a dict `{"indptr", "indices"}` with
                `len(indptr) == users.size + 1` (`keras_yt.data.ExampleShards.watched`).
            latest: serving features per user model id, arrays with `len(users) + 1` rows.
            test: held-out examples (arrays with one row per test user), or None.
            max_history: length of the stored watch histories.
            model: the run's candidate generator, or None. Given, its output embeddings W, b and
                the user vector of every user (from `latest`) are stored too (group `serving`),
                so that `keras-yt recommend --user` answers without loading TensorFlow.
        """
        import h5py

        if isinstance(watched, dict):
            indptr = np.asarray(watched["indptr"], np.int64)
            indices = np.asarray(watched["indices"], np.int32)
            if len(indptr) != users.size + 1:
                raise ValueError(f"watched['indptr'] must have {users.size + 1} entries (one per "
                                 f"user model id, plus one), got {len(indptr)}")
        else:
            user_rows = users.lookup(watched[0])
            video_ids = videos.lookup(watched[1])
            indptr, indices = _csr(user_rows, video_ids, users.size)
        for name, value in latest.items():
            if len(value) != users.size:
                raise ValueError(f"latest[{name!r}] must have {users.size} rows (one per user "
                                 f"model id, row 0 unknown), got {len(value)}")
        with h5py.File(self.data_path, "w", userblock_size=_USERBLOCK,
                       **H5_ALIGNMENT) as f:
            f.attrs["kind"] = FORMAT_KIND
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["max_history"] = -1 if max_history is None else int(max_history)
            videos.write(f.create_group("videos"))
            users.write(f.create_group("users"))
            group = f.create_group("watched")
            group.create_dataset("indptr", data=indptr)
            group.create_dataset("indices", data=indices, compression="gzip")
            _write_arrays(f.create_group("latest"), latest)
            if test is not None:
                _write_arrays(f.create_group("test"), test)
            if model is not None:
                group = f.create_group("serving")
                W, b = model.get_output_embeddings()
                tower = model.user_model()
                features = {name: latest[name] for name in tower.input}
                user_vectors = tower.predict(features, verbose=0, batch_size=1024)
                W, b = np.asarray(W, np.float32), np.asarray(b, np.float32)
                group.create_dataset("W", data=W)
                group.create_dataset("b", data=b)
                group.create_dataset("user_vectors", data=np.asarray(user_vectors, np.float32))
                # the model's fingerprint (as an index stores it), sealed with the file: readers
                # compare it instead of hashing W
                group.attrs["fingerprint"] = embeddings_fingerprint(W[1:], b[1:])
        _seal(self.data_path)
        self._data = None

    def write_json(self, name: str, value: Any) -> Path:
        """Writes `name` (JSON) in the folder atomically; returns its path."""
        path = self.path / name
        text = json.dumps(value, indent=2, sort_keys=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path, prefix=f".{name}.", delete=False) as f:
            f.write(text)
        os.chmod(f.name, 0o666 & ~current_umask())
        os.replace(f.name, path)
        return path

    def read_json(self, name: str) -> Any:
        """Reads a JSON file of the folder (ValueError naming it if it is not JSON)."""
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read {str(path)!r}: {error}") from None

    @contextlib.contextmanager
    def replace_subfolder(self, name: str) -> Iterator[Path]:
        """Yields a staging folder that replaces `name` in the run when the block succeeds."""
        target = self.path / name
        stage = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=self.path))
        try:
            yield stage / name
            old = None
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=self.path))
                os.replace(target, old / name)
            os.replace(stage / name, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------ reading

    def load_model(self):
        """The candidate generator, with a clear error if the `.keras` file is not loadable."""
        from keras_yt._quiet import load_tensorflow

        self.check()
        load_tensorflow()
        import keras

        import keras_yt.models  # noqa: F401  (registers the classes with Keras)

        path = self.model_path
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{str(path)!r} is not a .keras model file (not a zip archive); "
                             "train the run again")
        try:
            return keras.saving.load_model(path)
        except Exception as error:  # Keras raises many types for damaged archives
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(f"{str(path)!r} could not be loaded as a keras_yt model "
                             f"({type(error).__name__}: {first[:200]})") from None

    def _load_data(self) -> dict:
        """Reads and checks run.h5 (once per `RunFolder`).

        What is checked when: the seal (sha256 of the file after its user block) is hashed on
        the first load of each state of the file, and then trusted while the file is unchanged
        (`keras_yt._files.seal_state`: same inode, size, modification and status-change times);
        the structure (groups, shapes, id ranges) is checked on every load; the values of the
        served arrays W, b and user vectors (finite) are checked when the file is hashed. Those
        three arrays are memory-mapped, not read: a one-off query reads only what it uses.
        """
        if self._data is not None:
            return self._data
        import h5py

        if not self.data_path.is_file():
            self.check()
        source = repr(str(self.data_path))
        sealed = _check_seal(self.data_path, source)
        try:
            f = h5py.File(self.data_path, "r")
        except OSError as error:
            raise ValueError(f"{source} is not a readable HDF5 file ({error})") from None
        with f:
            if f.attrs.get("kind") != FORMAT_KIND:
                raise ValueError(f"{source} is not a keras_yt run data file")
            version = int(f.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise ValueError(f"{source} has format version {version}; this keras_yt reads "
                                 f"version {FORMAT_VERSION}")
            for group in ("videos", "users", "watched", "latest"):
                if group not in f:
                    raise ValueError(f"{source} has no '{group}' group: it is incomplete")
            from keras_yt._files import check_h5_sizes

            check_h5_sizes(f, self.data_path)
            try:
                data = {
                    "videos": Vocabulary.read(f["videos"], source=f"{source}/videos"),
                    "users": Vocabulary.read(f["users"], source=f"{source}/users"),
                    "indptr": np.asarray(f["watched/indptr"][()]),
                    "indices": np.asarray(f["watched/indices"][()]),
                    "latest": _read_arrays(f["latest"]),
                    "test": _read_arrays(f["test"]) if "test" in f else None,
                    "serving": _read_arrays(f["serving"], mapped=True) if "serving" in f
                    else None,
                    "fingerprint": str(f["serving"].attrs["fingerprint"])
                    if "serving" in f and "fingerprint" in f["serving"].attrs else None,
                    "max_history": int(f.attrs.get("max_history", -1)),
                }
            except (KeyError, OSError, UnicodeDecodeError) as error:
                raise ValueError(f"{source} is damaged or incomplete ({error})") from None
            except MemoryError:
                raise ValueError(f"{source}: not enough memory to load its arrays") from None
        _check_data(data, source, values=sealed[0] != "trusted")
        if sealed[0] == "verified":
            record_seal(self.data_path, sealed[1])
        self._data = data
        return data

    @property
    def videos(self) -> Vocabulary:
        """The video vocabulary (raw ↔ model ids)."""
        return self._load_data()["videos"]

    @property
    def users(self) -> Vocabulary:
        """The user vocabulary (raw user id ↔ row of the stored features)."""
        return self._load_data()["users"]

    @property
    def max_history(self) -> int:
        return self._load_data()["max_history"]

    def serving_arrays(self) -> dict | None:
        """`{"W", "b", "user_vectors"}` stored by `save_data(model=...)`, or None.

        The arrays are read-only memory maps of run.h5 (for files where they are stored
        contiguous, as `save_data` writes them).
        """
        serving = self._load_data()["serving"]
        return None if serving is None else dict(serving)

    @property
    def fingerprint(self) -> str | None:
        """The stored model fingerprint (sha256 of W and b without row 0, as
        `keras_yt.serving.CandidateIndex.fingerprint`), None in runs written before it was."""
        return self._load_data()["fingerprint"]

    def watched(self, user_rows: Any) -> list[np.ndarray]:
        """Video model ids each user watched in training (sorted), per user model id."""
        data = self._load_data()
        indptr, indices = data["indptr"], data["indices"]
        return [indices[indptr[r]: indptr[r + 1]].astype(np.int64) for r in np.asarray(user_rows)]

    def latest_features(self, user_rows: Any) -> dict:
        """The stored serving features (`watch_history` etc.) of the given user model ids."""
        rows = np.asarray(user_rows, dtype=np.int64)
        return {name: value[rows] for name, value in self._load_data()["latest"].items()}

    def test_examples(self) -> dict:
        """The held-out last watch of each user (ValueError if the run has none)."""
        test = self._load_data()["test"]
        if test is None:
            raise ValueError(f"{str(self.data_path)!r} holds no test examples")
        return dict(test)

    def user_rows(self, raw_users: Any) -> np.ndarray:
        """User model ids of raw user ids, with a ValueError naming an unknown one.

        Raw ids may be given as strings (command-line arguments) for a log of integer user ids.
        """
        users = self.users
        rows = []
        for value in np.asarray(raw_users, dtype=object).reshape(-1).tolist():
            key = _user_key(value, users.is_string)
            row = 0 if key is None else int(users.lookup(np.asarray([key]))[0])
            if row == 0:
                raise ValueError(
                    f"unknown user {value!r}: the run's watch log has no watches for it"
                )
            rows.append(row)
        return np.asarray(rows, np.int64)


def _user_key(value: Any, is_string: bool):
    if is_string:
        return str(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) if 0 <= int(value) < 2**63 else None
    if isinstance(value, str):
        from keras_yt.data.vocabulary import canonical_int

        return canonical_int(value)  # exact: "010", "+5", "1_0", " 1 " are no integer ids
    return None


# ---------------------------------------------------------------------- helpers

_HELD_LOCKS: dict[str, int] = {}  # run folders this process holds the write lock of


def _acquire(lock_path: Path, key: str) -> int:
    """An open descriptor of `lock_path` holding its exclusive flock (ValueError if taken)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
    for _ in range(10):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(
                f"another keras-yt process is writing the run folder {key!r} (it holds "
                f"{str(lock_path)!r}); wait for it to finish or choose another --out"
            ) from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed this file as it released it: lock the new one
    raise ValueError(f"could not take the write lock {str(lock_path)!r} of {key!r}")


def _real(path: str | os.PathLike) -> Path:
    """The folder a run path names, symbolic links followed (a link to a run writes that run)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))



def _seal(path: str | os.PathLike) -> None:
    """Writes the sha256 of everything after the user block into run.h5's user block."""
    digest = sha256_after(path, _USERBLOCK).encode()
    with open(path, "r+b") as fh:
        fh.write((_SEAL_MAGIC + digest).ljust(_USERBLOCK, b"\0"))


def _check_seal(path: Path, source: str) -> tuple[str, str]:
    """Raises a ValueError naming run.h5 unless its user block holds the sha256 of the rest.

    Returns `(state, digest)`: `"trusted"` (an earlier check of the unchanged file is on record,
    nothing was read) or `"verified"` (hashed now), and the stored digest.
    """
    with open(path, "rb") as fh:
        head = fh.read(_USERBLOCK)
    if not head.startswith(_SEAL_MAGIC):
        if head.startswith(_HDF5_SIGNATURE):
            raise ValueError(f"{source} has no checksum (written by an older keras_yt, or not by "
                             "keras_yt): re-run keras-yt train to write this run again")
        raise ValueError(f"{source} is not a readable HDF5 file (not a keras_yt run data file: "
                         "truncated or damaged); re-run keras-yt train")
    stored = head[len(_SEAL_MAGIC):len(_SEAL_MAGIC) + 64].decode("ascii", "replace")
    state = "mismatch" if len(head) < _USERBLOCK else seal_state(path, _USERBLOCK, stored)
    if state == "mismatch":
        raise ValueError(f"{source} is corrupt: its checksum does not match its contents "
                         "(damaged or truncated); re-run keras-yt train")
    return state, stored


def _csr(rows: np.ndarray, cols: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    keep = (rows > 0) & (cols > 0)
    pairs = np.unique(np.stack([rows[keep], cols[keep]], axis=1), axis=0) if keep.any() \
        else np.zeros((0, 2), np.int64)
    counts = np.bincount(pairs[:, 0], minlength=num_rows)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, pairs[:, 1].astype(np.int32)


def _write_arrays(group: Any, arrays: dict) -> None:
    import h5py

    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind in "UO":
            group.create_dataset(name, data=value.astype(str).astype(object),
                                 dtype=h5py.string_dtype("utf-8"))
        else:
            group.create_dataset(name, data=value)


def _read_arrays(group: Any, mapped: bool = False) -> dict:
    out = {}
    for name in group:
        value = mapped_dataset(group[name]) if mapped else None
        if value is None:
            value = group[name][()]
        if value.dtype.kind == "O":
            value = np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v),
                                 otypes=[object])(value).astype(str)
        out[name] = value
    return out


def _finite(array: np.ndarray) -> bool:
    """Whether every value is finite, a block of rows at a time (memory-mapped arrays)."""
    return all(np.isfinite(array[i:i + (1 << 16)]).all() for i in range(0, len(array), 1 << 16))


def _check_data(data: dict, source: str, values: bool = True) -> None:
    """Shapes and ranges of the stored arrays (the file is untrusted input); with `values`, the
    served arrays' values too (finite: a pass over the memory-mapped W)."""
    num_videos, num_users = data["videos"].size, data["users"].size
    indptr, indices = data["indptr"], data["indices"]
    if (indptr.ndim != 1 or len(indptr) != num_users + 1 or indptr.dtype.kind not in "iu"
            or indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices)):
        raise ValueError(f"{source}: 'watched/indptr' is not a valid CSR row pointer for "
                         f"{num_users} user rows")
    if indices.ndim != 1 or indices.dtype.kind not in "iu" or (
            len(indices) and (indices.min() < 1 or indices.max() >= num_videos)):
        raise ValueError(f"{source}: 'watched/indices' must hold video model ids in "
                         f"1..{num_videos - 1}")
    for name, value in data["latest"].items():
        if value.ndim < 1 or len(value) != num_users:
            raise ValueError(f"{source}: 'latest/{name}' has {len(value)} rows, expected "
                             f"{num_users} (one per user model id)")
    serving = data["serving"]
    if serving is not None:
        W, b, u = (serving.get(n) for n in ("W", "b", "user_vectors"))
        if W is None or b is None or u is None or W.ndim != 2 or W.shape[0] != num_videos or \
                b.shape != (num_videos,) or u.ndim != 2 or u.shape != (num_users, W.shape[1]) \
                or (values and not all(_finite(a) for a in (W, b, u))):
            raise ValueError(f"{source}: the 'serving' group must hold finite W ({num_videos}, "
                             f"d), b ({num_videos},) and user_vectors ({num_users}, d)")
    history = data["latest"].get("watch_history")
    if history is None:
        raise ValueError(f"{source}: 'latest/watch_history' is missing")
    if history.ndim != 2 or history.shape[1] < 1:
        raise ValueError(f"{source}: 'latest/watch_history' must be a 2-D array (users, "
                         f"max_history), got shape {history.shape}")
    if data["max_history"] not in (-1, history.shape[1]):
        raise ValueError(f"{source}: attribute max_history must be {history.shape[1]} (the width "
                         f"of 'latest/watch_history'), got {data['max_history']}")
    test = data["test"]
    if test is not None:
        test_history = test.get("watch_history")
        if test_history is not None and (
                test_history.ndim != 2 or test_history.shape[1] != history.shape[1]):
            raise ValueError(f"{source}: 'test/watch_history' must be a 2-D array of width "
                             f"{history.shape[1]}, got shape {test_history.shape}")
    if history.dtype.kind not in "iu" or (history.size and (
            history.min() < 0 or history.max() >= num_videos)):
        raise ValueError(f"{source}: 'latest/watch_history' must hold video model ids in "
                         f"0..{num_videos - 1}")
