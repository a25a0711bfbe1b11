"""The graph search of `CandidateIndex` (private): numba kernels compiled once per installation.

PyNNDescent builds the search graph and tree; this module searches them. PyNNDescent's own
search for the inner-product metric is a closure compiled in every process (12–26 s at start-up,
on one core); these kernels are plain functions compiled with `cache=True`, so a process with a
warm numba cache compiles nothing and never imports pynndescent to answer a query. The search
itself is PyNNDescent's (`NNDescent.query` in 0.7.0, same steps, same distance): start from the
leaf of each search tree that the query falls in (random items if the leaves hold fewer than
`min(k, n_neighbors)`), then a best-first walk of the graph that keeps the k nearest found and
stops when the nearest unexpanded item is farther than `worst + epsilon * (worst - min_distance)`.
The distance is `1 / (q · x)` (infinite where `q · x <= 0`), so nearest means largest inner
product. Each query starts from its own copy of the index's random state, so a user's answer
does not depend on the other queries of the batch (it equals PyNNDescent's answer for that query
alone; `tests/serving/test_graph_search.py`).

After the walk the same compiled code finishes each query: the candidates' exact scores
`u · W_j + b_j` (summed in float64), the excluded ids dropped, the best k sorted by score (ties:
lowest row first), padded with id -1 and score `-inf`.

Two entry points over one body: `search_batch` runs the queries on every numba thread
(`prange`, one visited set per query); `search_serial` runs them one after the other without the
GIL, so that several request threads search at once. Neither writes to the index's arrays.
"""

from __future__ import annotations

import heapq
import threading
from typing import Any

import numpy as np

from keras_yt.serving._pynndescent import configure_numba_cache

configure_numba_cache()  # before numba decides where `cache=True` writes

import numba  # noqa: E402

_FLOAT32_MAX = np.float32(np.finfo(np.float32).max)
_TREE_EPS = 1e-8  # PyNNDescent's rp_trees.EPS: a margin this small picks a side at random
_SERIAL_BELOW = 8  # fewer queries than this run serially (no thread start-up, no lock)
# Sums may be reordered (vectorised dot products); no flag that assumes away inf or NaN, which
# the heaps and the `q · x <= 0` case use.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
# The arrays of a `GraphSearch` that the kernels read (and never write).
INDEX_ARRAYS = ("indptr", "indices", "data", "vertex_order", "rng_state", "hyperplanes", "offsets",
                "children", "tree_indices", "W", "b", "ids")


@numba.njit(inline="always", fastmath=_FASTMATH)
def _distance(x, y):
    """PyNNDescent's `alternative_inner_product`: `1 / (x · y)`, the float32 maximum where the
    product is not positive."""
    result = 0.0
    for t in range(x.shape[0]):
        result += x[t] * y[t]
    if result <= 0.0:
        return _FLOAT32_MAX
    return np.float32(1.0 / result)


@numba.njit(inline="always", fastmath=_FASTMATH)
def _four_distances(query, data, rows, n, out):
    """`_distance` from `query` to `data[rows[:n]]` (n <= 4), the rows read side by side."""
    if n < 4:
        for r in range(n):
            out[r] = _distance(query, data[rows[r]])
        return
    y0, y1, y2, y3 = data[rows[0]], data[rows[1]], data[rows[2]], data[rows[3]]
    s0 = s1 = s2 = s3 = 0.0
    for t in range(query.shape[0]):
        x = query[t]
        s0 += x * y0[t]
        s1 += x * y1[t]
        s2 += x * y2[t]
        s3 += x * y3[t]
    for r, total in enumerate((s0, s1, s2, s3)):
        out[r] = _FLOAT32_MAX if total <= 0.0 else np.float32(1.0 / total)


@numba.njit(inline="always")
def _rand_int(state):
    """PyNNDescent's `tau_rand_int` (Tausworthe generator over three int64 words)."""
    state[0] = (((state[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ (
        (((state[0] << 13) & 0xFFFFFFFF) ^ state[0]) >> 19
    )
    state[1] = (((state[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ (
        (((state[1] << 2) & 0xFFFFFFFF) ^ state[1]) >> 25
    )
    state[2] = (((state[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ (
        (((state[2] << 3) & 0xFFFFFFFF) ^ state[2]) >> 11
    )
    return state[0] ^ state[1] ^ state[2]


@numba.njit
def _tree_leaf(point, t, hyperplanes, offsets, children, rng_state):
    """`(start, stop)` in `tree_indices[t]` of the leaf of tree t that `point` falls in."""
    node = 0
    while children[t, node, 0] > 0:
        margin = offsets[t, node]
        for d in range(point.shape[0]):
            margin += hyperplanes[t, node, d] * point[d]
        if abs(margin) < _TREE_EPS:
            left = np.abs(_rand_int(rng_state)) % 2 == 0
        else:
            left = margin > 0
        node = children[t, node, 0] if left else children[t, node, 1]
    return -children[t, node, 0], -children[t, node, 1]


@numba.njit(inline="always")
def _visit(visited, item):
    """Marks `item` visited; returns whether it was before."""
    loc = item >> 3
    mask = np.uint8(1 << (item & 7))
    seen = visited[loc] & mask
    visited[loc] |= mask
    return seen != 0


@numba.njit(inline="always")
def _heap_push(priorities, items, p, item):
    """Pushes into a max-heap of fixed size whose root is the worst kept (PyNNDescent's
    `simple_heap_push`); does nothing unless `p` beats the root."""
    if p >= priorities[0]:
        return
    size = priorities.shape[0]
    i = 0
    while True:
        left = 2 * i + 1
        right = left + 1
        if left >= size:
            break
        if right >= size or priorities[left] >= priorities[right]:
            child = left
        else:
            child = right
        if p < priorities[child]:
            priorities[i] = priorities[child]
            items[i] = items[child]
            i = child
        else:
            break
    priorities[i] = p
    items[i] = item


@numba.njit(fastmath=_FASTMATH)
def _walk(query, heap_d, heap_v, k, epsilon, visited, rng_state, data, indptr, indices,
          hyperplanes, offsets, children, tree_indices, n_neighbors, min_distance):
    """PyNNDescent's search for one query: fills the heap `(heap_d, heap_v)` with the k
    nearest vertices found (vertex numbers, -1 where fewer were found)."""
    seeds = [(np.float32(np.inf), np.int32(-1)) for _ in range(0)]
    n_initial = 0
    for t in range(children.shape[0]):
        start, stop = _tree_leaf(query, t, hyperplanes, offsets, children, rng_state)
        for j in range(start, stop):
            vertex = tree_indices[t, j]
            if not _visit(visited, vertex):
                d = _distance(query, data[vertex])
                _heap_push(heap_d, heap_v, d, vertex)
                heapq.heappush(seeds, (d, vertex))
                n_initial += 1
    for _ in range(min(k, n_neighbors) - n_initial):
        vertex = np.int32(np.abs(_rand_int(rng_state)) % data.shape[0])
        if not _visit(visited, vertex):
            d = _distance(query, data[vertex])
            _heap_push(heap_d, heap_v, d, vertex)
            heapq.heappush(seeds, (d, vertex))
    if len(seeds) == 0:
        return
    bound = heap_d[0] + epsilon * (heap_d[0] - min_distance)
    d_vertex, vertex = heapq.heappop(seeds)
    pending = np.empty(4, np.int32)
    pending_d = np.empty(4, np.float32)
    while d_vertex < bound:
        # Unvisited neighbours are scored four at a time (four rows fetched from memory at
        # once), then considered in their graph order, so the walk is unchanged.
        n_pending = 0
        for j in range(indptr[vertex], indptr[vertex + 1] + 1):
            last = j == indptr[vertex + 1]
            if not last:
                candidate = indices[j]
                if not _visit(visited, candidate):
                    pending[n_pending] = candidate
                    n_pending += 1
            if n_pending == 4 or (last and n_pending > 0):
                _four_distances(query, data, pending, n_pending, pending_d)
                for r in range(n_pending):
                    if pending_d[r] < bound:
                        _heap_push(heap_d, heap_v, pending_d[r], pending[r])
                        heapq.heappush(seeds, (pending_d[r], pending[r]))
                        bound = heap_d[0] + epsilon * (heap_d[0] - min_distance)
                n_pending = 0
        if len(seeds) == 0:
            break
        d_vertex, vertex = heapq.heappop(seeds)


@numba.njit
def _finish(heap_v, user, W, b, ids, vertex_order, excluded, k, out_ids, out_scores):
    """Exact scores `u · W_j + b_j` of the vertices found, excluded ids dropped, the best k
    sorted (score descending, ties lowest row first) into `out_ids` / `out_scores`."""
    rows = np.empty(heap_v.shape[0], np.int64)
    m = 0
    for j in range(heap_v.shape[0]):
        if heap_v[j] < 0:
            continue
        row = vertex_order[heap_v[j]]
        if excluded.shape[0]:
            at = np.searchsorted(excluded, ids[row])
            if at < excluded.shape[0] and excluded[at] == ids[row]:
                continue
        rows[m] = row
        m += 1
    rows = np.sort(rows[:m])
    scores = np.empty(m, np.float32)
    for j in range(m):
        total = 0.0
        for t in range(user.shape[0]):
            total += np.float64(W[rows[j], t]) * user[t]
        scores[j] = np.float32(total + b[rows[j]])
    order = np.argsort(-scores, kind="mergesort")
    for j in range(k):
        if j < m:
            out_ids[j] = ids[rows[order[j]]]
            out_scores[j] = scores[order[j]]
        else:
            out_ids[j] = -1
            out_scores[j] = -np.inf


@numba.njit
def _one_query(i, queries, users, k_search, k, epsilon, visited, rng_state, data, indptr,
               indices, hyperplanes, offsets, children, tree_indices, n_neighbors,
               min_distance, W, b, ids, vertex_order, excluded, excluded_len, out_ids,
               out_scores):
    breadth = k_search + excluded_len[i]  # the row's own exclusions: not the batch's widest
    heap_d = np.full(breadth, np.inf, np.float32)
    heap_v = np.full(breadth, -1, np.int32)
    rng = rng_state.copy()
    _walk(queries[i], heap_d, heap_v, breadth, epsilon, visited, rng, data, indptr, indices,
          hyperplanes, offsets, children, tree_indices, n_neighbors, min_distance)
    _finish(heap_v, users[i], W, b, ids, vertex_order, excluded[i, :excluded_len[i]], k,
            out_ids[i], out_scores[i])


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)
def search_batch(queries, users, k_search, k, epsilon, rng_state, data, indptr, indices,
                 hyperplanes, offsets, children, tree_indices, n_neighbors, min_distance, W, b,
                 ids, vertex_order, excluded, excluded_len, out_ids, out_scores):
    """Every query on every numba thread (`prange`); each query has its own visited set."""
    for i in numba.prange(queries.shape[0]):
        visited = np.zeros(data.shape[0] // 8 + 1, np.uint8)
        _one_query(i, queries, users, k_search, k, epsilon, visited, rng_state, data, indptr,
                   indices, hyperplanes, offsets, children, tree_indices, n_neighbors,
                   min_distance, W, b, ids, vertex_order, excluded, excluded_len, out_ids,
                   out_scores)


@numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def search_serial(queries, users, k_search, k, epsilon, rng_state, data, indptr, indices,
                  hyperplanes, offsets, children, tree_indices, n_neighbors, min_distance, W, b,
                  ids, vertex_order, excluded, excluded_len, out_ids, out_scores):
    """The queries one after the other in the calling thread, without the GIL."""
    visited = np.zeros(data.shape[0] // 8 + 1, np.uint8)
    for i in range(queries.shape[0]):
        visited[:] = 0
        _one_query(i, queries, users, k_search, k, epsilon, visited, rng_state, data, indptr,
                   indices, hyperplanes, offsets, children, tree_indices, n_neighbors,
                   min_distance, W, b, ids, vertex_order, excluded, excluded_len, out_ids,
                   out_scores)


class GraphSearch:
    """The arrays of a PyNNDescent search state, searched by the kernels above.

    Args:
        state: `NNDescent.__getstate__()` (or its arrays read back from an index file, checked
            by `_search_state.check_state`): search graph, search trees, the reduced items in
            vertex order (`_raw_data`), `_vertex_order`, `_min_distance`, `n_neighbors`,
            `search_rng_state`.
        W, b, ids: the output embeddings, biases and ids in row order (for the exact scores).
    """

    def __init__(self, state: dict, W: np.ndarray, b: np.ndarray, ids: np.ndarray):
        graph = state["_search_graph"]
        self.indptr = np.ascontiguousarray(graph.indptr, np.int32)
        self.indices = np.ascontiguousarray(graph.indices, np.int32)
        self.data = state["_raw_data"]
        self.vertex_order = np.ascontiguousarray(state["_vertex_order"], np.int64)
        self.min_distance = np.float32(state["_min_distance"])
        self.n_neighbors = int(state["n_neighbors"])
        self.rng_state = np.array(state["search_rng_state"], np.int64)
        forest = state["_search_forest"]
        nodes = max(len(tree[2]) for tree in forest)
        dim = self.data.shape[1]
        self.hyperplanes = np.zeros((len(forest), nodes, dim), np.float32)
        self.offsets = np.zeros((len(forest), nodes), np.float32)
        self.children = np.full((len(forest), nodes, 2), -1, np.int32)
        self.tree_indices = np.zeros((len(forest), len(self.data)), np.int32)
        for t, (hyperplanes, offsets, children, indices, _) in enumerate(forest):
            self.hyperplanes[t, :len(children)] = hyperplanes
            self.offsets[t, :len(children)] = offsets
            self.children[t, :len(children)] = children
            self.tree_indices[t, :len(indices)] = indices
        self.W, self.b, self.ids = W, np.ascontiguousarray(b, np.float32), \
            np.ascontiguousarray(ids, np.int64)
        # Read-only views of every index array: the kernels never write them, and one numba
        # type for a built index (in memory) and a loaded one (memory-mapped, read-only) means
        # one compiled specialisation per kernel instead of two.
        for name in INDEX_ARRAYS:
            view = getattr(self, name).view()
            view.flags.writeable = False
            setattr(self, name, view)
        self._batch_lock = threading.Lock()  # numba's workqueue layer runs one prange at a time

    def search(self, queries: np.ndarray, users: np.ndarray, k_search: int, k: int,
               epsilon: float, exclude: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids and exact scores of each query (one row per query; see the module).

        Args:
            queries: reduced, scaled queries `(n, d + 1)` float32.
            users: the user vectors `(n, d)` float32 (for the exact scores).
            k_search: how many vertices the walk keeps (>= k), plus each query's number of
                excluded ids (so a query's answer does not depend on the other queries).
            k: results per query.
            epsilon: search breadth.
            exclude: None or one sorted int64 id array per query.
        """
        n = len(queries)
        if exclude is None:
            excluded = np.zeros((n, 0), np.int64)
            excluded_len = np.zeros(n, np.int64)
        else:
            excluded_len = np.array([len(e) for e in exclude], np.int64)
            excluded = np.zeros((n, int(excluded_len.max(initial=0))), np.int64)
            for i, e in enumerate(exclude):
                excluded[i, :len(e)] = e
        out_ids = np.empty((n, k), np.int64)
        out_scores = np.empty((n, k), np.float32)
        args = (np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(users, np.float32),
                int(k_search), int(k), float(epsilon), self.rng_state, self.data, self.indptr,
                self.indices, self.hyperplanes, self.offsets, self.children, self.tree_indices,
                self.n_neighbors, self.min_distance, self.W, self.b, self.ids, self.vertex_order,
                excluded, excluded_len, out_ids, out_scores)
        if n < _SERIAL_BELOW:
            search_serial(*args)
        else:
            with self._batch_lock:
                search_batch(*args)
        return out_ids, out_scores
