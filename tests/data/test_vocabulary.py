"""Vocabulary: raw ids (any int, strings) ↔ model ids by popularity, files, Keras lookup."""

import json

import h5py
import numpy as np
import pytest

from keras_yt.data import Vocabulary


def test_model_ids_follow_popularity_with_ties_by_raw_id():
    raw = [5, 2**40, 0, 5, 7, 2**40, 5, 9, 7]
    vocab = Vocabulary.from_ids(raw)
    # counts: 5 -> 3, 2**40 -> 2, 7 -> 2, 0 -> 1, 9 -> 1 (ties ordered by raw id)
    assert vocab.ids.tolist() == [5, 7, 2**40, 0, 9]
    assert vocab.counts.tolist() == [3, 2, 2, 1, 1]
    assert vocab.size == 6 and len(vocab) == 5
    # independent reference: position in the sorted-by-(-count, id) list, + 1
    values, counts = np.unique(raw, return_counts=True)
    order = sorted(zip(-counts, values))
    expected = {int(v): i + 1 for i, (_, v) in enumerate(order)}
    assert vocab.lookup(raw).tolist() == [expected[r] for r in raw]
    assert vocab.lookup([1, 3, -1]).tolist() == [0, 0, 0]
    assert vocab.lookup(["5"]).tolist() == [0]  # a string is not an integer id
    np.testing.assert_array_equal(vocab.raw_ids(vocab.lookup(raw)), raw)


def test_string_ids_titles_and_inverse():
    vocab = Vocabulary.from_ids(["v2", "v10", "v2"], titles={"v2": "Two"})
    assert vocab.is_string and vocab.ids.tolist() == ["v2", "v10"]
    assert vocab.lookup([["v10", "nope"], ["v2", "v2"]]).tolist() == [[2, 0], [1, 1]]
    assert vocab.title(1) == "Two" and vocab.title(2) == ""
    assert vocab.lookup([10]).tolist() == [0]
    with pytest.raises(ValueError, match=r"model video ids must be integers in 1..2"):
        vocab.raw_ids([0])


@pytest.mark.parametrize("raw", [[1, 2, 2**63 - 1, 0], ["a", "é", "a b"]])
def test_config_and_file_round_trip(raw, tmp_path):
    vocab = Vocabulary.from_ids(raw, name="user")
    config = json.loads(json.dumps(vocab.get_config()))
    for restored in (Vocabulary.from_config(config), _saved(vocab, tmp_path)):
        np.testing.assert_array_equal(restored.ids, vocab.ids)
        np.testing.assert_array_equal(restored.counts, vocab.counts)
        assert restored.name == "user" and restored.is_string == vocab.is_string


def _saved(vocab, tmp_path):
    path = tmp_path / "vocab.h5"
    vocab.save(path)
    return Vocabulary.load(path)


@pytest.mark.parametrize("raw, probe", [
    ([0, 2**31 + 5, 17, 17], [[2**31 + 5, 0, 3, -1]]),
    (["v248", "0", "v248"], [["0", "v248", "zz", ""]]),
])
def test_keras_lookup_layer_agrees_with_lookup(raw, probe):
    vocab = Vocabulary.from_ids(raw)
    layer = vocab.lookup_layer()
    probe = np.array(probe, dtype=object if vocab.is_string else np.int64)
    np.testing.assert_array_equal(np.asarray(layer(probe)), vocab.lookup(probe.astype(
        str if vocab.is_string else np.int64)))


@pytest.mark.parametrize("raw, message", [
    ([1, -3], "integers >= 0, got -3"),
    (["a", ""], "non-empty strings"),
    ([1.5], "integers >= 0 or strings"),
])
def test_bad_raw_ids_are_rejected(raw, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary.from_ids(raw)
    with pytest.raises(ValueError, match="unique"):
        Vocabulary([3, 3])


def test_damaged_files_raise_clear_errors(tmp_path):
    random_bytes = tmp_path / "random.h5"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        Vocabulary.load(random_bytes)
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(ValueError, match="does not hold a keras_yt Vocabulary"):
        Vocabulary.load(empty)
    path = tmp_path / "dup.h5"
    Vocabulary([1, 2]).save(path)
    with h5py.File(path, "r+") as f:
        f["ids"][1] = 1
    with pytest.raises(ValueError, match="invalid Vocabulary.*unique"):
        Vocabulary.load(path)
