"""`Recommender`: top-k videos for a user of a run folder, raw ids in and raw ids out."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from keras_yt.serving import _query

FALLBACK_POPULAR = "popular"
"""`Recommender.fallback` (the service's `"fallback"` field) when no watch is known."""

EXACT_MAX_VIDEOS = 200_000
"""`search="auto"` ranks corpora up to this size exactly (faster than loading a graph index)."""


class Recommender:
    """Serves a run folder: user vector from the user tower, then top-k of `u · W_j + b_j`.

    Raw ids in, raw ids out: users and videos are named by the log's own ids
    (`keras_yt.data.Vocabulary` maps them). Every video the user watched (the whole stored
    history, not only the last `max_history` watches) is left out unless `keep_watched=True`.
    `k` larger than the eligible videos returns fewer items, never padding.

    Search: `"exact"` (`ExactIndex`, brute force), `"index"` (the run's `index.h5`,
    `CandidateIndex`), `"scan"` (exact too, W read from run.h5 a block at a time for each query:
    for one-off queries on a large run, which it answers without loading W, an index or
    TensorFlow; `keras-yt recommend` uses it) or `"auto"`: exact up to `EXACT_MAX_VIDEOS` videos
    (one matrix product over 200k x 256 floats takes a few ms), else the index if the run has
    one.

    The run's W, b and user vectors are memory-mapped from run.h5 (`RunFolder.serving_arrays`),
    its model is loaded only when a watch history needs the user tower (or `warm`).

    Thread-safe: on TensorFlow the user tower is compiled `tf.function`s that threads call
    concurrently (elsewhere it runs under a lock); the indexes are safe to query from several
    threads (`CandidateIndex` searches small calls in the calling thread without the GIL).

    Args:
        run: a run folder (path or `keras_yt.run_folder.RunFolder`).
        search: `"auto"`, `"exact"`, `"index"` or `"scan"`.
        warm: run one query at start-up so that the first request pays no compilation.
        tower_in_background: with `warm`, in a run that stores its user vectors, load and warm
            the model (the user tower: seconds for a large run) in a background thread, so
            that requests by user id are answered at once; a request that needs the tower
            waits for it (`keras-yt serve` starts this way).

    Example:
    >>> from keras_yt.demo import run_demo
    >>> import tempfile, contextlib, io
    >>> out = tempfile.mkdtemp() + "/demo"
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     _ = run_demo(out=out, size="tiny", epochs=1, ranker=False)
    >>> recommender = Recommender(out)
    >>> items = recommender.recommend(user=1, k=3)
    >>> len(items), sorted(items[0])
    (3, ['id', 'score', 'title'])
    """

    def __init__(self, run: Any, search: str = "auto", warm: bool = True,
                 tower_in_background: bool = False):
        from keras_yt.run_folder import RunFolder
        from keras_yt.serving import _embeddings

        if search not in ("auto", "exact", "index", "scan"):
            raise ValueError(f"search must be 'auto', 'exact', 'index' or 'scan', got {search!r}")
        self.run = run if isinstance(run, RunFolder) else RunFolder(run)
        self.run.check()
        started = time.perf_counter()
        self.videos = self.run.videos
        self.users = self.run.users
        self.max_history = int(self.run.latest_features([0])["watch_history"].shape[1])
        self._model = None
        self._tower = None
        self._compiled = None  # the tower's tf.functions (False off TensorFlow), made on first use
        self._lock = threading.Lock()
        stored = self.run.serving_arrays()
        background = tower_in_background and warm and stored is not None
        if stored is None or (warm and not background):
            self._load_model()
        if stored is None:
            W, b = self.model.get_output_embeddings()
            stored = {"W": W, "b": b, "user_vectors": None}
        self._user_vectors = stored["user_vectors"]
        self._W, self._b = stored["W"], stored["b"]
        if len(self._W) != self.videos.size:
            raise ValueError(
                f"{str(self.run.data_path)!r} lists {len(self.videos)} videos but the model has "
                f"{len(self._W) - 1}: the run folder is inconsistent; train it again"
            )
        # stored in run.h5 (sealed with it) by runs written since it is; else hashed from W
        self.fingerprint = self.run.fingerprint if stored.get("user_vectors") is not None and \
            self.run.fingerprint else _embeddings.fingerprint(self._W[1:], self._b[1:])
        self.index, self.search = self._open_index(search)
        self.tower_thread = None
        self._tower_error = None
        if warm:
            if background:
                self.tower_thread = threading.Thread(target=self._warm_tower, daemon=True,
                                                     name="keras_yt-user-tower")
                self.tower_thread.start()
            else:
                self.recommend(watch_history=[], k=1)
            if len(self.users):
                self.recommend_users([self.users.ids[0]], k=1)
        self.load_seconds = time.perf_counter() - started

    def _warm_tower(self) -> None:
        """Loads the model and runs the tower once (the background start of `serve`)."""
        import logging

        try:
            self.recommend(watch_history=[], k=1)
        except Exception as error:  # requests that need the tower retry the load and fail
            self._tower_error = f"{type(error).__name__}: {error}"
            logging.getLogger(__name__).warning("loading the user tower failed: %s", error)

    def _load_model(self) -> None:
        model = self.run.load_model()
        if model.num_videos != self.videos.size:
            raise ValueError(
                f"{str(self.run.data_path)!r} lists {len(self.videos)} videos but the model has "
                f"{model.num_videos - 1}: the run folder is inconsistent; train it again"
            )
        self._tower = model.user_model()
        self._model = model  # last: a thread that sees the model sees its tower

    @property
    def model(self):
        """The candidate generator (loaded on first use when the run stores user vectors)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._load_model()
        return self._model

    @property
    def tower(self):
        """The user tower (`CandidateGenerator.user_model()`)."""
        self.model  # noqa: B018  (loads it)
        return self._tower

    def _open_index(self, search: str):
        from keras_yt.serving.exact_index import ExactIndex

        n = len(self.videos)
        W, b, ids = self._W[1:], self._b[1:], np.arange(1, n + 1, dtype=np.int64)
        if search == "scan":
            from keras_yt.serving._scan import ScanIndex

            return ScanIndex(W, b, ids), f"exact (one pass over W on disk, {n:,} videos)"
        has_index = self.run.index_path.is_file()
        if search == "index" or (search == "auto" and n > EXACT_MAX_VIDEOS and has_index):
            if not has_index:
                raise ValueError(f"{str(self.run.path)!r} has no index.h5; build it with "
                                 "`keras-yt index --run DIR` or use exact search")
            from keras_yt.serving.candidate_index import CandidateIndex

            try:
                index = CandidateIndex.load(self.run.index_path, fingerprint=self.fingerprint)
            except OSError as error:
                raise ValueError(f"{str(self.run.index_path)!r} is not a readable index file "
                                 f"({error})") from None
            if not np.array_equal(np.sort(index.ids), ids):
                raise ValueError(f"{str(self.run.index_path)!r} does not index this run's "
                                 "videos; rebuild it with `keras-yt index`")
            return index, f"approximate (graph index, {n:,} videos)"
        if n >= 1 << 17:
            from keras_yt._quiet import load_tensorflow

            load_tensorflow()  # ExactIndex ranks large corpora on the Keras backend
        return ExactIndex(W, b, ids), f"exact (brute force over {n:,} videos)"

    # ------------------------------------------------------------------ features

    def _model_history(self, raw_history: Any) -> np.ndarray:
        """Raw ids → one left-padded row of model ids (newest last); unknown ids are dropped."""
        ids = self.videos.lookup(_id_array(raw_history, self.videos.is_string))
        ids = ids[ids > 0][-self.max_history:]
        row = np.zeros((1, self.max_history), np.int32)
        if len(ids):
            row[0, -len(ids):] = ids
        return row

    def _default_features(self, history: np.ndarray) -> dict:
        """Features for a bare watch history: other features unknown (0 / empty)."""
        features = {}
        for name, tensor in self.tower.input.items():
            if name == "watch_history":
                features[name] = history
                continue
            # A dimension the tower leaves open (the search tokens on JAX) gets one padding slot.
            shape = (len(history), *(1 if d is None else d for d in tensor.shape[1:]))
            if tensor.dtype == "string":
                features[name] = np.full(shape, "", dtype=object)
            else:
                features[name] = np.zeros(shape, dtype=tensor.dtype)
        return features

    def user_vectors(self, features: dict) -> np.ndarray:
        """User vectors of a batch of features (model ids).

        On TensorFlow the user tower runs as a concrete `tf.function` (the graph that `keras-yt
        export` writes into the SavedModel, without its raw-id lookup and without Keras'
        per-call set-up), which threads call concurrently; a single user goes through an
        XLA-compiled copy of it (one fused program: a 200-watch attention history in about
        half the plain graph's time), when XLA compiles the tower. Other backends run
        `predict_on_batch` (a compiled step) under the tower's lock. All give the Keras model's
        user vectors (to float32 rounding).
        """
        compiled = self._compiled_tower()
        if compiled is not None:
            return self._run_compiled(compiled, features)
        inputs = {name: features[name] for name in self.tower.input}
        with self._lock:
            return np.asarray(self.tower.predict_on_batch(inputs), dtype=np.float32)

    @staticmethod
    def _run_compiled(compiled: dict, features: dict) -> np.ndarray:
        import tensorflow as tf

        tensors = {name: tf.convert_to_tensor(
            features[name] if dtype is None else np.asarray(features[name], dtype=dtype))
            for name, dtype in compiled["dtypes"].items()}
        single = compiled["single"]
        function = single if single is not None and len(features["watch_history"]) == 1 else \
            compiled["batch"]
        return function(tensors).numpy().astype(np.float32, copy=False)

    def _compiled_tower(self) -> dict | None:
        """The user tower's compiled functions on TensorFlow (`{"batch", "single", "dtypes"}`:
        any batch size; one user, XLA, or None where XLA cannot compile the tower; the numpy
        dtype of each input, None for strings), None on other backends. Made on first use."""
        if self._compiled is not None:
            return self._compiled or None
        import keras

        tower = self.tower
        with self._lock:
            if self._compiled is None:
                compiled = False
                if keras.backend.backend() == "tensorflow":
                    compiled = _compile_tower(tower)
                    try:  # XLA compiles on the first call: a tower it cannot take stays plain
                        self._run_compiled(compiled, self._default_features(
                            np.zeros((1, self.max_history), np.int32)))
                    except Exception:  # noqa: BLE001  (XLA raises several error types)
                        compiled["single"] = None
                self._compiled = compiled  # complete before another thread sees it
        return self._compiled or None

    # ------------------------------------------------------------------ recommending

    def recommend(
        self,
        user: Any = None,
        watch_history: Any = None,
        k: int = 10,
        exclude: Any = None,
        keep_watched: bool = False,
    ) -> list[dict]:
        """Top-k videos for one user, by raw user id or by a watch history of raw video ids.

        Args:
            user: a raw user id of the run (its stored features and whole watch history are
                used), or None.
            watch_history: raw video ids, oldest first, when `user` is None (unknown ids are
                ignored; other features are unknown).
            k: number of videos (fewer when fewer are eligible).
            exclude: raw video ids to leave out as well.
            keep_watched: do not leave out the watched videos.

        Returns:
            `[{"id": raw video id, "score": u·W_j + b_j, "title": str or None}, ...]`, best first.

        Raises:
            ValueError: bad `k`, both or neither of `user` / `watch_history`, or an unknown user.
        """
        if (user is None) == (watch_history is None):
            raise ValueError("give exactly one of user and watch_history")
        if user is not None:
            return self.recommend_users([user], k, None if exclude is None else [exclude],
                                        keep_watched)[0]
        _query.check_k(k)
        history = self._model_history(watch_history)
        u = self.user_vectors(self._default_features(history))
        excluded = [] if keep_watched else [history[0]]
        if exclude is not None:
            excluded.append(self.videos.lookup(_id_array(exclude, self.videos.is_string)))
        return self._top_k(u, k, [_merge(excluded)])[0]

    def fallback(self, user: Any = None, watch_history: Any = None) -> str | None:
        """Says whether `recommend(user=..., watch_history=...)` answers for want of any watch.

        A watch history that is empty, or whose videos are all unknown to the run, gives the
        user vector of a user with no watches: the videos everybody watches (popular videos),
        not a personal answer. The service returns this as the response field `"fallback"`.

        Args:
            user: a raw user id of the run, or None.
            watch_history: raw video ids, when `user` is None.

        Returns:
            `"popular"` when no watch of the history is a known video, else None.

        Raises:
            ValueError: both or neither of `user` / `watch_history`, or an unknown user.

        Example:
        >>> recommender = Recommender("runs/demo")  # doctest: +SKIP
        >>> recommender.fallback(watch_history=[]), recommender.fallback(user=1)  # doctest: +SKIP
        ('popular', None)
        """
        if (user is None) == (watch_history is None):
            raise ValueError("give exactly one of user and watch_history")
        if user is not None:
            return self.fallback_users([user])[0]
        return _fallback_of(self._model_history(watch_history)[0])

    def fallback_users(self, users: Any) -> list[str | None]:
        """`fallback(user=...)` for several raw user ids at once (one lookup, one gather).

        Args:
            users: raw user ids of the run.

        Returns:
            One `"popular"` or None per user (see `fallback`).

        Raises:
            ValueError: an unknown user.

        Example:
        >>> Recommender("runs/demo").fallback_users([1, 2])  # doctest: +SKIP
        [None, None]
        """
        histories = self.run.latest_features(self.run.user_rows(users))["watch_history"]
        return [_fallback_of(history) for history in histories]

    def recommend_users(
        self, users: Any, k: int = 10, exclude: list | None = None, keep_watched: bool = False
    ) -> list[list[dict]]:
        """`recommend` for several raw user ids at once (one batch through the tower).

        Args:
            users: raw user ids.
            k: videos per user.
            exclude: None or one list of raw video ids per user.
            keep_watched: do not leave out the watched videos.

        Returns:
            One list of items per user (see `recommend`).
        """
        _query.check_k(k)
        rows = self.run.user_rows(users)
        if exclude is not None and len(exclude) != len(rows):
            raise ValueError(f"exclude must hold one list per user ({len(rows)}), got "
                             f"{len(exclude)}")
        features = self.run.latest_features(rows)
        if self._user_vectors is not None:  # computed by the model when the run was written
            u = self._user_vectors[rows]
        else:
            u = self.user_vectors(self._complete(features))
        excluded = []
        watched = self.run.watched(rows)
        for i in range(len(rows)):
            parts = [] if keep_watched else [watched[i], features["watch_history"][i]]
            if exclude is not None and exclude[i] is not None:
                parts.append(self.videos.lookup(_id_array(exclude[i], self.videos.is_string)))
            excluded.append(_merge(parts))
        return self._top_k(u, k, excluded)

    def _complete(self, features: dict) -> dict:
        defaults = self._default_features(features["watch_history"])
        return {name: features.get(name, defaults[name]) for name in self.tower.input}

    def _top_k(self, u: np.ndarray, k: int, excluded: list) -> list[list[dict]]:
        # k, or fewer where fewer videos are eligible; one index query per such size
        sizes = np.minimum(k, len(self.videos) - np.array([len(ex) for ex in excluded]))
        out: list[list[dict]] = [[] for _ in excluded]
        for kk in np.unique(sizes[sizes > 0]).tolist():
            rows = np.flatnonzero(sizes == kk)
            for chunk in _batch_independent_chunks(self.index, rows):
                ids, scores = self.index.query(u[chunk], k=kk,
                                               exclude=[excluded[r] for r in chunk])
                for r, id_row, score_row in zip(chunk.tolist(), ids, scores):
                    out[r] = self._items(id_row, score_row)
        return out

    def _items(self, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
        keep = ids >= 1
        model_ids, scores = ids[keep], scores[keep]
        raw = self.videos.raw_ids(model_ids).tolist()
        titles = self.videos.titles
        return [{"id": raw_id, "score": float(score),
                 "title": None if titles is None else str(titles[m - 1])}
                for raw_id, score, m in zip(raw, scores, model_ids.tolist())]

    @property
    def tower_state(self) -> str:
        """`"ready"` (the user tower is loaded, and warm if `warm`), `"loading"` (in the
        background, `tower_in_background`; requests that need it wait), `"not loaded"` (loaded
        on first use) or `"failed: <error>"`."""
        thread = self.tower_thread
        if thread is not None and thread.is_alive():
            return "loading"
        if self._model is not None:
            return "ready"
        return "not loaded" if self._tower_error is None else f"failed: {self._tower_error}"

    def describe(self) -> dict:
        """What is served: model fingerprint, corpus and user counts, search kind, tower state."""
        return {
            "model": self.fingerprint,
            "videos": len(self.videos),
            "users": len(self.users),
            "search": self.search,
            "run": os.fspath(self.run.path),
            "tower": self.tower_state,
        }


def _compile_tower(tower) -> dict:
    """Concrete `tf.function`s of a Keras user tower: any batch size, and one user with XLA."""
    import tensorflow as tf

    def call(features):
        return tower(features, training=False)

    def specs(batch):
        return {name: tf.TensorSpec((batch, *tensor.shape[1:]), tensor.dtype, name=name)
                for name, tensor in tower.input.items()}

    functions = {"batch": tf.function(call, input_signature=[specs(None)], autograph=False)}
    # XLA takes no strings (the search queries): such a tower stays a plain graph. (Trying
    # anyway fails, and a second try in the same process aborts it in TensorFlow 2.20.)
    if all(spec.dtype != tf.string for spec in specs(1).values()):
        functions["single"] = tf.function(call, input_signature=[specs(1)], autograph=False,
                                          jit_compile=True)
    return {
        "single": None,
        **{name: f.get_concrete_function() for name, f in functions.items()},
        "dtypes": {name: None if spec.dtype == tf.string else spec.dtype.as_numpy_dtype
                   for name, spec in specs(None).items()},
    }


def _id_array(values: Any, is_string: bool) -> np.ndarray:
    """Raw ids as given (lists from JSON / the command line) to a lookup-able array."""
    from keras_yt.data.vocabulary import canonical_int

    values = list(values) if not isinstance(values, np.ndarray) else values.tolist()
    if is_string:
        return np.asarray([str(v) for v in values], dtype=str).reshape(-1)
    out = []
    for v in values:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < 2**63:
            out.append(int(v))
        elif isinstance(v, str) and canonical_int(v) is not None:  # exact: no "+5", "1_0"
            out.append(canonical_int(v))
        else:
            out.append(-1)  # not an id of this vocabulary: looked up as unknown
    return np.asarray(out, dtype=np.int64).reshape(-1)


def _batch_independent_chunks(index: Any, rows: np.ndarray) -> list[np.ndarray]:
    """`rows` in chunks whose query gives each row the answer it gets alone: all at once for
    the graph search (per-row walks and float64 re-scoring), one by one for a matrix product
    (BLAS sums a batch in another order than one row: the last bits of a score could differ)."""
    if getattr(index, "batch_independent", False):
        return [rows]
    return [rows[i:i + 1] for i in range(len(rows))]


def _fallback_of(history: Any) -> str | None:
    """`"popular"` when no watch of a model-id history is a known video (id > 0), else None."""
    return None if (np.asarray(history) > 0).any() else FALLBACK_POPULAR


def _merge(parts: list) -> np.ndarray:
    if not parts:
        return np.zeros(0, np.int64)
    ids = np.concatenate([np.asarray(p, np.int64).reshape(-1) for p in parts])
    return np.unique(ids[ids > 0])
