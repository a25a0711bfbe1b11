"""Persistent numba cache for PyNNDescent, and `warm_up()` to fill it once per installation.

PyNNDescent compiles its kernels with numba. Functions marked `cache=True` are written to the
numba cache and reused by later processes, but only when the cache folder is writable and known
before `pynndescent` is first imported. `configure_numba_cache()` points `NUMBA_CACHE_DIR` at
`$KERAS_HOME/keras_yt/numba_cache` (default `~/.keras/keras_yt/numba_cache`) unless the user
already set `NUMBA_CACHE_DIR`; `keras_yt.serving` calls it before importing pynndescent.
"""

from __future__ import annotations

import logging
import os
import sys
import time

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


def warm_up(verbose: bool = False) -> dict[str, float]:
    """Builds, saves, loads and queries a tiny `CandidateIndex` to fill the numba cache.

    Run once after installation (`keras-yt warm-up`), so that later processes load compiled
    kernels from `NUMBA_CACHE_DIR` instead of compiling them. Functions that PyNNDescent does not
    cache (graph construction specialised to the metric, the inner-product search closure) are
    still compiled once per process.

    Args:
        verbose: print each step with its time.

    Returns:
        Seconds spent per step: `import`, `build`, `query`, `save_load`, `total`, and the cache
        folder under `cache_dir` (a string, or None for numba's default).

    Example:
    >>> times = warm_up()  # doctest: +SKIP
    >>> sorted(times)  # doctest: +SKIP
    ['build', 'cache_dir', 'import', 'query', 'save_load', 'total']
    """
    import tempfile

    import numpy as np

    from keras_yt.serving._synthetic import clustered_corpus, user_vectors
    from keras_yt.serving.candidate_index import CandidateIndex

    times: dict = {"cache_dir": configure_numba_cache()}
    t_all = t = time.perf_counter()

    def step(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = now - t
        t = now
        if verbose:
            print(f"warm-up: {name} {times[name]:.1f} s", flush=True)

    import_pynndescent()
    step("import")
    W, b, centers = clustered_corpus(2000, 16, num_clusters=8, seed=0)
    index = CandidateIndex.from_embeddings(W, b, random_state=0, exhaustive_below=0)
    step("build")
    index.query(user_vectors(4, centers), k=10, exclude=[[1], [], [2, 3], None])
    step("query")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "warm_up.h5")
        index.save(path)
        CandidateIndex.load(path).query(np.ones((1, 16), np.float32), k=5)
    step("save_load")
    times["total"] = time.perf_counter() - t_all
    return times
