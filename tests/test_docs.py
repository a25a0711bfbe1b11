"""The documentation works: code blocks run, links resolve, every public name is documented.

* Every ```python block of README.md and docs/**/*.md runs, each in a fresh namespace from a
  temporary working directory. A block may opt out only as ```python no-run: <reason>; a reason
  "excerpt of <path>" additionally requires the block's lines to appear consecutively in that
  file, indentation aside (the tutorial scripts, which the slow tests below run).
* Every relative link and image of README.md and docs/**/*.md points to an existing file (and,
  for `file.md#anchor`, to an existing heading).
* Every public name (the `__all__` of each keras_yt subpackage, and the public classes and
  functions of modules listed there) appears in docs/api.md as a heading or in backticks, and
  docs/api.md is what `python docs/make_api.py` renders, and the import floors of
  docs/architecture.md are what `python docs/make_architecture.py` draws.
* Every public class and function has a docstring; every one has an `Example` section, except
  dataclass records (returned by loaders, documented field by field under `Attributes:`).
* `docs/make_figures.py --diagram` draws the diagram; the slow tests run both tutorial scripts
  and check that they print the numbers the tutorials quote.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MARKDOWN = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
SUBPACKAGES = ("layers", "losses", "models", "metrics", "optimizers", "serving", "data",
               "evaluation", "training",
               "datasets", "distribution")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<ticks>`{3,}|~{3,})(?P<info>[^`\n]*)$")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")


# ------------------------------------------------------------------ markdown parsing


def code_blocks(path: Path) -> list[dict]:
    """Fenced code blocks of a markdown file: info string, first line number, code."""
    blocks, current = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if current is None:
            if match:
                current = {"info": match["info"].strip(), "line": number, "lines": [],
                           "ticks": match["ticks"], "indent": len(match["indent"])}
        elif match and match["ticks"].startswith(current["ticks"]) and not match["info"].strip():
            blocks.append({"info": current["info"], "line": current["line"],
                           "code": "\n".join(current["lines"]) + "\n"})
            current = None
        else:
            current["lines"].append(line[current["indent"]:] if line.startswith(
                " " * current["indent"]) else line)
    assert current is None, f"{path}: unclosed code fence opened on line {current['line']}"
    return blocks


def python_blocks() -> list[tuple[Path, dict]]:
    out = []
    for path in MARKDOWN:
        for block in code_blocks(path):
            words = block["info"].split(None, 1)
            if words and words[0].lower() in ("python", "py", "python3"):
                block["options"] = words[1] if len(words) > 1 else ""
                out.append((path, block))
    return out


def _block_id(item) -> str:
    path, block = item
    return f"{path.relative_to(REPO)}:{block['line']}"


def _text_outside_code(path: Path) -> str:
    """The markdown text with fenced code blocks and inline code removed."""
    return re.sub(r"`[^`]*`", "", _text_outside_code_keeping_inline(path))


PYTHON_BLOCKS = python_blocks()
RUNNABLE = [item for item in PYTHON_BLOCKS if not item[1]["options"].startswith("no-run")]
SKIPPED = [item for item in PYTHON_BLOCKS if item[1]["options"].startswith("no-run")]


def test_markdown_has_python_blocks():
    assert RUNNABLE, "no runnable ```python block found in README.md / docs"


@pytest.mark.parametrize("item", RUNNABLE, ids=_block_id)
def test_python_block_runs(item, tmp_path, monkeypatch):
    path, block = item
    monkeypatch.chdir(tmp_path)
    code = compile(block["code"], f"{path.relative_to(REPO)}:{block['line']}", "exec")
    namespace = {"__name__": "__docs__"}
    exec(code, namespace)  # noqa: S102 - the point of the test


@pytest.mark.parametrize("item", SKIPPED, ids=_block_id)
def test_skipped_block_states_reason(item):
    """`no-run` needs a reason; an excerpt must be verbatim from the file it names."""
    path, block = item
    reason = block["options"][len("no-run"):].lstrip(" :")
    assert reason, f"{_block_id(item)}: ```python no-run needs a reason: no-run: <why>"
    excerpt = re.search(r"excerpt of (\S+)", reason)
    if excerpt:
        source = REPO / excerpt.group(1)
        assert source.is_file(), f"{_block_id(item)}: {source} does not exist"
        assert _contains_lines(source.read_text(encoding="utf-8"), block["code"]), (
            f"{_block_id(item)}: the excerpt is not verbatim in {excerpt.group(1)}; copy it again"
        )


def _contains_lines(text: str, excerpt: str) -> bool:
    """The excerpt's non-blank lines occur consecutively in `text` (indentation ignored)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    want = [line.strip() for line in excerpt.splitlines() if line.strip()]
    return any(lines[i:i + len(want)] == want for i in range(len(lines) - len(want) + 1))


# ------------------------------------------------------------------ links


def relative_links() -> list[tuple[Path, str]]:
    links = []
    for path in MARKDOWN:
        for match in LINK.finditer(_text_outside_code(path)):
            target = match["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                continue
            links.append((path, target))
    return links


def test_relative_links_resolve():
    links = relative_links()
    assert links, "no relative link found"
    broken = []
    for path, target in links:
        file, _, anchor = target.partition("#")
        resolved = path.parent / file
        if not resolved.exists():
            broken.append(f"{path.relative_to(REPO)}: {target}")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
            broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file (duplicates get -1, -2, ...)."""
    anchors, seen = set(), {}
    for line in _text_outside_code_keeping_inline(path).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match[1].replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _text_outside_code_keeping_inline(path: Path) -> str:
    kept, inside = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line)
        if inside is None and match:
            inside = match["ticks"]
        elif inside is not None and match and match["ticks"].startswith(inside) and not match[
                "info"].strip():
            inside = None
        elif inside is None:
            kept.append(line)
    return "\n".join(kept)


# ------------------------------------------------------------------ public API


def _public(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    # Without __all__ (reported as a gap): the classes and functions the package defines.
    prefix = module.__name__ + "."
    return sorted(
        name for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", "").startswith(prefix)
    )


def public_objects() -> list[tuple[str, object]]:
    """`(keras_yt.<sub>.<name>, object)` for every public name, modules expanded."""
    out = []
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"keras_yt.{sub}")
        names = _public(module)
        for name in names:
            obj = getattr(module, name)
            out.append((f"keras_yt.{sub}.{name}", obj))
            if inspect.ismodule(obj):
                for member, value in vars(obj).items():
                    if (not member.startswith("_") and member not in names
                            and getattr(value, "__module__", None) == obj.__name__
                            and (inspect.isclass(value) or inspect.isfunction(value))):
                        out.append((f"keras_yt.{sub}.{name}.{member}", value))
    return out


PUBLIC = public_objects()
DOCUMENTED = [(q, o) for q, o in PUBLIC if inspect.isclass(o) or inspect.isfunction(o)]


def test_public_names_in_api_md():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([^`\n]+)`", text))
    documented |= {h.strip().strip("`") for h in re.findall(r"^#+ (.+)$", text, re.M)}
    missing = [q for q, _ in PUBLIC if q.rsplit(".", 1)[1] not in documented
               and q not in documented]
    assert not missing, f"public names missing from docs/api.md: {missing}"


def test_api_md_is_current():
    result = subprocess.run([sys.executable, str(DOCS / "make_api.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


def test_architecture_floors_are_current():
    result = subprocess.run([sys.executable, str(DOCS / "make_architecture.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("qualname,obj", DOCUMENTED, ids=[q for q, _ in DOCUMENTED])
def test_public_docstring(qualname, obj):
    doc = obj.__doc__
    assert doc and doc.strip(), f"{qualname} has no docstring"
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        assert "Attributes:" in doc, f"{qualname} (a record) must document its Attributes:"
    else:
        assert re.search(r"^\s*Examples?:\s*$", doc, re.M), (
            f"{qualname} has no `Example:` section in its docstring"
        )


# ------------------------------------------------------------------ scripts


def test_make_figures_diagram(tmp_path):
    result = subprocess.run(
        [sys.executable, str(DOCS / "make_figures.py"), "--diagram", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "training_vs_serving.png").stat().st_size > 10_000


def _run_script(path: Path, tmp_path: Path) -> str:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_tutorial_candidate_generator_movielens(movielens_dir, tmp_path):
    out = _run_script(DOCS / "tutorials" / "candidate_generator_movielens.py", tmp_path)
    hr = {name: [float(v) for v in re.search(
        rf"{name}: hr@10 ([\d.]+), hr@50 [\d.]+, hr@100 ([\d.]+)", out).groups()]
        for name in ("model", "popularity")}
    assert hr["model"][0] > hr["popularity"][0] and hr["model"][1] > hr["popularity"][1], out
    assert float(re.search(r"recall@100 vs exact search ([\d.]+)", out)[1]) > 0.9, out


@pytest.mark.slow
def test_tutorial_ranker_synthetic(tmp_path):
    out = _run_script(DOCS / "tutorials" / "ranker_synthetic.py", tmp_path)
    auc = {name: float(re.search(rf"{re.escape(name)}: AUC ([\d.]+)", out)[1])
           for name in ("ranker (exp(logit))", "random")}
    assert auc["ranker (exp(logit))"] > auc["random"] + 0.1, out
