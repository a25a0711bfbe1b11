"""`.keras` files move between backends: trained on this backend, reloaded on the other one (and
the reverse) in a subprocess, with the same outputs (atol 1e-5)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import REPO
from tests.models import cross_backend_worker as worker

OTHER = {"tensorflow": "jax", "jax": "tensorflow"}.get(keras.backend.backend())
pytestmark = pytest.mark.skipif(OTHER is None, reason="cross-backend tests pair TF and JAX")


def run_worker(backend: str, *args: str) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "tests.models.cross_backend_worker", *args],
        env=env, cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("kind", ["candidate", "ranker"])
def test_trained_here_reloads_on_the_other_backend(kind, tmp_path):
    worker.train(kind, str(tmp_path))
    expected = np.load(tmp_path / "predictions.npy")
    run_worker(OTHER, "predict", kind, str(tmp_path / "model.keras"), str(tmp_path / "other.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "other.npy"), expected, atol=1e-5, rtol=0)


# The candidate case trains in a fresh process of the other backend (its import and compile,
# about 100 s on 2 cores): slow, run by CI's slow line.
@pytest.mark.parametrize("kind", [pytest.param("candidate", marks=pytest.mark.slow), "ranker"])
def test_trained_on_the_other_backend_reloads_here(kind, tmp_path):
    run_worker(OTHER, "train", kind, str(tmp_path))
    expected = np.load(tmp_path / "predictions.npy")
    model = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(worker.predict(model, kind), expected, atol=1e-5, rtol=0)
    # The reloaded model trains on here too (its optimizer state came along).
    x, y = worker.data(kind)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
