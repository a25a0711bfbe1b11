"""Loading TensorFlow without its start-up log lines (used by the command line and the service).

TensorFlow >= 2.20 writes lines such as ``I0000 ... port.cc:153] oneDNN custom operations are on``
and ``cudart_stub.cc:31] Could not find cuda drivers`` to file descriptor 2 while it loads, before
absl logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them. `load_tensorflow`
sets the log levels, imports TensorFlow (and Keras) with the process' standard error redirected
to a temporary file, and writes back whatever was not such a log line.
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


def quiet_environment() -> None:
    """Log levels for TensorFlow's C++ and Python loggers, set before TensorFlow loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


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


def load_tensorflow() -> None:
    """Imports TensorFlow and Keras once, quietly (see the module docstring)."""
    quiet_environment()
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    with native_stderr_filtered():
        import keras  # noqa: F401
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
