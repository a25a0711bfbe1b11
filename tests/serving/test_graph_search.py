"""keras_yt's compiled graph search against PyNNDescent's own search and brute force."""

import threading

import numpy as np
import pytest

from keras_yt.serving import _graph_search
from tests.serving.conftest import brute_force_top_k, recall


def _reduced_queries(index, U):
    q = np.hstack([U, np.ones((len(U), 1), np.float32)])
    return q * np.float32(index._query_norm) / np.linalg.norm(q, axis=1, keepdims=True)


def test_walk_finds_what_pynndescent_finds_for_each_query(corpus, candidate_index):
    """Same graph, same tree, same start, same stopping rule: for each query alone,
    PyNNDescent's `NNDescent.query` and our batch search keep the same items."""
    import pynndescent

    W, b, U = corpus
    state = candidate_index._state
    nnd = pynndescent.NNDescent.__new__(pynndescent.NNDescent)
    nnd.__setstate__(dict(state))
    q = _reduced_queries(candidate_index, U[:60])
    k_search = 50
    ours, _ = candidate_index._search.search(q, U[:60], k_search, k_search, 0.05)
    overlaps = []
    for i in range(len(q)):
        theirs, _ = nnd.query(q[i:i + 1], k=k_search, epsilon=0.05)
        found = theirs[0][theirs[0] >= 0]
        overlaps.append(len(set(candidate_index.ids[found]) & set(ours[i])) / len(found))
    # Both sum the dot products in a vector order of their own: a near-tie may go either way.
    assert np.mean(overlaps) >= 0.995, np.mean(overlaps)
    assert min(overlaps) >= 0.9


def test_scores_are_exact_and_sorted_with_exclusions_and_padding(corpus, candidate_index):
    W, b, U = corpus
    search = candidate_index._search
    q = _reduced_queries(candidate_index, U[:40])
    exclude = [np.sort(np.random.default_rng(i).choice(len(W), 30, replace=False)).astype(np.int64)
               for i in range(40)]
    ref_rows, _ = brute_force_top_k(U[:40], W, b, 20)
    exclude[0] = np.sort(ref_rows[0, :5]).astype(np.int64)  # the exact top 5 of user 0
    ids, scores = search.search(q, U[:40], 60, 20, 0.05, exclude)
    np.testing.assert_allclose(scores, np.einsum("nkd,nd->nk", W[ids], U[:40]) + b[ids],
                               rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    for i in range(40):
        assert not set(ids[i]) & set(exclude[i].tolist())
        assert len(set(ids[i])) == 20
    # k larger than what the walk keeps: the rest is padding (id -1, score -inf)
    ids, scores = search.search(q[:3], U[:3], 10, 15, 0.05)
    assert (ids[:, 10:] == -1).all() and np.isneginf(scores[:, 10:]).all()
    assert (ids[:, :10] >= 0).all()


def test_recall_against_brute_force(corpus, candidate_index):
    W, b, U = corpus
    ids, _ = candidate_index._search.search(_reduced_queries(candidate_index, U), U, 100, 100,
                                            0.05)
    ref_rows, _ = brute_force_top_k(U, W, b, 100)
    assert recall(ids, ref_rows, 100) >= 0.95
    assert recall(ids, ref_rows, 10) >= 0.95


@pytest.mark.parametrize("n", [1, _graph_search._SERIAL_BELOW, 120])
def test_answer_does_not_depend_on_the_batch(corpus, candidate_index, n):
    """Serial and parallel kernels, any batch, any thread: the same answer per user."""
    _, _, U = corpus
    search, q = candidate_index._search, _reduced_queries(candidate_index, U[:120])
    alone = np.vstack([search.search(q[i:i + 1], U[i:i + 1], 50, 10, 0.05)[0]
                       for i in range(len(q))])
    together = np.vstack([search.search(q[s:s + n], U[s:s + n], 50, 10, 0.05)[0]
                          for s in range(0, len(q), n)])
    np.testing.assert_array_equal(together, alone)
    results, errors = {}, []

    def worker(t):
        try:
            results[t] = np.vstack([search.search(q[s:s + n], U[s:s + n], 50, 10, 0.05)[0]
                                    for s in range(t % 3, len(q), n)][:4])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for t, got in results.items():
        starts = list(range(t % 3, len(q), n))[:4]
        expected = np.vstack([alone[s:s + n] for s in starts])
        np.testing.assert_array_equal(got, expected)


def test_answer_with_exclusions_does_not_depend_on_the_batch(corpus, candidate_index):
    """Each walk widens by its own query's exclusions, not by the widest of the batch: a
    user's answer is the same alone as next to a user who excludes hundreds of videos (a
    wider walk changes about 3 % of the answers here) or one who excludes nearly all."""
    W, _, U = corpus
    rng = np.random.default_rng(0)
    exclude = [rng.choice(len(W), 5, replace=False).tolist() for _ in range(len(U))]
    exclude[0] = rng.choice(len(W), 400, replace=False).tolist()
    exclude[1] = rng.choice(len(W), len(W) - 30, replace=False).tolist()  # scanned exhaustively
    alone = np.vstack([candidate_index.query(U[i], k=10, exclude=[exclude[i]],
                                             epsilon=0.02)[0] for i in range(len(U))])
    for size in (6, len(U)):  # the serial kernel and the parallel one
        together = np.vstack([
            candidate_index.query(U[s:s + size], k=10, exclude=exclude[s:s + size],
                                  epsilon=0.02)[0] for s in range(0, len(U), size)])
        np.testing.assert_array_equal(together, alone)


def test_search_does_not_write_to_the_index(corpus, candidate_index):
    search = candidate_index._search
    arrays = {name: getattr(search, name).copy() for name in (
        "data", "indptr", "indices", "vertex_order", "rng_state", "hyperplanes", "children",
        "tree_indices")}
    _, _, U = corpus
    search.search(_reduced_queries(candidate_index, U[:30]), U[:30], 50, 10, 0.05)
    for name, before in arrays.items():
        np.testing.assert_array_equal(getattr(search, name), before, err_msg=name)


def test_built_and_loaded_indexes_share_one_compiled_kernel(candidate_index, tmp_path):
    """Every array the kernels read is a read-only view, in memory or memory-mapped: the same
    numba types, so a process that serves a loaded index reuses the kernels compiled (or
    cached) for a built one instead of compiling a second specialisation."""
    import numba

    from keras_yt.serving import CandidateIndex

    candidate_index.save(tmp_path / "index.h5")
    loaded = CandidateIndex.load(tmp_path / "index.h5")
    for name in _graph_search.INDEX_ARRAYS:
        built_array, loaded_array = (getattr(i._search, name) for i in (candidate_index, loaded))
        assert not built_array.flags.writeable and not loaded_array.flags.writeable, name
        assert numba.typeof(built_array) == numba.typeof(loaded_array), name
    assert candidate_index.W.flags.writeable  # the index's own arrays are left as they were
