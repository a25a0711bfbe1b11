"""`ExactIndex`: brute-force maximum-inner-product search over the output video embeddings."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_yt.serving import _embeddings, _index_file, _query

FORMAT_VERSION = 2  # 2: a checksum over every stored array and attribute
# Batches with fewer scores than this are ranked in numpy: a backend call costs ~0.3 ms, about
# what numpy needs for one user over 100k items; larger ones gain from the backend's matrix
# product on a transposed copy of W and its multi-threaded top-k (4.5x at 1000 x 1M scores).
_NUMPY_MAX_SCORES = 1 << 17


class ExactIndex:
    """Exact top-k of `u · W_j + b_j` by batched matrix products (`keras.ops`).

    This is the reference for `CandidateIndex` and the right choice for small corpora. Scores of a
    batch of user vectors are computed as one `(batch, N)` matrix product and the top k per row
    are selected with `keras.ops.top_k` on the Keras backend (multi-threaded on the TensorFlow
    backend: about 4.5x faster at N = 1M than numpy's single-threaded `argpartition`); batches of
    fewer than about 130,000 scores are ranked in numpy, which avoids the backend's per-call
    overhead. Both rank equal scores by row order. The first backend query keeps a transposed
    copy of W on the backend (as large as W).

    Ids: `from_embeddings(W, b, ids=None)` indexes every row and uses row numbers as ids;
    `from_model(model)` drops row 0 (the padding class, id 0, never recommended) and uses the row
    numbers `1 .. N-1` of the remaining rows as ids.

    Args:
        W: output video embeddings `(N, d)`.
        b: output biases `(N,)` or None (zeros).
        ids: int64 ids `(N,)` (unique, >= 0) or None for row numbers.
        batch_size: user vectors scored per matrix product; None chooses one that keeps the
            `(batch, N)` float32 score matrix near 512 MB (the backend briefly holds two or
            three such matrices).

    Example:
    >>> import numpy as np
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype="float32")
    >>> index = ExactIndex.from_embeddings(W, b=[0.0, 0.5, -0.1])
    >>> ids, scores = index.query([[1.0, 0.2]], k=2)
    >>> ids.tolist(), [round(float(s), 3) for s in scores[0]]
    ([[2, 0]], [1.1, 1.0])
    >>> index.query([[1.0, 0.2]], k=2, exclude=[[2]])[0].tolist()
    [[0, 1]]
    """

    def __init__(self, W: Any, b: Any = None, ids: Any = None, batch_size: int | None = None):
        self.W, self.b, self.ids = _embeddings.check_embeddings(W, b, ids)
        self.batch_size = _query.check_batch_size(batch_size)
        self._row_of = np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids[self._row_of]
        self._tensors = None  # (W, b, W.T, b on the Keras backend), made on the first query

    @classmethod
    def from_embeddings(
        cls, W: Any, b: Any = None, ids: Any = None, batch_size: int | None = None
    ) -> ExactIndex:
        """Index every row of `W` (ids: `ids`, or row numbers when None).

        Args:
            W: output video embeddings `(N, d)`.
            b: output biases `(N,)` or None.
            ids: ids of the rows, or None for `0 .. N-1`.
            batch_size: see the class docstring.

        Returns:
            An `ExactIndex`.

        Example:
        >>> import numpy as np
        >>> ExactIndex.from_embeddings(np.eye(3)).query(np.eye(3)[:1], k=1)[0].tolist()
        [[0]]
        """
        return cls(W, b, ids, batch_size=batch_size)

    @classmethod
    def from_model(cls, model: Any, batch_size: int | None = None) -> ExactIndex:
        """Index a model's output embeddings, without the padding row 0.

        Args:
            model: anything with `get_output_embeddings() -> (W, b)`, e.g. `SampledSoftmax` or
                `CandidateGenerator`.
            batch_size: see the class docstring.

        Returns:
            An `ExactIndex` whose ids are `1 .. N-1`.

        Example:
        >>> import numpy as np
        >>> class Head:
        ...     def get_output_embeddings(self):
        ...         return np.eye(3, dtype="float32") * 5, np.zeros(3, "float32")
        >>> ExactIndex.from_model(Head()).query([[1.0, 0.0, 0.0]], k=1)[0].tolist()
        [[1]]
        """
        W, b, ids = _embeddings.model_embeddings(model)
        return cls(W, b, ids, batch_size=batch_size)

    @property
    def dim(self) -> int:
        """Width d of the user vectors and output embeddings."""
        return int(self.W.shape[1])

    def __len__(self) -> int:
        return int(self.W.shape[0])

    @property
    def fingerprint(self) -> str:
        """sha256 of the float32 bytes of W and b (see `CandidateIndex.load`)."""
        return _embeddings.fingerprint(self.W, self.b)

    def _rows_for(self, ids: np.ndarray) -> np.ndarray:
        """Rows of the given ids; ids not in the index are dropped."""
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.minimum(pos, len(self._sorted_ids) - 1)
        found = self._sorted_ids[pos] == ids
        return self._row_of[pos[found]]

    def query(
        self,
        user_vectors: Any,
        k: int = 100,
        exclude: Any = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k items by score `u · W_j + b_j`.

        Args:
            user_vectors: `(n, d)` (or one `(d,)` vector).
            k: results per user vector.
            exclude: None, or one list of ids per user vector (ragged lists or a padded 2-D
                array; -1 is padding and ignored, 0 is an id like any other). Excluded items
                are skipped and k results are still returned.
            batch_size: overrides the index's `batch_size` for this call.

        Returns:
            `(ids, scores)`: int64 `(n, k)` and float32 `(n, k)`, sorted by descending score. If
            fewer than k items are eligible, the row is padded with id -1 and score `-inf`.

        Example:
        >>> import numpy as np
        >>> index = ExactIndex.from_embeddings(np.eye(2), ids=[7, 9])
        >>> index.query([[0.0, 1.0]], k=3)[0].tolist()
        [[9, 7, -1]]
        """
        u, k, excl, batch_size = _query.check_query(user_vectors, k, exclude, self.dim,
                                                     batch_size)
        batch_size = batch_size or self.batch_size or max(1, min(4096, (1 << 27) // len(self)))
        n = u.shape[0]
        out_ids = np.empty((n, k), np.int64)
        out_scores = np.empty((n, k), np.float32)
        for start, stop in _query.batches(n, batch_size):
            rows = None if excl is None else [self._rows_for(e) for e in excl[start:stop]]
            if (stop - start) * len(self) < _NUMPY_MAX_SCORES:
                pos, vals = self._top_k_numpy(u[start:stop], k, rows)
            else:
                pos, vals = self._top_k_backend(u[start:stop], k, rows)
            out_ids[start:stop] = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], _query.PAD_ID)
            out_scores[start:stop] = vals
        return out_ids, out_scores

    def _top_k_numpy(self, u: np.ndarray, k: int, rows: list | None):
        scores = u @ self.W.T + self.b
        for i, r in enumerate(rows or ()):
            scores[i, r] = -np.inf
        return _query.top_k_sorted(scores, k)

    def _top_k_backend(self, u: np.ndarray, k: int, rows: list | None):
        from keras import ops  # here, not at the top: small queries never load the backend

        cached = self._tensors
        if cached is None or cached[0] is not self.W or cached[1] is not self.b:
            # W transposed once: `u @ W.T` would copy W on every call
            W_t = ops.convert_to_tensor(np.ascontiguousarray(self.W.T))
            self._tensors = (self.W, self.b, W_t, ops.convert_to_tensor(self.b))
        W_t, b = self._tensors[2:]
        scores = ops.matmul(ops.convert_to_tensor(u), W_t) + b
        counts = [len(r) for r in rows] if rows is not None else [0]
        if sum(counts):
            users = np.repeat(np.arange(len(rows)), counts)
            pairs = np.stack([users, np.concatenate(rows)], axis=1)
            scores = ops.scatter_update(scores, pairs, np.full(len(pairs), -np.inf, np.float32))
        kk = min(k, len(self))
        vals, pos = (ops.convert_to_numpy(x) for x in ops.top_k(scores, kk))
        pos = np.where(np.isneginf(vals), _query.PAD_ID, pos).astype(np.int64)
        if kk < k:
            pos = np.pad(pos, ((0, 0), (0, k - kk)), constant_values=_query.PAD_ID)
            vals = np.pad(vals, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        return pos, vals

    def save(self, path: str | os.PathLike) -> None:
        """Writes W, b, ids and the fingerprint to an HDF5 file (atomically, no pickle).

        Args:
            path: destination file; replaced only once the new file is complete.

        Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "exact.h5")
        >>> ExactIndex.from_embeddings(np.eye(2)).save(path)
        >>> len(ExactIndex.load(path))
        2
        """
        with _index_file.atomic_h5(path) as f:
            f.attrs["kind"] = "keras_yt.ExactIndex"
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["fingerprint"] = self.fingerprint
            f.create_dataset("W", data=self.W)
            f.create_dataset("b", data=self.b)
            f.create_dataset("ids", data=self.ids)

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None) -> ExactIndex:
        """Reads an index written by `save`, optionally checking it against `model`.

        Args:
            path: file written by `ExactIndex.save`.
            model: if given, its output embeddings (without row 0) must match the file's
                fingerprint.

        Returns:
            The `ExactIndex`.

        Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "exact.h5")
        >>> ExactIndex.from_embeddings(np.eye(2), ids=[3, 4]).save(path)
        >>> ExactIndex.load(path).ids.tolist()
        [3, 4]
        """
        with _index_file.read_index_file(path, "keras_yt.ExactIndex", FORMAT_VERSION) as opened:
            f = opened.f
            W, b, ids = _index_file.read_embeddings(f, path)
            stored = str(f.attrs["fingerprint"])
            _index_file.check_fingerprint(stored, _embeddings.fingerprint(W, b), path,
                                          "file contents")
        index = cls(W, b, ids)
        if model is not None:
            mW, mb, _ = _embeddings.model_embeddings(model)
            _index_file.check_fingerprint(
                stored, _embeddings.fingerprint(mW, mb), path, "model", rebuild="ExactIndex"
            )
        return index

