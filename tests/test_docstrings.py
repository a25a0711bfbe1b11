"""Every `>>>` example in a keras_yt docstring runs, on the backend it is written for.

Each module's examples are collected with `doctest.DocTestFinder` (docstrings of the module, its
classes, functions, methods and properties defined there) and run in the module's namespace from
a temporary working directory, with `...` matching anything (doctest's ELLIPSIS: file paths in
messages vary). A failing example fails the test and prints what doctest printed. Examples that
need TensorFlow or JAX (the backend modules, the `keras.distribution` helpers) run only on that
backend; CI runs this file on both.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
from pathlib import Path

import keras
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_spec = importlib.util.spec_from_file_location("make_architecture", DOCS / "make_architecture.py")
make_architecture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_architecture)

# Modules whose examples are for one backend only.
BACKEND_OF = {
    "keras_yt.backend.jax": "jax",
    "keras_yt.backend.tensorflow": "tensorflow",
    "keras_yt.distribution": "jax",  # keras.distribution data/model parallelism is JAX-only
}
# Modules whose examples take a minute or more; the rest of this file takes ~40 s.
SLOW = {"keras_yt.demo", "keras_yt.serving.recommender"}  # both train the demo

MODULES_WITH_EXAMPLES = sorted(
    name for name, path in make_architecture.module_files().items()
    if ">>>" in path.read_text(encoding="utf-8")
)


def _params():
    out = []
    for name in MODULES_WITH_EXAMPLES:
        marks = [pytest.mark.slow] if name in SLOW else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


def test_modules_with_examples_are_found():
    assert len(MODULES_WITH_EXAMPLES) > 30
    assert "keras_yt.layers.embedding_bag" in MODULES_WITH_EXAMPLES


@pytest.mark.parametrize("module_name", _params())
def test_docstring_examples_run(module_name, tmp_path, monkeypatch):
    backend = BACKEND_OF.get(module_name)
    if backend is not None and keras.backend.backend() != backend:
        pytest.skip(f"{module_name}'s examples are for {backend}, the backend is "
                    f"{keras.backend.backend()}")
    module = importlib.import_module(module_name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    examples = sum(len(t.examples) for t in tests)
    assert examples, f"{module_name} has '>>>' in its source but no example doctest finds"
    monkeypatch.chdir(tmp_path)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in sorted(tests, key=lambda t: t.lineno or 0):
        runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, (
        f"{result.failed} of {examples} examples failed:\n{report.getvalue()}")
