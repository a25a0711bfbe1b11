"""Shared test set-up: backend, quiet logs, MovieLens files (the layer checks: tests/testing.py)."""

import os
import subprocess
import sys
from pathlib import Path

# The backend under test: KERAS_BACKEND from the environment (CI runs both), TensorFlow if unset.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX sees 4 logical CPU devices (read when jax is first imported, below through keras), as
# keras' own distribution tests do: tests/test_distribution.py shards over them. Nothing else is
# distributed unless a test sets a keras.distribution.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")

from keras_yt._quiet import quiet_keras_import  # noqa: E402

quiet_keras_import()  # Keras and TensorFlow load without their start-up log lines

import keras  # noqa: E402

if keras.backend.backend() == "tensorflow":
    # Two logical CPU devices for the tf.distribute.MirroredStrategy tests
    # (tests/models/test_mirrored_strategy.py), as Keras' own CI does. TensorFlow accepts this only
    # before it initialises its devices, i.e. here, when pytest imports this file in each
    # process. Ops and variables without a device scope stay on the first CPU, so the other tests
    # run as before.
    import tensorflow as tf

    try:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * 2,
        )
    except RuntimeError:  # devices already initialised: the MirroredStrategy tests skip
        pass
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (CI must not depend on luck); their ranges
# are what makes them meaningful.
settings.register_profile("keras_yt", derandomize=True)
settings.load_profile("keras_yt")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KERAS_YT_SHARED", REPO.parent / "shared"))


def run_python(code: str, *args: str, backend: str = "jax") -> subprocess.CompletedProcess:
    """Runs `code` in a new Python process on Keras backend `backend`, with `args` as
    `sys.argv[1:]` and the repository importable (its output captured, as text)."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=REPO,
                          capture_output=True, text=True)


def pytest_collection_modifyitems(config, items):
    """Skips tests marked `tf_only` (TensorFlow-specific behaviour) on the other backends."""
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow-only, backend is {keras.backend.backend()}")
    for item in items:
        if "tf_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory) -> Path:
    """Folder holding the real MovieLens-100K `u.data` / `u.user` (laid out by the shared script).

    Uses the Keras cache (`~/.keras/datasets/ml-100k`) when the files are already there; otherwise
    runs `../shared/data/get-movielens-100k`, which checks the files' md5 sums.
    """
    script = SHARED / "data" / "get-movielens-100k"
    if not script.exists():
        pytest.fail(f"MovieLens helper script not found at {script}; set KERAS_YT_SHARED")
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.fail(f"get-movielens-100k failed: {out.stderr.strip()}")
    return Path(out.stdout.strip().splitlines()[-1])


from tests.runs import tiny_run  # noqa: E402, F401  (session fixture: a small trained run folder)
