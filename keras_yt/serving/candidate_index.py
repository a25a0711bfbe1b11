"""`CandidateIndex`: approximate maximum-inner-product search with PyNNDescent."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np

from keras_yt.serving import _embeddings, _index_file, _query, _search_state
from keras_yt.serving._index_file import IndexFileError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 2: checksum over every stored array; min_search_k. 3: the search's item
# matrix (`_raw_data`) and query norm stored, memory-mapped on load
_READS = (2, 3)
_KIND = "keras_yt.CandidateIndex"
_METRIC = _search_state.METRIC
# State keys that are not written: only needed to update() the graph. `_raw_data` (the reduced
# items in the graph's vertex order) is written since version 3, so that a load maps it instead
# of rebuilding it (a copy as large as W).
_NOT_STORED = ("_neighbor_graph", "_rp_forest")


class CandidateIndex:
    """Approximate top-k of `u · W_j + b_j` over the output video embeddings (graph search).

    PyNNDescent builds the search graph and tree; keras_yt's own numba kernels search them
    (`_graph_search`: PyNNDescent's search, compiled once per installation and cached, so a
    loaded index answers without compiling anything or importing pynndescent; batches run on
    every core).

    **Reduction.** The score of item j for user vector u is `s_j(u) = u · W_j + b_j`. The index
    stores the reduced items `x_j = [W_j, b_j + c]` (dimension d + 1) and searches with the
    reduced query `q = [u, 1]`, so that `q · x_j = s_j(u) + c`: the same shift c for every item,
    which leaves the ranking unchanged (the reduction is exact). PyNNDescent's `inner_product`
    metric (distance `1 / (q · x)`, infinite when `q · x <= 0`) searches for the largest
    `q · x_j`. The constant `c = -min_j b_j` makes the bias coordinate non-negative, so items
    with a high bias are never "infinitely far" because of a negative bias. The returned scores
    are recomputed exactly as `u · W_j + b_j` (no shift) and the results re-sorted by them.

    **Query scale.** Multiplying q by any `α > 0` multiplies every `q · x_j` by α and keeps the
    ranking, so each query is rescaled to the largest item norm `max_j |x_j|` before the search.
    This matters: the search stops when candidates get worse than a bound that mixes query-item
    and item-item distances (`epsilon`), which is only meaningful on one scale. Measured on a
    model trained on MovieLens-100K (user vectors ~10× longer than the output embeddings),
    recall@100 was 0.83 unscaled and 1.00 scaled, and queries were 2.5× faster.

    Why not `metric="dot"` on W: it L2-normalises items and queries (cosine similarity), which
    ignores both the item norms and the biases; on softmax weights recall@10 is a few percent.
    The exact reductions to Euclidean / cosine search (append `sqrt(M² - |x_j|²)`) are exact too
    but, with skewed norms, make graph search much less accurate (measured in
    `docs/serving-defaults.md`).

    **Defaults** (`n_neighbors=30`, `diversify_prob=0.3`, `pruning_degree_multiplier=2.0`,
    `epsilon=0.05`) were chosen by measurement on clustered embeddings with lognormal norms and
    biases and on trained ones (`docs/serving-defaults.md`, `docs/performance.md`): at 1M x 256
    they give recall@100 0.97 against exact search; PyNNDescent's own `diversify_prob=1.0`
    collapses the inner-product search graph to about one edge per node. Raise `epsilon` for
    recall, lower it for speed.

    **Small k.** The graph search always asks for at least `min_search_k` (50) items and keeps
    the best k: searching for 1 or 10 alone stops too early (recall@1 0.57, @10 0.87 at 1M x 256
    against 0.98 and 0.97 with the floor; `docs/serving-defaults.md`).

    **Exclusions.** With `exclude`, the search for user i asks for `max(k, min_search_k) +
    len(exclude[i])` neighbours (its own exclusions: a user's answer does not depend on the
    other users of a batch), drops the excluded ids and returns exactly k (padded with id -1 /
    score `-inf` only when the corpus has fewer than k eligible items). A user for whom that
    is the whole corpus is scanned exhaustively.

    **Threads.** A search only reads the index: calls of fewer than 8 user vectors run in the
    calling thread without the GIL, so concurrent requests search at once; larger calls spread
    their user vectors over every numba thread (one such call at a time). A user's answer does
    not depend on the other users of the call, nor on concurrent calls.

    **Small corpora** (at most `exhaustive_below` items, 20,000 by default, or `n_neighbors`) are
    searched exhaustively: no graph is built, the answer is exact, and a matrix product over 20k
    rows is as quick as a graph search. It also covers every model trained on the full softmax
    (`CandidateGenerator(num_sampled="auto")` does that up to 10,000 videos): the full softmax
    pushes almost every video below zero for a given user (94 % of the scores on MovieLens-100K),
    which the inner-product graph search handles badly (recall@100 0.61 against exact search on
    the `movielens_candidate` preset's embeddings; models trained with sampled negatives keep
    ≥ 0.95). Set `exhaustive_below=0` to force the graph.

    Args:
        W: output video embeddings `(N, d)`.
        b: output biases `(N,)` or None (zeros).
        ids: int64 ids `(N,)` (unique, >= 0) or None for row numbers.
        n_neighbors: neighbours per item in the k-NN graph (more: better recall, slower build).
        diversify_prob: PyNNDescent's edge-pruning probability when building the search graph.
        pruning_degree_multiplier: search-graph degree cap, as a multiple of `n_neighbors`.
        epsilon: default search breadth (larger: better recall, fewer queries per second).
        n_jobs: threads for building the index (None: all numba threads).
        random_state: seed for the build (None: not reproducible).
        verbose: print PyNNDescent's build progress.
        batch_size: user vectors per search call in `query`.
        exhaustive_below: corpora of at most this many items are searched exhaustively (exact).
        min_search_k: the graph search looks for at least this many items and keeps the best k
            (a search for k = 1 or 10 alone misses too many: recall@10 0.90 against 0.99 with 50
            on 20k x 32 embeddings with lognormal norms).

    Example:
    >>> import numpy as np
    >>> from keras_yt.serving._synthetic import clustered_corpus, user_vectors
    >>> W, b, centers = clustered_corpus(2000, 16, seed=0)
    >>> index = CandidateIndex.from_embeddings(W, b, random_state=0)
    >>> u = user_vectors(3, centers)
    >>> ids, scores = index.query(u, k=5, exclude=[[], [1, 2], None])
    >>> ids.shape, scores.dtype.name
    ((3, 5), 'float32')
    >>> bool(np.allclose(scores[0], W[ids[0]] @ u[0] + b[ids[0]], atol=1e-5))
    True
    """

    def __init__(
        self,
        W: Any,
        b: Any = None,
        ids: Any = None,
        *,
        n_neighbors: int = 30,
        diversify_prob: float = 0.3,
        pruning_degree_multiplier: float = 2.0,
        epsilon: float = 0.05,
        n_jobs: int | None = None,
        random_state: int | None = None,
        verbose: bool = False,
        batch_size: int = 1024,
        min_search_k: int = 50,
        exhaustive_below: int = 20_000,
        _state: dict | None = None,
        _checked: bool = False,
        _query_norm: float | None = None,
    ):
        self.W, self.b, self.ids = (W, b, ids) if _checked else \
            _embeddings.check_embeddings(W, b, ids)
        _check_knobs(n_neighbors, diversify_prob, pruning_degree_multiplier, epsilon, n_jobs,
                     random_state, batch_size, min_search_k, exhaustive_below)
        self.n_neighbors = int(n_neighbors)
        self.diversify_prob = float(diversify_prob)
        self.pruning_degree_multiplier = float(pruning_degree_multiplier)
        self.epsilon = float(epsilon)
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = bool(verbose)
        self.batch_size = int(batch_size)
        self.min_search_k = int(min_search_k)
        self.exhaustive_below = int(exhaustive_below)
        self.bias_shift = float(-self.b.min())
        self._query_norm = _query_norm or self._largest_item_norm()
        self._state = None  # PyNNDescent's search state (graph, trees, reduced items): saved
        self._search = None  # its arrays, as the search kernels read them
        self.build_seconds = 0.0
        if len(self) > max(self.n_neighbors, self.exhaustive_below):
            t = time.perf_counter()
            from keras_yt.serving._graph_search import GraphSearch  # imports numba

            self._state = self._restore(_state) if _state is not None else self._build()
            self._search = GraphSearch(self._state, self.W, self.b, self.ids)
            self.build_seconds = time.perf_counter() - t

    # construction ---------------------------------------------------------------------------

    @classmethod
    def from_embeddings(cls, W: Any, b: Any = None, ids: Any = None, **kwargs: Any):
        """Builds an index over every row of `W` (ids: `ids`, or row numbers when None).

        Args:
            W: output video embeddings `(N, d)`.
            b: output biases `(N,)` or None.
            ids: ids of the rows, or None for `0 .. N-1`.
            **kwargs: the knobs of the class (`n_neighbors`, `epsilon`, ...).

        Returns:
            A `CandidateIndex`.

        Example:
        >>> import numpy as np
        >>> W = np.random.default_rng(0).normal(size=(500, 8)).astype("float32")
        >>> index = CandidateIndex.from_embeddings(W, random_state=0)
        >>> index.query(W[:1] * 10, k=3)[0].shape
        (1, 3)
        """
        return cls(W, b, ids, **kwargs)

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any):
        """Builds an index over a model's output embeddings, without the padding row 0.

        Args:
            model: anything with `get_output_embeddings() -> (W, b)` (`SampledSoftmax`,
                `CandidateGenerator`).
            **kwargs: the knobs of the class.

        Returns:
            A `CandidateIndex` whose ids are `1 .. N-1`.

        Example:
        >>> import numpy as np
        >>> class Head:
        ...     def get_output_embeddings(self):
        ...         return np.eye(4, dtype="float32"), np.zeros(4, "float32")
        >>> CandidateIndex.from_model(Head()).query([[0, 0, 1.0, 0]], k=1)[0].tolist()
        [[2]]
        """
        W, b, ids = _embeddings.model_embeddings(model)
        return cls(W, b, ids, **kwargs)

    def _largest_item_norm(self) -> float:
        """`max_j |x_j|` over the reduced items, a block of rows at a time."""
        shift, largest = np.float32(self.bias_shift), 0.0
        for start in range(0, len(self.W), 1 << 16):
            W = self.W[start:start + (1 << 16)]
            squares = np.einsum("ij,ij->i", W, W) + (self.b[start:start + (1 << 16)] + shift) ** 2
            largest = max(largest, float(np.sqrt(squares.max())))
        return largest or 1.0

    def _reduced_items(self) -> np.ndarray:
        return np.hstack([self.W, (self.b + np.float32(self.bias_shift))[:, None]]).astype(
            np.float32
        )

    def _build(self) -> dict:
        """Builds the k-NN graph, then the search graph and tree; returns the search state."""
        from keras_yt.serving._pynndescent import import_pynndescent

        pynndescent = import_pynndescent()
        nnd = pynndescent.NNDescent(
            self._reduced_items(),
            metric=_METRIC,
            n_neighbors=self.n_neighbors,
            diversify_prob=self.diversify_prob,
            pruning_degree_multiplier=self.pruning_degree_multiplier,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            verbose=self.verbose,
            compressed=True,
        )
        if hasattr(nnd, "_init_search_graph"):
            # The search graph and tree alone: `compress_index()` would also compile
            # PyNNDescent's own search (12-26 s at 1M), which keras_yt does not use.
            nnd._init_search_graph()
            from pynndescent.rp_trees import denumbaify_tree

            state = {key: value for key, value in vars(nnd).items()
                     if key not in _NOT_STORED and not callable(value)}
            state["_search_forest"] = tuple(denumbaify_tree(t) for t in nnd._search_forest)
            return state
        nnd.compress_index()  # other PyNNDescent versions: prepare, drop what update() needs
        return nnd.__getstate__()

    def _restore(self, state: dict) -> dict:
        state = dict(state)
        if state.get("_raw_data") is None:  # version 2 files: rebuilt from W and b
            state["_raw_data"] = np.ascontiguousarray(
                self._reduced_items()[state["_vertex_order"]])
        return state

    # queries --------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Width d of the user vectors and output embeddings."""
        return int(self.W.shape[1])

    def __len__(self) -> int:
        return int(self.W.shape[0])

    @property
    def fingerprint(self) -> str:
        """sha256 of the float32 bytes of W and b, as checked by `load(path, model)`."""
        return _embeddings.fingerprint(self.W, self.b)

    @property
    def exhaustive(self) -> bool:
        """Whether queries scan every item (a small corpus: no search graph was built)."""
        return self._search is None

    @property
    def batch_independent(self) -> bool:
        """Whether each user's answer in a batch query is exactly its answer alone: true for
        the graph search (one walk per user, exact float64 re-scoring), false for an exhaustive
        scan (a matrix product sums a batch in another order than one row)."""
        return self._search is not None

    @property
    def knobs(self) -> dict:
        """The build and search settings, as stored by `save`."""
        return {
            "n_neighbors": self.n_neighbors,
            "diversify_prob": self.diversify_prob,
            "pruning_degree_multiplier": self.pruning_degree_multiplier,
            "epsilon": self.epsilon,
            "n_jobs": self.n_jobs,
            "random_state": self.random_state,
            "batch_size": self.batch_size,
            "min_search_k": self.min_search_k,
            "exhaustive_below": self.exhaustive_below,
        }

    def query(
        self,
        user_vectors: Any,
        k: int = 100,
        exclude: Any = None,
        epsilon: float | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k items by score `u · W_j + b_j`.

        Args:
            user_vectors: `(n, d)` (or one `(d,)` vector).
            k: results per user vector.
            exclude: None, or one list of ids per user vector (ragged lists or a padded 2-D
                array; -1 is padding and ignored, 0 is an id like any other). Excluded items
                are skipped and k results are still returned.
            epsilon: search breadth for this call (default: the index's `epsilon`).
            batch_size: user vectors per search call (default: the index's `batch_size`).

        Returns:
            `(ids, scores)`: int64 `(n, k)` and float32 `(n, k)` sorted by descending exact
            score. Rows are padded with id -1 and score `-inf` only if fewer than k items are
            eligible (or, rarely, the graph search found fewer).

        Example:
        >>> import numpy as np
        >>> index = CandidateIndex.from_embeddings(np.eye(3), b=[0.0, 0.0, 0.5], ids=[5, 6, 7])
        >>> ids, scores = index.query([[1.0, 0.0, 0.0]], k=4, exclude=[[5]])
        >>> ids.tolist(), scores.tolist()
        ([[7, 6, -1, -1]], [[0.5, 0.0, -inf, -inf]])
        """
        u, k, excl, batch_size = _query.check_query(user_vectors, k, exclude, self.dim,
                                                     batch_size)
        if epsilon is None:
            epsilon = self.epsilon
        _check_float("epsilon", epsilon, 0.0, None)
        batch_size = batch_size or self.batch_size
        extra = max((len(e) for e in excl), default=0) if excl is not None else 0
        # Small k searches too narrowly (recall@1 0.55, @10 0.90 at 20k x 32 with skewed norms):
        # the graph search always looks for at least `min_search_k` items, then keeps k. Each
        # user's walk also keeps as many more as it has exclusions (its own, not the batch's
        # widest: a user's answer is the same alone or in any batch).
        k_search = max(k, self.min_search_k)
        exhaustive = self._search is None or k_search + extra >= len(self)
        n = u.shape[0]
        if exhaustive and self._search is not None and n > 1:
            # some user excludes so much that the walk would keep every item: those users are
            # scanned exhaustively, the others walk the graph, each as it would alone
            rows = [self.query(u[i], k, [excl[i]], epsilon, batch_size) for i in range(n)]
            return np.vstack([r[0] for r in rows]), np.vstack([r[1] for r in rows])
        out_ids = np.empty((n, k), np.int64)
        out_scores = np.empty((n, k), np.float32)
        for start, stop in _query.batches(n, batch_size):
            ub = u[start:stop]
            if not exhaustive:  # the walk, exact re-scoring, exclusions and top-k, compiled
                q = np.hstack([ub, np.ones((stop - start, 1), np.float32)])
                q *= np.float32(self._query_norm) / np.linalg.norm(q, axis=1, keepdims=True)
                out_ids[start:stop], out_scores[start:stop] = self._search.search(
                    q, ub, k_search, k, float(epsilon),
                    None if excl is None else excl[start:stop])
                continue
            scores = ub @ self.W.T + self.b
            cand_ids = np.broadcast_to(self.ids, scores.shape)
            mask = _query.exclusion_mask(cand_ids, excl, start)
            if mask is not None:
                scores = np.where(mask, -np.inf, scores)
            pos, vals = _query.top_k_sorted(scores.astype(np.float32), k)
            picked = np.take_along_axis(cand_ids, np.maximum(pos, 0), axis=1)
            out_ids[start:stop] = np.where(pos >= 0, picked, _query.PAD_ID)
            out_scores[start:stop] = vals
        return out_ids, out_scores

    # persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to an HDF5 file: no pickle, atomic replace.

        The file holds `W`, `b`, `ids`, the fingerprint, the knobs, the format version, the
        PyNNDescent version and the search graph / search tree arrays of the PyNNDescent index
        (group `nndescent`), with the reduced items in the graph's vertex order (`_raw_data`,
        memory-mapped on load). The file is first written next to `path` and then moved over it with
        `os.replace`, so an interrupted save leaves any previous file intact.

        Args:
            path: destination file.

        Example:
        >>> import numpy as np, os, tempfile
        >>> W = np.random.default_rng(0).normal(size=(300, 8)).astype("float32")
        >>> index = CandidateIndex.from_embeddings(W, random_state=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "index.h5")
        >>> index.save(path)
        >>> restored = CandidateIndex.load(path)
        >>> bool((restored.query(W[:5], k=10)[0] == index.query(W[:5], k=10)[0]).all())
        True
        """
        from keras_yt.serving import _h5state

        state = self._state
        if state is not None:
            expected = self._reduced_items()[state["_vertex_order"]]
            if not np.array_equal(state["_raw_data"], expected):
                raise RuntimeError("PyNNDescent's data is not the reduced items in vertex order")
        with _index_file.atomic_h5(path) as f:
            f.attrs["kind"] = _KIND
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["fingerprint"] = self.fingerprint
            f.attrs["knobs"] = json.dumps(self.knobs)
            f.attrs["metric"] = _METRIC
            f.attrs["bias_shift"] = self.bias_shift
            f.attrs["query_norm"] = self._query_norm
            f.create_dataset("W", data=self.W)
            f.create_dataset("b", data=self.b)
            f.create_dataset("ids", data=self.ids)
            if state is not None:
                group = f.create_group("nndescent")
                group.attrs["pynndescent_version"] = _pynndescent_version()
                _h5state.encode(group, state, skip=_NOT_STORED)

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None, verbose: bool = False,
             fingerprint: str | None = None):
        """Reads an index written by `save` (HDF5 only, never unpickles).

        The PyNNDescent search graph is restored from its arrays. If the file was written with a
        different PyNNDescent version, or restoring fails, the index is rebuilt from the stored
        embeddings with the stored knobs and a warning is logged.

        W and the search's item matrix are memory-mapped (files of format 3): a load reads the
        search graph and trees, and the search reads the rows it visits. The file's checksum
        and every stored value are checked on the first load of each state of the file; later
        loads of the unchanged file check the structure only (see `read_index_file`).

        Args:
            path: file written by `CandidateIndex.save`.
            model: if given, its output embeddings (without row 0) must have the fingerprint
                stored in the file; otherwise a ValueError says to rebuild the index.
            verbose: print PyNNDescent's progress if the index has to be rebuilt.
            fingerprint: the fingerprint the file must store (e.g. the one a run folder keeps
                for its model), checked without hashing any embeddings; like `model`.

        Returns:
            The `CandidateIndex`; `rebuilt` is True if the graph had to be rebuilt.

        Example:
        >>> import numpy as np, os, tempfile
        >>> W = np.random.default_rng(0).normal(size=(300, 8)).astype("float32")
        >>> path = os.path.join(tempfile.mkdtemp(), "index.h5")
        >>> CandidateIndex.from_embeddings(W, random_state=0).save(path)
        >>> CandidateIndex.load(path).rebuilt
        False
        """
        from keras_yt.serving import _h5state

        shown = os.fspath(path)
        with _index_file.read_index_file(path, _KIND, _READS) as opened:
            f, trusted = opened.f, opened.trusted
            stored = str(f.attrs["fingerprint"])
            W, b, ids = _index_file.read_embeddings(f, path, trusted=trusted)
            if not trusted:
                actual = _embeddings.fingerprint(W, b)
                _index_file.check_fingerprint(stored, actual, path, "W and b")
            if fingerprint is not None:
                _index_file.check_fingerprint(stored, fingerprint, path, "model")
            if model is not None:
                mW, mb, _ = _embeddings.model_embeddings(model)
                actual = _embeddings.fingerprint(mW, mb)
                _index_file.check_fingerprint(stored, actual, path, "model")
            knobs = _read_knobs(f, shown)
            query_norm = f.attrs.get("query_norm")
            query_norm = float(query_norm) if trusted and query_norm is not None else None
            state, reason = None, None
            if "nndescent" in f:
                group = f["nndescent"]
                version = str(group.attrs.get("pynndescent_version", "?"))
                if version != _pynndescent_version():
                    reason = f"saved with pynndescent {version}, running {_pynndescent_version()}"
                else:
                    state = _h5state.decode(group, mapped=("_raw_data",))
                    _search_state.check_state(state, len(W), W.shape[1] + 1, shown)
                    if state.get("_raw_data") is not None and not trusted:
                        _search_state.check_raw_data(state, W, b, shown)
            elif len(W) > max(knobs["n_neighbors"], knobs.get("exhaustive_below", 0)):
                raise IndexFileError(
                    f"{shown!r} has no search graph (group 'nndescent') for its {len(W)} items"
                )
        knobs["verbose"] = verbose
        rebuilt = False
        if state is not None:
            try:
                index = cls(W, b, ids, **knobs, _state=state, _checked=True,
                            _query_norm=query_norm)
            except Exception as err:  # private PyNNDescent attributes changed: rebuild
                reason = f"restoring the search graph failed ({type(err).__name__}: {err})"
                state = None
        if state is None:
            index = cls(W, b, ids, **knobs, _checked=True)
            rebuilt = index._search is not None
            if rebuilt:
                logger.warning(
                    "CandidateIndex.load(%r): %s; rebuilt the index in %.1f s",
                    os.fspath(path), reason, index.build_seconds,
                )
        index.rebuilt = rebuilt
        return index

    rebuilt = False


def _pynndescent_version() -> str:
    from importlib.metadata import version

    return version("pynndescent")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_float(name: str, value: Any, low: float, high: float | None) -> None:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and np.isfinite(value) and value >= low and (high is None or value <= high)
    if not ok:
        expected = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a number {expected}, got {value!r}")


_KNOB_NAMES = (
    "n_neighbors", "diversify_prob", "pruning_degree_multiplier", "epsilon", "n_jobs",
    "random_state", "batch_size", "min_search_k", "exhaustive_below",
)


def _read_knobs(f: Any, shown: str) -> dict:
    """The stored knobs: a JSON dict of known names, each value checked like the constructor's."""
    try:
        knobs = json.loads(str(f.attrs["knobs"]))
    except (KeyError, ValueError) as err:
        raise IndexFileError(f"{shown!r} has no readable 'knobs' attribute: {err}") from err
    if not isinstance(knobs, dict) or not set(knobs) <= set(_KNOB_NAMES):
        raise IndexFileError(
            f"{shown!r}: 'knobs' must be a dict with keys among {list(_KNOB_NAMES)}, got {knobs!r}"
        )
    try:
        _check_knobs(**knobs)
    except ValueError as err:
        raise IndexFileError(f"{shown!r} holds invalid knobs: {err}") from err
    return knobs


def _check_knobs(
    n_neighbors=30, diversify_prob=0.3, pruning_degree_multiplier=2.0, epsilon=0.05, n_jobs=None,
    random_state=None, batch_size=1024, min_search_k=50, exhaustive_below=0,
) -> None:
    _check_int("n_neighbors", n_neighbors, 2)
    _check_float("diversify_prob", diversify_prob, 0.0, 1.0)
    _check_float("pruning_degree_multiplier", pruning_degree_multiplier, 1.0, None)
    _check_float("epsilon", epsilon, 0.0, None)
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1
    ):
        raise ValueError(f"n_jobs must be None, -1 or an integer >= 1, got {n_jobs!r}")
    if random_state is not None:
        _check_int("random_state", random_state, 0)
    _check_int("batch_size", batch_size, 1)
    _check_int("min_search_k", min_search_k, 1)
    _check_int("exhaustive_below", exhaustive_below, 0)
