"""Persistent numba cache for PyNNDescent, and `warm_up()` to fill it once per installation.

PyNNDescent compiles its kernels with numba. Functions marked `cache=True` are written to the
numba cache and reused by later processes, but only when the cache folder is writable and known
before `pynndescent` is first imported. `configure_numba_cache()` points `NUMBA_CACHE_DIR` at
`$KERAS_HOME/keras_yt/numba_cache` (default `~/.keras/keras_yt/numba_cache`) unless the user
already set `NUMBA_CACHE_DIR`; `keras_yt.serving` calls it before importing pynndescent.
"""

from __future__ import annotations

import os
import time

from keras_yt.serving._pynndescent import (  # noqa: F401  (public here)
    configure_numba_cache,
    default_cache_dir,
    import_pynndescent,
)


def warm_up(verbose: bool = False) -> dict[str, float]:
    """Builds, saves, loads and queries a tiny `CandidateIndex` to fill the numba cache.

    Run once after installation (`keras-yt warm-up`), so that later processes load compiled
    kernels from `NUMBA_CACHE_DIR` instead of compiling them: keras_yt's graph search
    (`CandidateIndex.query`, for built and for loaded indexes) then compiles nothing. PyNNDescent's
    graph construction, which it does not cache upstream, is still compiled once per process
    that builds an index.

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
    users = user_vectors(8, centers)  # 8 and 1: the batch and the single-query search kernels
    index.query(users, k=10, exclude=[[1], [], [2, 3], None] * 2)
    index.query(users[:1], k=10)
    step("query")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "warm_up.h5")
        index.save(path)
        loaded = CandidateIndex.load(path)  # its arrays are memory-mapped: other kernel types
        loaded.query(users, k=5)
        loaded.query(users[:1], k=5, exclude=[[1]])
    step("save_load")
    times["total"] = time.perf_counter() - t_all
    return times
