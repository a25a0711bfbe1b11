"""`fit` / `train_on_batch` give the same weights on JAX (row-sparse train step) as on TensorFlow
(row-sparse `tf.IndexedSlices`), and JAX's step updates only the rows read."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # two subprocesses (TensorFlow and JAX), about a minute

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "backend", "fit_weights_worker.py")


def _weights(backend: str, out: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, WORKER, out], check=True, env=env, capture_output=True,
                   timeout=600)
    return dict(np.load(out))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return (_weights("tensorflow", str(folder / "tf.npz")),
            _weights("jax", str(folder / "jax.npz")))


def test_jax_fit_equals_tensorflow_fit(both):
    tf_weights, jax_weights = both
    assert sorted(tf_weights) == sorted(jax_weights)
    for name in tf_weights:
        # bfloat16 moments (stored as bits on JAX) are rounded the same way on both backends, but
        # a float32 difference of one ulp can round a moment to the neighbouring bfloat16.
        atol = 2e-5 if name.startswith(("adam_compact/", "adam_bfloat16/")) else 2e-6
        np.testing.assert_allclose(jax_weights[name], tf_weights[name], rtol=1e-4, atol=atol,
                                   err_msg=name)


def test_untouched_rows_keep_their_values_on_jax(both):
    _, jax_weights = both
    # Lazy Adam: rows of the watch table that no batch read keep their initial values.
    init = np.random.default_rng(1).normal(scale=0.1, size=(997, 8)).astype("float32")
    rng = np.random.default_rng(0)
    read = np.unique(rng.integers(0, 997, (64, 6)))
    untouched = np.setdiff1d(np.arange(997), read)
    np.testing.assert_array_equal(jax_weights["adam/0"][untouched], init[untouched])
    assert not np.allclose(jax_weights["adam/0"][read[read > 0]], init[read[read > 0]])
