import json
import os
import subprocess
import sys

import pytest

from keras_yt.serving import numba_cache

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code: str, env: dict) -> str:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "KERAS_HOME")}
    full_env.update(env)
    full_env["PYTHONPATH"] = REPO
    out = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                         text=True, check=True, timeout=900)
    return out.stdout.strip().splitlines()[-1]


def test_default_cache_dir_respects_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert numba_cache.default_cache_dir() == str(tmp_path / "keras_yt" / "numba_cache")
    monkeypatch.delenv("KERAS_HOME")
    expected = os.path.join(os.path.expanduser("~"), ".keras", "keras_yt", "numba_cache")
    assert numba_cache.default_cache_dir() == expected


def test_importing_serving_is_cheap_and_configures_cache_lazily(tmp_path):
    code = (
        "import os, sys; import keras_yt.serving; "
        "assert not {'numba', 'pynndescent'} & set(sys.modules); "
        "from keras_yt.serving.numba_cache import configure_numba_cache; "
        "print(configure_numba_cache(), os.environ['NUMBA_CACHE_DIR'])"
    )
    got = _run(code, {"KERAS_HOME": str(tmp_path)})
    path = str(tmp_path / "keras_yt" / "numba_cache")
    assert got == f"{path} {path}" and os.path.isdir(path)


def test_user_numba_cache_dir_wins(tmp_path):
    code = (
        "import os; from keras_yt.serving.numba_cache import configure_numba_cache; "
        "print(configure_numba_cache())"
    )
    mine = str(tmp_path / "mine")
    assert _run(code, {"KERAS_HOME": str(tmp_path), "NUMBA_CACHE_DIR": mine}) == mine
    assert not (tmp_path / "keras_yt").exists()


@pytest.mark.slow
def test_warm_up_fills_cache_used_by_numba(tmp_path):
    # One process fills the cache and builds an index (PyNNDescent's construction, which it
    # does not cache, compiled once); a later process loads and queries it: with the warm cache
    # the graph search compiles nothing (every kernel call a cache hit; built and loaded indexes
    # share one specialisation, test_graph_search.py), and it never imports pynndescent.
    index_path = tmp_path / "index.h5"
    code = (
        "import numba, json; from keras_yt.serving import warm_up, CandidateIndex; "
        "from keras_yt.serving._synthetic import clustered_corpus; t = warm_up(); "
        "W, b, _ = clustered_corpus(3000, 8, seed=1); "
        "index = CandidateIndex.from_embeddings(W, b, random_state=0, exhaustive_below=0); "
        f"index.save({str(index_path)!r}); "
        "print(json.dumps([numba.config.CACHE_DIR, t['cache_dir']]))"
    )
    got = _run(code, {"KERAS_HOME": str(tmp_path)})
    path = str(tmp_path / "keras_yt" / "numba_cache")
    assert got == f'["{path}", "{path}"]'
    cached = [f for _, _, files in os.walk(path) for f in files if f.endswith(".nbi")]
    assert len(cached) > 10
    query = (
        "import json, sys, numpy as np; from keras_yt.serving import CandidateIndex; "
        "from keras_yt.serving import _graph_search as g; "
        f"index = CandidateIndex.load({str(index_path)!r}); u = np.ones((9, 8), np.float32); "
        "index.query(u, k=5); index.query(u[:1], k=5, exclude=[[1]]); "
        "stats = [dict(f.stats.cache_misses) for f in (g.search_batch, g.search_serial)]; "
        "print(json.dumps([stats, sum(sum(f.stats.cache_hits.values()) "
        "for f in (g.search_batch, g.search_serial)), 'pynndescent' in sys.modules]))"
    )
    misses, hits, imported = json.loads(_run(query, {"KERAS_HOME": str(tmp_path)}))
    assert misses == [{}, {}] and hits == 2 and not imported
