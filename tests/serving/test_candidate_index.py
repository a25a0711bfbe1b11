import logging
import os
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from keras_yt.serving import CandidateIndex, ExactIndex, _h5state
from keras_yt.serving import candidate_index as ci_module
from tests.serving.conftest import brute_force_top_k, recall


class Head:
    """Stands in for SampledSoftmax: row 0 is the padding class."""

    def __init__(self, W, b):
        self.W = np.vstack([np.zeros((1, W.shape[1]), np.float32), W])
        self.b = np.concatenate([[0.0], b]).astype(np.float32)

    def get_output_embeddings(self):
        return self.W, self.b


def test_reduction_is_exact(corpus, candidate_index):
    """Exhaustive search in the reduced space ([W, b + c] · [u, 1]) ranks exactly like MIPS."""
    W, b, U = corpus
    X = candidate_index._reduced_items().astype(np.float64)
    Q = np.hstack([U, np.ones((len(U), 1))]).astype(np.float64)
    reduced = Q @ X.T
    # pynndescent's inner_product search minimises 1 / (q · x); the shift makes the top positive
    top_reduced = np.argsort(1.0 / np.where(reduced > 0, reduced, 1e-300), axis=1)[:, :100]
    ref_rows, ref_scores = brute_force_top_k(U, W, b, 100)
    np.testing.assert_array_equal(top_reduced, ref_rows)
    shift = np.take_along_axis(reduced, ref_rows, axis=1) - ref_scores
    np.testing.assert_allclose(shift, candidate_index.bias_shift, atol=1e-4)


def test_plain_dot_metric_disagrees(corpus):
    """Cosine on W (pynndescent's "dot") ignores norms and biases: it is not MIPS."""
    W, b, U = corpus
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    cosine_top = np.argsort(-(U @ Wn.T), axis=1)[:, :10]
    ref_rows, _ = brute_force_top_k(U, W, b, 10)
    assert recall(cosine_top, ref_rows, 10) < 0.5


def test_recall_with_default_settings(corpus, candidate_index):
    W, b, U = corpus
    ids, scores = candidate_index.query(U, k=100)
    ref_ids, _ = ExactIndex.from_embeddings(W, b).query(U, k=100)
    r10, r100 = recall(ids, ref_ids, 10), recall(ids, ref_ids, 100)
    assert r10 >= 0.95 and r100 >= 0.95, (r10, r100)
    # scores are the true scores u·W_j + b_j, sorted descending
    np.testing.assert_allclose(
        scores, np.einsum("nd,nkd->nk", U, W[ids]) + b[ids], rtol=1e-5, atol=1e-5
    )
    assert (np.diff(scores, axis=1) <= 0).all() and (ids >= 0).all()


def test_exclusion_returns_k_results(corpus, candidate_index):
    W, b, U = corpus
    ref_ids, _ = ExactIndex.from_embeddings(W, b).query(U, k=30)
    # ragged: exclude the first 0..29 exact results, plus padding
    exclude = [list(r[: i % 30]) + [0, -1] for i, r in enumerate(ref_ids)]
    ids, scores = candidate_index.query(U, k=50, exclude=exclude)
    exact_ex, _ = ExactIndex.from_embeddings(W, b).query(U, k=50, exclude=exclude)
    assert ids.shape == (len(U), 50) and (ids >= 0).all()
    for row, ex in zip(ids, exclude):
        assert not set(row.tolist()) & (set(ex) - {0, -1}) and len(set(row.tolist())) == 50
    assert recall(ids, exact_ex, 50) >= 0.95


def test_small_corpus_is_exhaustive_and_padded():
    W = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    index = CandidateIndex.from_embeddings(W, ids=np.arange(100, 112))
    U = np.abs(np.random.default_rng(1).normal(size=(3, 4))).astype(np.float32)
    ids, scores = index.query(U, k=15, exclude=[[100], [], [101, 102]])
    ref_ids, ref_scores = ExactIndex.from_embeddings(W, ids=np.arange(100, 112)).query(
        U, k=15, exclude=[[100], [], [101, 102]]
    )
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    assert (ids[0, 11:] == -1).all() and np.isneginf(scores[2, 10:]).all()


def test_from_model_drops_padding_row(corpus):
    W, b, U = corpus
    index = CandidateIndex.from_model(Head(W[:500], b[:500]), random_state=0)
    ids, _ = index.query(U[:20], k=10)
    ref, _ = ExactIndex.from_embeddings(W[:500], b[:500], ids=np.arange(1, 501)).query(U[:20], 10)
    assert ids.min() >= 1 and recall(ids, ref, 10) >= 0.95


def test_save_load_reproduces_queries(tmp_path, corpus, candidate_index):
    W, b, U = corpus
    path = tmp_path / "index.h5"
    candidate_index.save(path)
    restored = CandidateIndex.load(path, model=Head(W, b))
    assert not restored.rebuilt and restored.knobs == candidate_index.knobs
    exclude = [[int(i)] for i in range(1, len(U) + 1)]
    for kw in ({"k": 100}, {"k": 10, "exclude": exclude}, {"k": 20, "epsilon": 0.3}):
        a, sa = candidate_index.query(U, **kw)
        r, sr = restored.query(U, **kw)
        np.testing.assert_array_equal(r, a)
        np.testing.assert_array_equal(sr, sa)
    # plain HDF5: numeric datasets only, no object / opaque / pickled data
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2 and "fingerprint" in f.attrs
        kinds = []
        f.visititems(lambda name, obj: kinds.append(obj.dtype.kind)
                     if isinstance(obj, h5py.Dataset) else None)
        assert kinds and set(kinds) <= set("biuf")
        for obj in [f] + [f[n] for n in _all_names(f)]:
            for value in obj.attrs.values():
                assert isinstance(value, (str, np.integer, np.floating, np.ndarray))
                if isinstance(value, np.ndarray):
                    assert value.dtype.kind in "biuf"
    assert b"\x80\x04\x95" not in path.read_bytes() and b"cnumpy" not in path.read_bytes()


def _all_names(f):
    names = []
    f.visit(names.append)
    return names


def test_load_rejects_other_embeddings_and_corrupt_files(tmp_path, corpus, candidate_index):
    W, b, _ = corpus
    path = tmp_path / "index.h5"
    candidate_index.save(path)
    tampered = W.copy()
    tampered[5, 0] += 1e-3
    with pytest.raises(ValueError, match="index was built from different output embeddings: "
                       "fingerprint [0-9a-f]{64} != [0-9a-f]{64}; rebuild with "
                       "CandidateIndex.from_model"):
        CandidateIndex.load(path, model=Head(tampered, b))
    with h5py.File(path, "r+") as f:
        f["b"][3] = 7.0
    with pytest.raises(ValueError, match="index.h5' is corrupt: its checksum"):
        CandidateIndex.load(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99, expected 2"):
        CandidateIndex.load(path)


def test_crash_during_save_keeps_old_file(tmp_path, corpus, candidate_index, monkeypatch):
    path = tmp_path / "index.h5"
    candidate_index.save(path)
    before = path.read_bytes()

    def crash(group, state, skip=()):
        group.create_dataset("partial", data=np.zeros(10))
        raise OSError("disk full")

    monkeypatch.setattr(_h5state, "encode", crash)
    with pytest.raises(OSError, match="disk full"):
        candidate_index.save(path)
    with pytest.raises(OSError, match="disk full"):
        candidate_index.save(tmp_path / "new.h5")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["index.h5"]


def test_other_pynndescent_version_rebuilds(tmp_path, corpus, candidate_index, monkeypatch,
                                            caplog):
    W, b, U = corpus
    path = tmp_path / "index.h5"
    candidate_index.save(path)
    monkeypatch.setattr(ci_module, "_pynndescent_version", lambda: "0.0.1")
    with caplog.at_level(logging.WARNING, logger=ci_module.__name__):
        restored = CandidateIndex.load(path)
    assert restored.rebuilt and "rebuilt the index" in caplog.text and "0.0.1" in caplog.text
    ref, _ = ExactIndex.from_embeddings(W, b).query(U, k=100)
    assert recall(restored.query(U, k=100)[0], ref, 100) >= 0.95


def test_concurrent_queries_match_serial(corpus, candidate_index):
    _, _, U = corpus
    chunks = [U[i::6] for i in range(6)]
    serial = [candidate_index.query(c, k=20, exclude=[[1, 2]] * len(c)) for c in chunks]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(3):
            futures = [pool.submit(candidate_index.query, c, 20, [[1, 2]] * len(c))
                       for c in chunks]
            for fut, (ids, scores) in zip(futures, serial):
                got_ids, got_scores = fut.result()
                np.testing.assert_array_equal(got_ids, ids)
                np.testing.assert_array_equal(got_scores, scores)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_neighbors": 1}, "n_neighbors must be an integer >= 2, got 1"),
        ({"diversify_prob": 1.5}, r"diversify_prob must be a number in \[0.0, 1.0\], got 1.5"),
        ({"epsilon": -0.1}, "epsilon must be a number >= 0.0, got -0.1"),
        ({"n_jobs": 0}, "n_jobs must be None, -1 or an integer >= 1, got 0"),
    ],
)
def test_knob_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CandidateIndex.from_embeddings(np.eye(3), **kwargs)
