"""`SwappableRecommender`: a `Recommender` that can be pointed at another run without downtime."""

from __future__ import annotations

import os
import threading
import time
from typing import Any


class SwappableRecommender:
    """Holds the `Recommender` being served and swaps in another run's atomically.

    `reload(run)` loads and warms the new run's `Recommender` while the current one keeps
    answering, then replaces it with a single reference assignment: a request reads `current`
    once and is answered entirely by that recommender, so requests in flight during a swap are
    answered by the old run and later ones by the new run, none fails. A run that cannot be loaded
    raises and leaves the current one served. Reloads are serialised; `reload` while another is
    loading raises `RuntimeError`.

    Args:
        run: the run folder to serve first (path or `RunFolder`), or a loaded `Recommender`.
        search: `"auto"`, `"exact"` or `"index"` (see `Recommender`), used for every run.
        warm: warm each run before it is served (one query: no compilation on a request).
        tower_in_background: load the first run's user tower in the background (see
            `Recommender`).

    Example:
    >>> from keras_yt.demo import run_demo
    >>> import tempfile, contextlib, io
    >>> out = tempfile.mkdtemp() + "/demo"
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     _ = run_demo(out=out, size="tiny", epochs=1, ranker=False)
    >>> served = SwappableRecommender(out)
    >>> before = served.fingerprint
    >>> info = served.reload(out)  # the same run again: same model
    >>> info["model"] == before, len(served.recommend(user=1, k=3))
    (True, 3)
    """

    def __init__(self, run: Any, search: str = "auto", warm: bool = True,
                 tower_in_background: bool = False):
        from keras_yt.serving.recommender import Recommender

        self.search_option = search
        self.warm = warm
        # the first run only: a reload swaps in a run whose tower is loaded and warm
        self._current = run if isinstance(run, Recommender) else Recommender(
            run, search, warm, tower_in_background=tower_in_background)
        self._source = os.fspath(self._current.run.path)
        self._reloading = threading.Lock()
        self.reloads = 0

    @property
    def current(self):
        """The `Recommender` serving now (read it once per request)."""
        return self._current

    @property
    def source(self) -> str:
        """The run folder path the current recommender was loaded from."""
        return self._source

    @property
    def fingerprint(self) -> str:
        return self._current.fingerprint

    def reload(self, run: Any = None) -> dict:
        """Loads `run` (default: the path served now, read again) and swaps it in.

        Args:
            run: a run folder path, or None to re-read the current path (e.g. a symlink that
                was pointed at a new run, or a folder that `keras-yt train` replaced).

        Returns:
            `{"model": new fingerprint, "previous": old fingerprint, "run": path,
            "seconds": load time}`.

        Raises:
            ValueError: `run` is not a loadable run folder (the current run stays served).
            RuntimeError: another reload is in progress.
        """
        from keras_yt.serving.recommender import Recommender

        if not self._reloading.acquire(blocking=False):
            raise RuntimeError("a reload is already in progress")
        try:
            path = self._source if run is None else os.fspath(run)
            started = time.perf_counter()
            fresh = Recommender(path, self.search_option, self.warm)
            previous = self._current
            self._current, self._source = fresh, path  # the swap: one reference assignment
            self.reloads += 1
            return {"model": fresh.fingerprint, "previous": previous.fingerprint, "run": path,
                    "seconds": time.perf_counter() - started}
        finally:
            self._reloading.release()

    # The Recommender interface, each call answered by one recommender.

    def recommend(self, *args, **kwargs):
        return self._current.recommend(*args, **kwargs)

    def recommend_users(self, *args, **kwargs):
        return self._current.recommend_users(*args, **kwargs)

    def describe(self) -> dict:
        return self._current.describe()

    @property
    def load_seconds(self) -> float:
        return self._current.load_seconds
