"""`keras_yt.backend`: one interface, one module per backend, picked by the Keras backend."""

import importlib
import inspect

import keras
import numpy as np
import pytest

from keras_yt import backend
from keras_yt.backend import generic
from tests.conftest import run_python


def test_the_module_of_the_current_backend_is_picked():
    expected = {"tensorflow": "tensorflow", "jax": "jax"}.get(keras.backend.backend(), "generic")
    assert backend.name == keras.backend.backend()
    module = importlib.import_module(f"keras_yt.backend.{expected}")
    for name in backend.INTERFACE:
        assert getattr(backend, name) is getattr(module, name), name


@pytest.mark.parametrize("module_name", ["tensorflow", "jax", "generic"])
def test_every_backend_module_has_the_whole_interface_with_the_same_signatures(module_name):
    if module_name == "jax":
        pytest.importorskip("jax")
    module = importlib.import_module(f"keras_yt.backend.{module_name}")
    for name in backend.INTERFACE:
        function = getattr(module, name)
        reference = getattr(generic, name)
        assert list(inspect.signature(function).parameters) == list(
            inspect.signature(reference).parameters
        ), (module_name, name)


def test_importing_keras_yt_on_jax_leaves_tensorflow_out():
    pytest.importorskip("jax")
    code = (
        "import sys\n"
        "import keras_yt, keras_yt.cli, keras_yt.pipeline, keras_yt.demo\n"
        "from keras_yt import backend\n"
        "assert backend.name == 'jax', backend.name\n"
        "bad = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))\n"
        "assert not bad, bad[:5]\n"
    )
    result = run_python(code, backend="jax")
    assert result.returncode == 0, result.stderr[-2000:]


def test_generic_ragged_ids_raise_with_the_fix():
    import tensorflow as tf

    ragged = tf.ragged.constant([[1, 2], [3]])
    assert generic.is_ragged(ragged) and not generic.is_ragged(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"padded with id 0.*got a RaggedTensor"):
        generic.ragged_to_dense(ragged)


def test_generic_strings_to_tensors_tokenises_string_features_only():
    calls = []

    def tokenize(name, queries):
        calls.append((name, np.asarray(queries).shape))
        return np.ones((len(queries), 4), "int64")

    features = {
        "search_history": np.array([["a b", ""], ["c", "d"]]),
        "watch_history": np.array([[1, 2], [3, 0]], "int32"),
    }
    out = generic.strings_to_tensors(features, tokenize=tokenize)
    assert calls == [("search_history", (2, 2))]
    assert out["search_history"].dtype == np.int32 and out["search_history"].shape == (2, 4)
    assert out["watch_history"] is features["watch_history"]
    with pytest.raises(ValueError, match="'search_history' holds strings"):
        generic.strings_to_tensors(features)


def test_generic_row_updates_and_dense_gradients():
    variable = keras.Variable(np.arange(12, dtype="float32").reshape(4, 3))
    generic.scatter_assign_rows(variable, np.array([2, 0]), np.ones((2, 3), "float32"))
    generic.scatter_sub_rows(variable, np.array([3]), np.full((1, 3), 2.0, "float32"))
    expected = np.arange(12, dtype="float32").reshape(4, 3)
    expected[[2, 0]] = 1.0
    expected[3] -= 2.0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected)
    gradient = np.ones((4, 3), "float32")
    assert generic.row_sparse_parts(gradient) is None
    assert generic.unique_rows(gradient) is gradient


def test_generic_bag_sum_rows_matches_numpy():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(10, 3)).astype("float32")
    ids = np.array([[1, 4, 4, 0], [9, 0, 0, 0], [0, 0, 0, 0]])
    valid = ids > 0
    got = keras.ops.convert_to_numpy(generic.bag_sum_rows(table, ids, valid))
    want = np.stack([table[row[mask]].sum(0) for row, mask in zip(ids, valid)])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_rows_where_keeps_the_rows_or_all_of_them_where_shapes_are_static():
    keep = np.array([True, False, True, False])
    values = np.arange(8, dtype="float32").reshape(4, 2)
    labels = np.array([5, 6, 7, 8])
    got = [keras.ops.convert_to_numpy(t) for t in backend.rows_where(keep, values, labels)]
    if backend.name == "tensorflow":  # shapes may follow the data: the kept rows only
        np.testing.assert_array_equal(got[0], values[keep])
        np.testing.assert_array_equal(got[1], labels[keep])
    else:
        np.testing.assert_array_equal(got[0], values)
        np.testing.assert_array_equal(got[1], labels)
    assert generic.rows_where(keep, values, labels) == (values, labels)
