"""The PyNNDescent search state stored in an index file, checked before the search reads it
(private).

A file that passes its checksum may still have been written to crash or hang the compiled search
(indices out of range, cyclic trees, buffers of the wrong size): `check_state` rejects it with an
`IndexFileError` naming the file; `check_raw_data` checks the stored search items against W and
b (format 3).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_yt.serving._index_file import IndexFileError

METRIC = "inner_product"


def _int_array(value: Any, name: str, shown: str, ndim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu" or value.ndim != ndim:
        raise IndexFileError(
            f"{shown!r}: search state {name} must be a {ndim}-D integer array, got "
            f"{getattr(value, 'dtype', type(value).__name__)} of shape {np.shape(value)}"
        )
    return value


def check_state(state: dict, n: int, dim: int, shown: str) -> None:
    """Checks every array of the PyNNDescent state that its numba search reads, before any of it
    reaches numba: graph and tree indices in range, trees acyclic, buffers of the right size.
    A file that passes the checksum but was written to crash the search is caught here."""
    import scipy.sparse

    def bad(what: str):
        return IndexFileError(f"{shown!r}: invalid search state: {what}")

    expected_scalars = {"metric": METRIC, "_is_sparse": False, "quantization": None, "dim": dim}
    for key, value in expected_scalars.items():
        if key not in state or state[key] != value or type(state[key]) is not type(value):
            raise bad(f"{key} must be {value!r}, got {state.get(key)!r}")
    graph = state.get("_search_graph")
    if not scipy.sparse.issparse(graph) or graph.format != "csr" or graph.shape != (n, n):
        raise bad(f"_search_graph must be a ({n}, {n}) CSR matrix, got {type(graph).__name__} "
                  f"{getattr(graph, 'shape', None)}")
    indptr = _int_array(graph.indptr, "_search_graph.indptr", shown, 1)
    indices = _int_array(graph.indices, "_search_graph.indices", shown, 1)
    if (
        len(indptr) != n + 1 or indptr[0] != 0 or (np.diff(indptr) < 0).any()
        or indptr[-1] != len(indices) or len(graph.data) != len(indices)
    ):
        raise bad("_search_graph.indptr is not a valid row index")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise bad(f"_search_graph holds neighbour indices outside [0, {n}): "
                  f"{int(indices.min())}..{int(indices.max())}")
    order = _int_array(state.get("_vertex_order"), "_vertex_order", shown, 1)
    if len(order) != n or not np.array_equal(np.sort(order), np.arange(n)):
        raise bad(f"_vertex_order must be a permutation of 0..{n - 1}")
    visited = state.get("_visited")
    if not isinstance(visited, np.ndarray) or visited.dtype != np.uint8 or visited.shape != (
        n // 8 + 1,
    ):
        raise bad(f"_visited must be a uint8 array of shape ({n // 8 + 1},)")
    for key in ("rng_state", "search_rng_state"):
        rng = state.get(key)
        if not isinstance(rng, np.ndarray) or rng.dtype != np.int64 or rng.shape != (3,):
            raise bad(f"{key} must be an int64 array of shape (3,)")
    raw = state.get("_raw_data")
    if raw is not None and not (
        isinstance(raw, np.ndarray) and raw.dtype == np.float32 and raw.shape == (n, dim)
    ):
        raise bad(f"_raw_data must be a float32 array of shape ({n}, {dim}), got "
                  f"{getattr(raw, 'dtype', type(raw).__name__)} {np.shape(raw)}")
    min_distance = state.get("_min_distance")
    if not isinstance(min_distance, (float, np.floating)) or not np.isfinite(min_distance):
        raise bad(f"_min_distance must be a finite float, got {min_distance!r}")
    neighbors = state.get("n_neighbors")
    if isinstance(neighbors, bool) or not isinstance(neighbors, (int, np.integer)) or \
            neighbors < 1:
        raise bad(f"n_neighbors must be an integer >= 1, got {neighbors!r}")
    if state.get("search_tree_leaf_budget", 1) != 1:
        raise bad(f"search_tree_leaf_budget must be 1, got {state['search_tree_leaf_budget']!r}")
    forest = state.get("_search_forest")
    if not isinstance(forest, tuple) or not forest:
        raise bad("_search_forest must be a non-empty tuple of trees")
    for t, tree in enumerate(forest):
        _check_tree(tree, n, dim, f"_search_forest[{t}]", bad)


def check_raw_data(state: dict, W: np.ndarray, b: np.ndarray, shown: str) -> None:
    """The stored search items must be the reduced items `[W_j, b_j + c]` in vertex order."""
    raw, order = state["_raw_data"], state["_vertex_order"]
    shift = np.float32(-b.min())
    ok = isinstance(raw, np.ndarray) and raw.dtype == np.float32 and \
        raw.shape == (len(W), W.shape[1] + 1)
    for start in range(0, len(W), 1 << 16) if ok else ():
        rows = order[start:start + (1 << 16)]
        expected = np.hstack([W[rows], (b[rows] + shift)[:, None]]).astype(np.float32)
        if not np.array_equal(raw[start:start + (1 << 16)], expected):
            ok = False
            break
    if not ok:
        raise IndexFileError(
            f"{shown!r}: invalid search state: _raw_data is not the reduced items in vertex order"
        )


def _check_tree(tree: Any, n: int, dim: int, name: str, bad) -> None:
    if not isinstance(tree, tuple) or len(tree) != 5:
        raise bad(f"{name} must be a tuple (hyperplanes, offsets, children, indices, leaf_size)")
    hyperplanes, offsets, children, indices, leaf_size = tree
    arrays_ok = (
        isinstance(hyperplanes, np.ndarray) and hyperplanes.dtype == np.float32
        and isinstance(offsets, np.ndarray) and offsets.dtype == np.float32
        and isinstance(children, np.ndarray) and children.dtype == np.int32
        and isinstance(indices, np.ndarray) and indices.dtype == np.int32
        and isinstance(leaf_size, int)
    )
    if not arrays_ok:
        raise bad(f"{name} has arrays of the wrong types")
    m = len(children)
    if (
        m < 1 or children.shape != (m, 2) or hyperplanes.shape != (m, dim)
        or offsets.shape != (m,) or indices.ndim != 1
    ):
        raise bad(f"{name} has arrays of inconsistent shapes")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise bad(f"{name} holds item indices outside [0, {n})")
    if not (np.isfinite(hyperplanes).all() and np.isfinite(offsets).all()):
        raise bad(f"{name} has non-finite (NaN / inf) hyperplanes or offsets")
    node = np.arange(m)
    internal = children[:, 0] > 0
    # Internal nodes point to later nodes only (so the descent ends), inside the tree.
    inner = children[internal]
    if ((inner <= node[internal, None]) | (inner >= m)).any():
        raise bad(f"{name} has child links outside the tree or pointing backwards")
    start, stop = -children[~internal, 0], -children[~internal, 1]
    if ((start < 0) | (stop < start) | (stop > len(indices))).any():
        raise bad(f"{name} has leaves outside its index array")
