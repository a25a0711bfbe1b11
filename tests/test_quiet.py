"""Quiet by default: no TensorFlow start-up lines from the Python API, the CLI or the test set-up;
all of them with KERAS_YT_VERBOSE=1 / --verbose."""

import os
import subprocess
import sys

import pytest

LOG_LINE = ("I0000 ", "W0000 ", "E0000 ", "WARNING: All log messages", "cuInit")


def run_python(code: str, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_YT_VERBOSE")}
    environment.update(env, PYTHONPATH=os.getcwd())
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=600, check=False)


@pytest.mark.tf_only
def test_the_python_api_loads_tensorflow_without_its_log_lines():
    # Regression (issue 24, item 17): `import keras_yt.models` printed oneDNN / CUDA lines.
    code = ("import keras_yt.models, sys; import tensorflow as tf; "
            "tf.config.list_physical_devices(); print('loaded')")
    quiet = run_python(code)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "loaded", quiet.stderr[-2000:]
    assert not [line for line in quiet.stderr.splitlines() if line.startswith(LOG_LINE)], \
        quiet.stderr
    loud = run_python(code, KERAS_YT_VERBOSE="1")
    assert any(line.startswith(LOG_LINE) for line in loud.stderr.splitlines()), loud.stderr


@pytest.mark.tf_only
def test_the_test_set_up_and_the_cli_print_no_cuda_lines():
    # Regression: pytest's output ended with "failed call to cuInit" lines (TF_CPP_MIN_LOG_LEVEL
    # 2 shows errors, and CUDA is probed when the devices are first listed).
    result = run_python("import tests.conftest", TF_CPP_MIN_LOG_LEVEL="2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    result = run_python("from keras_yt._quiet import load_tensorflow; load_tensorflow(); "
                        "import tensorflow as tf; tf.config.list_physical_devices()",
                        TF_CPP_MIN_LOG_LEVEL="2")
    assert result.returncode == 0 and result.stderr == "", result.stderr
