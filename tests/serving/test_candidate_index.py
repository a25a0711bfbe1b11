import logging
import os
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_yt.serving import CandidateIndex, ExactIndex, _h5state
from keras_yt.serving import candidate_index as ci_module
from tests.serving.conftest import brute_force_top_k, recall


def _h5seal(path):
    from keras_yt.serving import _index_file

    _index_file.seal(path)


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


def test_corpora_up_to_exhaustive_below_are_searched_exactly(corpus, tmp_path):
    W, b, U = corpus  # 6,000 items: under the default exhaustive_below (20,000)
    index = CandidateIndex.from_embeddings(W, b)
    assert index.exhaustive and not CandidateIndex.from_embeddings(
        W[:100], b[:100], exhaustive_below=0, random_state=0).exhaustive
    exclude = [[1, 2, 3]] * len(U)
    ids, scores = index.query(U, k=100, exclude=exclude)
    ref_ids, ref_scores = ExactIndex.from_embeddings(W, b).query(U, k=100, exclude=exclude)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    index.save(tmp_path / "small.h5")
    loaded = CandidateIndex.load(tmp_path / "small.h5")
    assert loaded.exhaustive and loaded.knobs == index.knobs
    with pytest.raises(ValueError, match="exhaustive_below must be an integer >= 0, got -1"):
        CandidateIndex.from_embeddings(W, b, exhaustive_below=-1)


def test_from_model_drops_padding_row(corpus):
    W, b, U = corpus
    index = CandidateIndex.from_model(Head(W[:500], b[:500]), random_state=0, exhaustive_below=0)
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
        assert f.attrs["format_version"] == 3 and "fingerprint" in f.attrs
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
    _h5seal(path)
    with pytest.raises(ValueError, match="format_version 99, expected 3"):
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


# ------------------------------------------------------------- issue 13: no silent wrong answers


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), k=st.sampled_from([1, 10, 100]))
def test_property_recall_at_every_k(corpus, candidate_index, seed, k):
    # Regression (issue 13, item 11): small k searched too narrowly (recall@1 about 0.5).
    from keras_yt.serving._synthetic import clustered_corpus, user_vectors

    W, b, _ = corpus
    _, _, centers = clustered_corpus(6000, 32, num_clusters=40, seed=0)
    U = user_vectors(200, centers, seed=seed)
    ids, _ = candidate_index.query(U, k=k)
    ref_ids, _ = ExactIndex.from_embeddings(W, b).query(U, k=k)
    assert recall(ids, ref_ids, k) >= 0.95


@pytest.mark.slow
def test_recall_at_every_k_on_skewed_norms_20k():
    """The issue's case: 20k x 32, lognormal norms; recall@10 was 0.90 at the defaults."""
    from keras_yt.serving._synthetic import clustered_corpus, user_vectors

    W, b, centers = clustered_corpus(20000, 32, seed=0)
    U = user_vectors(1000, centers, seed=1)
    index = CandidateIndex.from_embeddings(W, b, random_state=0, exhaustive_below=0)
    exact = ExactIndex.from_embeddings(W, b)
    for k in (1, 10, 100):
        assert recall(index.query(U, k=k)[0], exact.query(U, k=k)[0], k) >= 0.95, k


def test_query_batch_size_is_checked(corpus, candidate_index):
    _, _, U = corpus
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"batch_size must be None or an integer >= 1"):
            candidate_index.query(U[:2], k=3, batch_size=bad)


_LOADER = """
import json, sys
import numpy as np
from keras_yt.serving import CandidateIndex
U, expected = np.load(sys.argv[1]), np.load(sys.argv[2])
for path in sys.argv[3:]:
    try:
        ids, _ = CandidateIndex.load(path).query(U, k=10)
        out = {"path": path, "ok": True, "same": bool(np.array_equal(ids, expected))}
    except Exception as err:
        out = {"path": path, "ok": False, "type": type(err).__name__, "message": str(err)}
    print(json.dumps(out), flush=True)
"""


def _load_in_subprocess(tmp_path, index, U, paths, timeout=600):
    """Loads each file in a child process, so that a crash inside numba fails the test instead
    of killing pytest; returns one result dict per path."""
    import json
    import subprocess
    import sys

    np.save(tmp_path / "U.npy", U)
    np.save(tmp_path / "expected.npy", index.query(U, k=10)[0])
    out = subprocess.run(
        [sys.executable, "-c", _LOADER, str(tmp_path / "U.npy"), str(tmp_path / "expected.npy"),
         *map(str, paths)],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert out.returncode == 0, f"the loader crashed ({out.returncode}): {out.stderr[-3000:]}"
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["path"] for r in results] == list(map(str, paths))
    return results


@pytest.fixture(scope="module")
def small_index():
    from keras_yt.serving._synthetic import clustered_corpus, user_vectors

    W, b, centers = clustered_corpus(400, 8, num_clusters=5, seed=3)
    index = CandidateIndex.from_embeddings(W, b, random_state=0, exhaustive_below=0)
    return index, user_vectors(20, centers)


def _assert_clear_or_verified(results):
    for r in results:
        if r["ok"]:
            assert r["same"], f"{r['path']} loaded but answers differently"
        else:
            assert r["type"] in ("IndexFileError", "ValueError"), r
            assert os.path.basename(r["path"]) in r["message"], r


def _rewrite_checksum(path):
    from keras_yt.serving import _index_file

    with h5py.File(path, "r+") as f:
        f.attrs["checksum"] = _index_file.file_checksum(f)
    _index_file.seal(path)


def test_crafted_search_state_is_rejected_before_numba(tmp_path, small_index):
    # Regression (issue 13, item 14): graph indices of 10**9 crashed `load` with SIGSEGV inside
    # numba, and reversed `ids` loaded silently. Crafted files get a valid checksum too, so the
    # structural checks, not only the checksum, must catch them.
    index, U = small_index
    cases = {}

    def craft(name, edit, rechecksum=True):
        path = tmp_path / f"{name}.h5"
        index.save(path)
        with h5py.File(path, "r+") as f:
            edit(f)
        if rechecksum:
            _rewrite_checksum(path)
        cases[name] = path

    def set_graph(f):
        f["nndescent/_search_graph/indices"][3] = 10**9

    def set_tree_child(f):
        f["nndescent/_search_forest/0/2"][0, 0] = 10**9

    def set_tree_leaf(f):
        children = f["nndescent/_search_forest/0/2"]
        leaf = int(np.flatnonzero(children[:, 0] <= 0)[0])
        children[leaf, 1] = -(10**9)

    def set_order(f):
        f["nndescent/_vertex_order"][0] = f["nndescent/_vertex_order"][1]

    def reverse_ids(f):
        f["ids"][...] = f["ids"][()][::-1]

    craft("graph", set_graph)
    craft("graph_no_checksum", set_graph, rechecksum=False)
    craft("tree_child", set_tree_child)
    craft("tree_leaf", set_tree_leaf)
    craft("vertex_order", set_order)
    craft("reversed_ids", reverse_ids, rechecksum=False)
    results = {os.path.basename(r["path"])[:-3]: r for r in
               _load_in_subprocess(tmp_path, index, U, list(cases.values()))}
    _assert_clear_or_verified(results.values())
    assert not any(r["ok"] for r in results.values())
    assert "_search_graph holds neighbour indices outside [0, 400)" in results["graph"]["message"]
    assert "is corrupt: its checksum" in results["graph_no_checksum"]["message"]
    assert "child links outside the tree" in results["tree_child"]["message"]
    assert "leaves outside its index array" in results["tree_leaf"]["message"]
    assert "_vertex_order must be a permutation" in results["vertex_order"]["message"]
    assert "is corrupt: its checksum" in results["reversed_ids"]["message"]


def _fuzz_files(tmp_path, index, count, seed):
    good = tmp_path / "good.h5"
    index.save(good)
    data = good.read_bytes()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        buf = bytearray(data)
        if i % 4 == 3:  # truncation
            buf = buf[: int(rng.integers(0, len(buf)))]
        else:  # 1-3 byte flips, half of them in the first 4 KiB (HDF5 metadata)
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, 4096 if rng.random() < 0.5 else len(buf)))
                buf[pos] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"fuzz{i:04d}.h5"
        path.write_bytes(bytes(buf))
        paths.append(path)
    return paths


def test_fuzzed_index_files_raise_clear_errors_or_load_verified(tmp_path, small_index):
    index, U = small_index
    paths = _fuzz_files(tmp_path, index, 12, seed=0)
    _assert_clear_or_verified(_load_in_subprocess(tmp_path, index, U, paths))


@pytest.mark.slow
def test_fuzzed_index_files_many(tmp_path, small_index):
    index, U = small_index
    paths = _fuzz_files(tmp_path, index, 300, seed=1)
    _assert_clear_or_verified(_load_in_subprocess(tmp_path, index, U, paths, timeout=900))


def test_random_bytes_and_dataless_files_raise_clear_errors(tmp_path):
    junk = tmp_path / "index.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r"index\.h5' is not a readable keras_yt\.CandidateIndex"):
        CandidateIndex.load(junk)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w", userblock_size=512) as f:
        f.attrs["kind"] = "keras_yt.CandidateIndex"
        f.attrs["format_version"] = ci_module.FORMAT_VERSION
        f.attrs["fingerprint"] = "0" * 64
    _rewrite_checksum(empty)
    with pytest.raises(ValueError, match=r"empty\.h5' has no dataset 'W': not a complete"):
        CandidateIndex.load(empty)


def test_non_finite_tree_hyperplanes_are_rejected(tmp_path, small_index):
    """A crafted index (valid checksum) with NaN / inf in a search tree is a clear error."""
    index, U = small_index
    paths = []
    for name, dataset, value in [("nan_plane", "0", np.nan), ("inf_offset", "1", np.inf)]:
        path = tmp_path / f"{name}.h5"
        index.save(path)
        with h5py.File(path, "r+") as f:
            node = f[f"nndescent/_search_forest/0/{dataset}"]
            if node.ndim == 2:
                node[0, 0] = value
            else:
                node[0] = value
        _rewrite_checksum(path)
        paths.append(path)
    results = _load_in_subprocess(tmp_path, index, U, paths)
    _assert_clear_or_verified(results)
    for r in results:
        assert not r["ok"] and "non-finite" in r["message"], r


def test_later_loads_map_the_arrays_and_skip_the_hash_until_the_file_changes(
        tmp_path, corpus, candidate_index, monkeypatch):
    """The first load hashes the file and checks every value; a load of the unchanged file
    trusts that record and memory-maps W and the search items; a changed file is hashed again
    (and caught); a format-2 file (no stored search items) still loads, to the same answers."""
    import os
    import time

    from keras_yt import _files
    from keras_yt.serving import _index_file

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    W, b, U = corpus
    path = tmp_path / "index.h5"
    candidate_index.save(path)
    old = time.time_ns() - 10**10  # the file as if written 10 s ago (not "racy")
    os.utime(path, ns=(old, old))
    time.sleep(0.01)
    hashed = []
    real = _files.sha256_after
    monkeypatch.setattr(_files, "sha256_after", lambda *a: hashed.append(a) or real(*a))
    expected = candidate_index.query(U[:20], k=50)
    first = CandidateIndex.load(path)
    assert len(hashed) == 1
    # the record is only trusted when written > 2 s after the file's last change
    record = _files._seal_record_path(path)
    import json

    data = json.loads(open(record).read())
    data["checked_ns"] = data["state"]["ctime_ns"] + 3 * 10**9
    with open(record, "w") as fh:
        json.dump(data, fh)
    second = CandidateIndex.load(path, fingerprint=candidate_index.fingerprint)
    assert len(hashed) == 1, "an unchanged file checked before is not hashed again"
    assert isinstance(second.W, np.memmap)
    assert isinstance(second._search.data, np.memmap)
    for index in (first, second):
        np.testing.assert_array_equal(index.query(U[:20], k=50)[0], expected[0])
    with pytest.raises(ValueError, match="different output embeddings"):
        CandidateIndex.load(path, fingerprint="0" * 64)
    # a byte changed in place: hashed again, caught
    with h5py.File(path, "r") as f:
        offset = f["W"].id.get_offset()
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)
        fh.seek(offset + 5)
        fh.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(_index_file.IndexFileError, match="corrupt"):
        CandidateIndex.load(path)
    assert len(hashed) == 2
    # format 2: no stored search items or query norm
    candidate_index.save(path)
    with h5py.File(path, "r+") as f:
        del f["nndescent/_raw_data"]
        del f.attrs["query_norm"]
        f.attrs["format_version"] = 2
        f.attrs["checksum"] = _index_file.file_checksum(f)
    _index_file.seal(path)
    restored = CandidateIndex.load(path)
    assert not restored.rebuilt
    np.testing.assert_array_equal(restored.query(U[:20], k=50)[0], expected[0])
