"""keras_yt has no import cycle: every module imports only from modules below it.

The graph is read from the source with `ast` by `docs/make_architecture.py` (the script that
draws the floors in docs/architecture.md), function-level (lazy) imports included: a lazy import
hides a cycle from Python but not from a reader.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
_spec = importlib.util.spec_from_file_location("make_architecture", DOCS / "make_architecture.py")
make_architecture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_architecture)


def test_keras_yt_has_no_import_cycle():
    graph = make_architecture.import_graph()
    assert "keras_yt.models.candidate_generator" in graph and len(graph) > 40
    cycle = make_architecture.find_cycle(graph)
    assert cycle is None, (
        "import cycle: " + " -> ".join(cycle) + ". Move what both modules need to the lower one "
        "(or a new low-level module) so that each imports only from below (docs/architecture.md)"
    )


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "keras_yt"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_a_lazy_import_cycle_is_found(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "low.py": "def f():\n    from keras_yt.sub.high import g\n",
        "sub/__init__.py": "from keras_yt.sub.high import g\n",
        "sub/high.py": "from keras_yt import low\nimport numpy\n",
    })
    graph = make_architecture.import_graph(root)
    assert graph == {"keras_yt": set(), "keras_yt.low": {"keras_yt.sub.high"},
                     "keras_yt.sub": {"keras_yt.sub.high"}, "keras_yt.sub.high": {"keras_yt.low"}}
    cycle = make_architecture.find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"keras_yt.low", "keras_yt.sub.high"}


def test_relative_and_package_imports_resolve(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "",
        "sub/__init__.py": "from .b import x\nfrom .. import a\n",
        "sub/b.py": "from keras_yt.sub import c\nimport keras_yt.a\nfrom . import c as d\n",
        "sub/c.py": "",
    })
    graph = make_architecture.import_graph(root)
    assert graph["keras_yt.sub"] == {"keras_yt.sub.b", "keras_yt.a"}
    assert graph["keras_yt.sub.b"] == {"keras_yt.sub.c", "keras_yt.a"}
    assert make_architecture.find_cycle(graph) is None
    assert make_architecture.floors(graph) == {
        "keras_yt": 0, "keras_yt.a": 0, "keras_yt.sub.c": 0, "keras_yt.sub.b": 1, "keras_yt.sub": 2}
