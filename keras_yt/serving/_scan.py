"""`ScanIndex`: exact top-k over output embeddings left on disk, read a block at a time (private).

For one-off queries on a large run (`keras-yt recommend`): loading a PyNNDescent index costs
seconds (its arrays, numba's search), and `ExactIndex` keeps W in memory, while one exact pass
over a memory-mapped W needs neither: the rows are read from the file (the page cache, once the
file was read) into one reused block buffer, so the process holds a block, not W.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_yt.serving import _query

BLOCK_ROWS = 1 << 15
"""Rows of W scored per block (32 MB at d = 256)."""


class ScanIndex:
    """Exact top-k of `u · W_j + b_j`, W read from its file a block of rows at a time.

    Ties rank by row, as in `ExactIndex`; the answers are `ExactIndex`'s. Thread-safe (each
    query reads into a buffer of its own).

    Args:
        W: output embeddings `(N, d)` float32: an `np.memmap` of the file holding them (read with
            positioned reads, never mapped whole), or any array (sliced).
        b: biases `(N,)`.
        ids: increasing int64 ids `(N,)` of the rows.
        block_rows: rows per block.

    Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "W.npy")
    >>> np.save(path, np.eye(3, dtype="float32"))
    >>> index = ScanIndex(np.load(path, mmap_mode="r"), np.zeros(3, "float32"), np.arange(1, 4))
    >>> index.query([[0.0, 1.0, 0.5]], k=2, exclude=[[2]])[0].tolist()
    [[3, 1]]
    """

    def __init__(self, W: Any, b: Any, ids: Any, block_rows: int = BLOCK_ROWS):
        if W.ndim != 2 or W.dtype != np.float32:
            raise ValueError(f"W must be a float32 array (N, d), got {W.dtype} {W.shape}")
        self.W = W
        self.b = np.ascontiguousarray(b, dtype=np.float32)
        self.ids = np.asarray(ids, dtype=np.int64)
        if self.b.shape != (len(W),) or self.ids.shape != (len(W),):
            raise ValueError(f"b and ids must have shape ({len(W)},), got {self.b.shape} and "
                             f"{self.ids.shape}")
        if len(self.ids) > 1 and (np.diff(self.ids) <= 0).any():
            raise ValueError("ids must be increasing")
        self.block_rows = int(block_rows)
        self._file = _file_region(W)

    @property
    def dim(self) -> int:
        return int(self.W.shape[1])

    def __len__(self) -> int:
        return int(self.W.shape[0])

    def _blocks(self):
        """`(start, stop, rows of W)` for consecutive blocks, read into one reused buffer."""
        n, d = self.W.shape
        if self._file is None:
            for start in range(0, n, self.block_rows):
                stop = min(n, start + self.block_rows)
                yield start, stop, np.asarray(self.W[start:stop])
            return
        path, offset = self._file
        buffer = np.empty((min(n, self.block_rows), d), np.float32)
        row_bytes = d * 4
        fd = os.open(path, os.O_RDONLY)
        try:
            for start in range(0, n, self.block_rows):
                stop = min(n, start + self.block_rows)
                view = buffer[: stop - start]
                target = memoryview(view.reshape(-1).view(np.uint8))
                done, want = 0, (stop - start) * row_bytes
                while done < want:
                    got = os.preadv(fd, [target[done:]], offset + start * row_bytes + done)
                    if got <= 0:
                        raise OSError(f"{path!r} ended before the rows of W: truncated")
                    done += got
                yield start, stop, view
        finally:
            os.close(fd)

    def query(self, user_vectors: Any, k: int = 100, exclude: Any = None):
        """Exact top-k items by score (see `ExactIndex.query`).

        Returns:
            `(ids, scores)`: int64 `(n, k)` and float32 `(n, k)`, padded with id -1 and score
            `-inf` when fewer than k items are eligible.
        """
        u, k, excl, _ = _query.check_query(user_vectors, k, exclude, self.dim)
        rows = None
        if excl is not None:
            rows = []
            for e in excl:
                pos = np.searchsorted(self.ids, e)
                pos = np.minimum(pos, len(self.ids) - 1)
                rows.append(np.sort(pos[self.ids[pos] == e]))
        kept_pos, kept_scores = [], []
        for start, stop, block in self._blocks():
            scores = u @ block.T + self.b[start:stop]
            for i, r in enumerate(rows or ()):
                inside = r[(r >= start) & (r < stop)]
                scores[i, inside - start] = -np.inf
            pos, vals = _query.top_k_sorted(scores, k)
            kept_pos.append(np.where(pos >= 0, pos + start, _query.PAD_ID))
            kept_scores.append(vals)
        pos_all, scores_all = np.concatenate(kept_pos, 1), np.concatenate(kept_scores, 1)
        # Candidates of earlier blocks come first: equal scores keep ranking by row.
        pick, vals = _query.top_k_sorted(np.where(pos_all >= 0, scores_all, -np.inf), k)
        pos = np.take_along_axis(pos_all, np.maximum(pick, 0), axis=1)
        ids = np.where(pick >= 0, self.ids[np.maximum(pos, 0)], _query.PAD_ID)
        return ids.astype(np.int64), vals.astype(np.float32)


def _file_region(W: Any) -> tuple[str, int] | None:
    """`(file, byte offset of row 0)` of a C-contiguous `np.memmap` (a row slice of one too),
    None for other arrays."""
    if not isinstance(W, np.memmap) or not W.flags.c_contiguous or W.filename is None:
        return None
    mm = getattr(W, "_mmap", None)
    if mm is None:
        return None
    start = np.frombuffer(mm, np.uint8).ctypes.data
    # the mapping starts at the offset rounded down to the allocation granularity
    import mmap

    mapped_from = W.offset - W.offset % mmap.ALLOCATIONGRANULARITY
    return os.fspath(W.filename), mapped_from + (W.ctypes.data - start)
