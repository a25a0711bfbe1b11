"""The one place keras_yt imports pynndescent: after pointing numba at a persistent cache.

`configure_numba_cache()` and `default_cache_dir()` are public as
`keras_yt.serving.numba_cache.*`; `import_pynndescent()` is what `CandidateIndex` calls. This
module imports nothing of keras_yt, so that `candidate_index` (which needs pynndescent) and
`numba_cache` (whose `warm_up` builds a `CandidateIndex`) both import from below.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """`$KERAS_HOME/keras_yt/numba_cache`, with Keras's fallback to `/tmp/.keras`.

    Returns:
        The folder path (not created).

    Example:
    >>> default_cache_dir().endswith(os.path.join("keras_yt", "numba_cache"))
    True
    """
    keras_home = os.environ.get("KERAS_HOME")
    if not keras_home:
        base = os.path.expanduser("~")
        if not os.access(base, os.W_OK):
            base = "/tmp"
        keras_home = os.path.join(base, ".keras")
    return os.path.join(keras_home, "keras_yt", "numba_cache")


def configure_numba_cache() -> str | None:
    """Sets `NUMBA_CACHE_DIR` to `default_cache_dir()` unless it is already set.

    Must run before pynndescent is imported to take effect (its functions pick their cache
    folder when they are defined); if numba alone is already imported, its `config.CACHE_DIR` is
    set too. If pynndescent is already imported nothing changes and a debug message is logged.

    Returns:
        The cache folder in effect (`NUMBA_CACHE_DIR`), or None if numba's default is used.

    Example:
    >>> configure_numba_cache() == os.environ.get("NUMBA_CACHE_DIR")
    True
    """
    if "NUMBA_CACHE_DIR" in os.environ:
        return os.environ["NUMBA_CACHE_DIR"]
    if "pynndescent" in sys.modules:
        logger.debug("pynndescent already imported; NUMBA_CACHE_DIR not changed")
        return None
    path = default_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:  # read-only home: numba's default location applies
        logger.warning("cannot create numba cache folder %s: %s", path, err)
        return None
    os.environ["NUMBA_CACHE_DIR"] = path
    if "numba" in sys.modules:  # numba read the environment at import: tell it directly
        sys.modules["numba"].config.CACHE_DIR = path
    return path


def import_pynndescent():
    """Imports pynndescent after `configure_numba_cache()` (the only place keras_yt does)."""
    configure_numba_cache()
    import pynndescent

    return pynndescent
