"""Loading TensorFlow without its start-up log lines (the command line, the service and the
Python API: the first `import keras` after `import keras_yt`, see `quiet_keras_import`).

TensorFlow >= 2.20 writes lines such as ``I0000 ... port.cc:153] oneDNN custom operations are on``
and ``cudart_stub.cc:31] Could not find cuda drivers`` to file descriptor 2 while it loads, before
absl logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them. `load_tensorflow`
sets the log levels, imports TensorFlow (and Keras) with the process' standard error redirected
to a temporary file, and writes back whatever was not such a log line. `KERAS_YT_VERBOSE=1`
(`keras-yt --verbose`) keeps every line and the progress bars.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

_LOG_LINE = re.compile(
    rb"^([IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\]|WARNING: All log messages before absl"
    rb"|To enable the following instructions|E0000 |W0000 |I0000 )"
)


_USER_LOG_LEVEL: list = []  # TF_CPP_MIN_LOG_LEVEL as the user set it (None: unset)


def quiet_environment() -> None:
    """Log levels for TensorFlow's C++ and Python loggers, set before TensorFlow loads."""
    if not _USER_LOG_LEVEL:
        _USER_LOG_LEVEL.append(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def verbose_environment() -> None:
    """`keras-yt --verbose`: TensorFlow's log level back to the user's (or its default), log
    lines and progress bars kept (`KERAS_YT_VERBOSE=1`, seen by child processes as well)."""
    os.environ["KERAS_YT_VERBOSE"] = "1"
    level = _USER_LOG_LEVEL[0] if _USER_LOG_LEVEL else os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if level is None:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = level


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Redirects file descriptor 2 while the block runs; re-emits non-log lines afterwards."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. pytest's captured stderr
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().splitlines(keepends=True)
                    if not _LOG_LINE.match(line)]
            if kept:
                os.write(fd, b"".join(kept))


def verbose() -> bool:
    """Whether TensorFlow's log lines and progress bars are wanted (`KERAS_YT_VERBOSE=1`, set
    by `keras-yt --verbose`)."""
    return os.environ.get("KERAS_YT_VERBOSE", "") not in ("", "0")


def show_progress() -> bool:
    """Progress bars (tqdm) only on a terminal: redirected output gets no escape codes."""
    if verbose():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _probe_devices() -> None:
    # CUDA is probed on first use of the devices ("failed call to cuInit" without a GPU, shown
    # when TF_CPP_MIN_LOG_LEVEL < 3): probe it while the lines are filtered.
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        with contextlib.suppress(Exception):
            tf.config.list_physical_devices()


class _QuietLoader:
    """Wraps the loader of the `keras` package: its module runs with the log lines filtered."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with native_stderr_filtered():
            self._loader.exec_module(module)
            _probe_devices()

    def __getattr__(self, name):  # resources, is_package, ...: the wrapped loader's
        return getattr(self._loader, name)


class _QuietKerasFinder:
    """Meta path finder for the first `import keras` after `import keras_yt` (Python API)."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        if verbose():
            return None
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_keras_import() -> None:
    """Makes the first `import keras` (by any keras_yt module, or by the user after
    `import keras_yt`) drop TensorFlow's start-up log lines; the environment is left as it is.
    `KERAS_YT_VERBOSE=1` keeps them."""
    if "keras" in sys.modules or verbose():
        return
    if not any(isinstance(f, _QuietKerasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietKerasFinder())


def load_tensorflow() -> None:
    """Imports TensorFlow and Keras once, quietly (see the module docstring)."""
    if verbose():
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras  # noqa: F401
        return
    quiet_environment()
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    with native_stderr_filtered():
        import keras  # noqa: F401
        import tensorflow as tf

        _probe_devices()

    tf.get_logger().setLevel("ERROR")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
