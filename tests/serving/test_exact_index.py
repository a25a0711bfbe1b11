import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_yt.serving import ExactIndex, _index_file, exact_index
from tests.serving.conftest import brute_force_top_k


@pytest.fixture(autouse=True, params=["numpy", "backend"])
def engine(request, monkeypatch):
    """Every test runs on both ranking paths: numpy (small batches) and keras.ops (large)."""
    limit = float("inf") if request.param == "numpy" else 0
    monkeypatch.setattr(exact_index, "_NUMPY_MAX_SCORES", limit)
    return request.param


def _data(n=400, d=12, users=25, seed=0):
    rng = np.random.default_rng(seed)
    W = (rng.normal(size=(n, d)) * rng.lognormal(0, 0.5, (n, 1))).astype(np.float32)
    b = rng.normal(0, 0.5, n).astype(np.float32)
    U = np.maximum(rng.normal(size=(users, d)), 0).astype(np.float32)
    return W, b, U


@pytest.mark.parametrize("batch_size", [None, 1, 7])
def test_matches_full_sort(batch_size):
    W, b, U = _data()
    ids, scores = ExactIndex.from_embeddings(W, b).query(U, k=50, batch_size=batch_size)
    ref_ids, ref_scores = brute_force_top_k(U, W, b, 50)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (25, 50)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize("k", [3, 6, 12])
def test_equal_scores_come_in_row_order(k):
    # duplicated rows tie; the k-th place may fall inside a group of ties
    rng = np.random.default_rng(3)
    W = np.repeat(rng.normal(size=(4, 5)).astype(np.float32), 3, axis=0)
    U = rng.normal(size=(6, 5)).astype(np.float32)
    ids, scores = ExactIndex.from_embeddings(W).query(U, k=k)
    expected = np.argsort(-(U @ W.T), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(ids, expected)


def test_custom_ids_and_exclusion_keeps_k():
    W, b, U = _data()
    custom = np.arange(len(W)) * 3 + 10
    index = ExactIndex.from_embeddings(W, b, ids=custom)
    ref_rows, _ = brute_force_top_k(U, W, b, 5)
    # exclude each user's top 3 (ragged, with padding 0 / -1 that must be ignored)
    exclude = [list(custom[r[: 1 + i % 3]]) + [0, -1] for i, r in enumerate(ref_rows)]
    ids, scores = index.query(U, k=20, exclude=exclude)
    ex_rows = [[(e - 10) // 3 for e in ex if e > 0] for ex in exclude]
    ref_rows, ref_scores = brute_force_top_k(U, W, b, 20, exclude=ex_rows)
    np.testing.assert_array_equal(ids, custom[ref_rows])
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    for row, ex in zip(ids, exclude):
        assert not set(row) & set(ex)


def test_padded_array_exclusion_equals_ragged():
    W, b, U = _data(users=3)
    index = ExactIndex.from_embeddings(W, b)
    ragged = [[5, 9], [], [1, 2, 3]]
    padded = np.array([[5, 9, 0], [0, 0, -1], [1, 2, 3]])
    np.testing.assert_array_equal(index.query(U, 10, ragged)[0], index.query(U, 10, padded)[0])


def test_fewer_eligible_than_k_pads():
    W = np.eye(3, dtype=np.float32)
    index = ExactIndex.from_embeddings(W, ids=[4, 5, 6])
    ids, scores = index.query([[0.0, 2.0, 1.0]], k=5, exclude=[[6]])
    assert ids.tolist() == [[5, 4, -1, -1, -1]]
    assert scores[0, :2].tolist() == [2.0, 0.0] and np.isneginf(scores[0, 2:]).all()


def test_from_model_drops_padding_row():
    class Head:
        def get_output_embeddings(self):
            W = np.zeros((4, 2), np.float32)
            W[0] = 100.0  # padding row would win if it were indexed
            W[1:] = [[1, 0], [0, 1], [1, 1]]
            return W, np.zeros(4, np.float32)

    index = ExactIndex.from_model(Head())
    assert len(index) == 3
    ids, scores = index.query([[1.0, 1.0]], k=3)
    assert ids.tolist() == [[3, 1, 2]] or ids.tolist() == [[3, 2, 1]]
    assert scores[0].tolist() == [2.0, 1.0, 1.0]


def test_save_load_and_fingerprint(tmp_path):
    W, b, U = _data()
    index = ExactIndex.from_embeddings(W, b)
    path = tmp_path / "exact.h5"
    index.save(path)
    restored = ExactIndex.load(path)
    np.testing.assert_array_equal(restored.query(U, 10)[0], index.query(U, 10)[0])

    class Head:
        def get_output_embeddings(self):
            return np.vstack([np.zeros((1, W.shape[1])), W + 1e-3]), np.concatenate([[0], b])

    with pytest.raises(ValueError, match="different output embeddings"):
        ExactIndex.load(path, model=Head())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be an integer >= 1, got 0"),
        ({"user_vectors": np.ones((2, 3))}, r"user_vectors must have shape \(n, 12\)"),
        ({"exclude": [[1]]}, r"exclude must hold one id list per user vector \(25\), got 1"),
    ],
)
def test_query_errors_name_argument(kwargs, match):
    W, b, U = _data()
    args = {"user_vectors": U, "k": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        ExactIndex.from_embeddings(W, b).query(**args)


def test_embedding_errors():
    with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
        ExactIndex.from_embeddings(np.eye(3), b=np.zeros(4))
    with pytest.raises(ValueError, match="ids must be unique"):
        ExactIndex.from_embeddings(np.eye(2), ids=[1, 1])


# ------------------------------------------------------------- issue 13: no silent wrong answers


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True])
def test_bad_batch_size_raises(batch_size):
    # Regression (issue 13, item 3): batch_size=-1 returned uninitialised memory as ids.
    W, b, U = _data()
    index = ExactIndex.from_embeddings(W, b)
    with pytest.raises(ValueError, match=r"batch_size must be None or an integer >= 1, got "):
        index.query(U, k=5, batch_size=batch_size)
    with pytest.raises(ValueError, match=r"batch_size must be None or an integer >= 1, got "):
        ExactIndex.from_embeddings(W, b, batch_size=batch_size)


def test_item_zero_can_be_excluded():
    # Regression (issue 13, item 7): with default ids (rows from 0) item 0 could not be excluded.
    W = np.eye(3, dtype=np.float32)
    index = ExactIndex.from_embeddings(W, b=[1.0, 0.5, 0.0])
    ids, _ = index.query([[0.0, 0.0, 0.0]], k=2, exclude=[[0, -1]])
    assert ids.tolist() == [[1, 2]]


def _saved(tmp_path):
    W, b, U = _data()
    path = tmp_path / "exact.h5"
    ExactIndex.from_embeddings(W, b, ids=np.arange(100, 100 + len(W))).save(path)
    return path, U


def test_tampered_files_raise_an_error_naming_the_file(tmp_path):
    # Regression (issue 13, item 14): reversed ids loaded silently and answered wrong ids.
    path, _ = _saved(tmp_path)
    with h5py.File(path, "r+") as f:
        f["ids"][...] = f["ids"][()][::-1]
    with pytest.raises(ValueError, match=r"exact\.h5' is corrupt: its checksum .* does not match"):
        ExactIndex.load(path)


def test_random_bytes_and_empty_files_raise_clear_errors(tmp_path):
    # Regression (issue 13, item 15): h5py OSError / KeyError tracebacks.
    junk = tmp_path / "junk.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match=r"junk\.h5' is not a readable keras_yt\.ExactIndex file "
                                         r"\(not HDF5, truncated or damaged\)"):
        ExactIndex.load(junk)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w", userblock_size=512) as f:  # the right kind, but no data
        f.attrs["kind"] = "keras_yt.ExactIndex"
        f.attrs["format_version"] = exact_index.FORMAT_VERSION
    with pytest.raises(ValueError, match=r"empty\.h5' is not a readable keras_yt\.ExactIndex "
                                         r"file .* does not start with a keras_yt index header"):
        ExactIndex.load(empty)
    _index_file.seal(empty)
    with pytest.raises(ValueError, match=r"empty\.h5' has no checksum: not a complete"):
        ExactIndex.load(empty)
    with h5py.File(empty, "r+") as f:
        f.attrs["checksum"] = _index_file.file_checksum(f)
    _index_file.seal(empty)
    with pytest.raises(ValueError, match=r"empty\.h5' has no dataset 'W': not a complete"):
        ExactIndex.load(empty)
    with pytest.raises(FileNotFoundError, match=r"index file '.*nothing\.h5' does not exist"):
        ExactIndex.load(tmp_path / "nothing.h5")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_files_raise_clear_errors(tmp_path, cut):
    path, _ = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match=r"exact\.h5' is not a (readable|valid) "
                                         r"keras_yt\.ExactIndex file|exact\.h5' is corrupt"):
        ExactIndex.load(path)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 8),
    users=st.integers(1, 6),
    k=st.integers(1, 70),
    seed=st.integers(0, 2**16),
    with_exclude=st.booleans(),
)
def test_property_equals_numpy_brute_force(n, d, users, k, seed, with_exclude):
    W, b, U = _data(n=n, d=d, users=users, seed=seed)
    exclude = None
    if with_exclude:
        rng = np.random.default_rng(seed)
        exclude = [rng.integers(-1, n, size=rng.integers(0, 4)).tolist() for _ in range(users)]
    ids, scores = ExactIndex.from_embeddings(W, b).query(U, k=k, exclude=exclude)
    ref_ids, ref_scores = brute_force_top_k(U, W, b, k, exclude)
    eligible = np.isfinite(ref_scores)
    kk = min(k, n)
    np.testing.assert_array_equal(ids[:, :kk][eligible], ref_ids[eligible])
    np.testing.assert_allclose(scores[:, :kk][eligible], ref_scores[eligible], rtol=1e-4,
                               atol=1e-4)
    assert (ids[:, :kk][~eligible] == -1).all() and (ids[:, kk:] == -1).all()


@pytest.mark.parametrize("scale", [1e30, 1e20])
def test_embeddings_whose_scores_overflow_float32_are_rejected(scale):
    """Weights of 1e30 are finite but every score would be inf: a clear error at build."""
    W = np.random.default_rng(0).normal(size=(50, 4)).astype("float32")
    with pytest.raises(ValueError, match=r"W .*too large"):
        ExactIndex(W * scale)
    with pytest.raises(ValueError, match=r"b .*too large"):
        ExactIndex(W, np.full(50, scale * 1e8, "float32"))
