"""Renders docs/api.md from the docstrings of the public API.

    python docs/make_api.py            # rewrites docs/api.md
    python docs/make_api.py --check    # exits 1 if docs/api.md differs from what it would write

The public API is each subpackage's `__all__` (keras_yt.layers, losses, models, metrics,
optimizers, serving, data, datasets, evaluation, training, distribution, warm_start); a subpackage
without `__all__` contributes its public classes and functions. A module listed in `__all__` (e.g.
`keras_yt.datasets.movielens`) contributes its own public classes and functions. For each class
the public methods and properties that have a docstring are listed too.

Docstrings are Google style: `Args:` / `Call arguments:` / `Attributes:` / `Raises:` entries
become bullet lists, `Returns:` a paragraph, and `Example:` doctests a `pycon` code block.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib  # noqa: E402

SUBPACKAGES = ("layers", "losses", "models", "metrics", "optimizers", "serving", "data",
               "evaluation", "training",
               "datasets", "distribution", "warm_start")
LIST_SECTIONS = ("Args", "Arguments", "Call arguments", "Attributes", "Raises")
TEXT_SECTIONS = ("Returns", "Yields", "Note", "Notes")
EXAMPLE_SECTIONS = ("Example", "Examples")
API_MD = Path(__file__).resolve().parent / "api.md"


def public_names(module) -> list[str]:
    """`__all__`, or the public classes and functions defined in the package."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    prefix = module.__name__ + "."
    return sorted(
        name for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", "").startswith(prefix)
    )


def public_api() -> dict[str, list[tuple[str, object]]]:
    """`{subpackage: [(qualified name, object), ...]}`, modules expanded into their members."""
    out = {}
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"keras_yt.{sub}")
        entries = []
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                entries.append((f"{sub}.{name}", obj))
                for member, value in vars(obj).items():
                    if (member.startswith("_") or member in public_names(module)
                            or getattr(value, "__module__", None) != obj.__name__):
                        continue
                    if inspect.isclass(value) or inspect.isfunction(value):
                        entries.append((f"{sub}.{name}.{member}", value))
            else:
                entries.append((f"{sub}.{name}", obj))
        out[sub] = entries
    return out


def _signature(name: str, obj) -> str:
    """`name(params)` without private parameters, unquoted annotations, wrapped at 100."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    params, star_done = [], False
    for p in sig.parameters.values():
        if p.name.startswith("_") or p.name == "self" or p.name == "cls":
            continue
        if p.kind is p.KEYWORD_ONLY and not star_done:
            params.append("*")
        if p.kind in (p.VAR_POSITIONAL, p.KEYWORD_ONLY):
            star_done = True
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            annotation = p.annotation if isinstance(p.annotation, str) else (
                inspect.formatannotation(p.annotation))
            text += f": {annotation}"
        if p.default is not p.empty:
            text += (" = " if p.annotation is not p.empty else "=") + repr(p.default)
        params.append(text)
    returns = ""
    if sig.return_annotation is not sig.empty and not inspect.isclass(obj):
        ret = sig.return_annotation
        returns = f" -> {ret if isinstance(ret, str) else inspect.formatannotation(ret)}"
    one_line = f"{name}({', '.join(params)}){returns}"
    if len(one_line) <= 100:
        return one_line
    return f"{name}(\n" + "".join(f"    {p},\n" for p in params) + f"){returns}"


def render_docstring(doc: str | None) -> str:
    """Google-style docstring → markdown."""
    if not doc:
        return "*(no docstring)*\n"
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        header = line.strip().rstrip(":")
        if line.endswith(":") and not line.startswith(" ") and header in EXAMPLE_SECTIONS:
            i += 1
            block = []
            while i < len(lines) and (lines[i].startswith((" ", ">>>", "...")) or not lines[i]
                                      or not lines[i].rstrip().endswith(":")):
                block.append(lines[i])
                i += 1
            text = textwrap.dedent("\n".join(block)).strip("\n")
            out += ["**Example**", "", "```pycon", text, "```", ""]
            continue
        if line.endswith(":") and not line.startswith(" ") and header in LIST_SECTIONS:
            i += 1
            out += [f"**{header}**", ""]
            entry: list[str] = []
            while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                text = lines[i]
                if text.strip() and len(text) - len(text.lstrip()) <= 4:
                    if entry:
                        out.append(" ".join(entry))
                    key, sep, rest = text.strip().partition(":")
                    entry = [f"- `{key}`:{rest}" if sep and " " not in key.strip("*")
                             else f"- {text.strip()}"]
                elif text.strip():
                    entry.append(text.strip())
                i += 1
            if entry:
                out.append(" ".join(entry))
            out.append("")
            continue
        if line.endswith(":") and not line.startswith(" ") and header in TEXT_SECTIONS:
            i += 1
            body = []
            while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                body.append(lines[i])
                i += 1
            out += [f"**{header}:** " + " ".join(x.strip() for x in body if x.strip()), ""]
            continue
        if line.startswith("    ") and not out[-1:] == [""] and not out[-1].startswith(
                ("    ", "*", "-")):
            out.append("")  # an indented formula after a paragraph: a code block needs a gap
        out.append(line)
        i += 1
    return "\n".join(out).rstrip() + "\n"


def _members(cls) -> list[tuple[str, object]]:
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if isinstance(value, property):
            func = value.fget
        if not (callable(func) or isinstance(value, property)) or not getattr(func, "__doc__",
                                                                              None):
            continue
        members.append((name, value))
    # Inherited helpers users call (from_preset from the preset mixin).
    for name in ("from_preset",):
        if name not in vars(cls) and hasattr(cls, name) and name not in dict(members):
            members.append((name, inspect.getattr_static(cls, name)))
    return members


def render_object(qualname: str, obj) -> str:
    short = qualname.split(".")[-1]
    if inspect.ismodule(obj):
        return (f"### `{short}`\n\nmodule `keras_yt.{qualname}`\n\n"
                f"{render_docstring(obj.__doc__)}")
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return (f"### `{short}`\n\nConstant `keras_yt.{qualname}`:\n\n```\n{obj!r}\n```\n")
    kind = "class" if inspect.isclass(obj) else "function"
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        kind = "dataclass"
    text = [f"### `{short}`", "", f"{kind} `keras_yt.{qualname}`", "",
            "```python no-run: a signature, not a program",
            _signature(short, obj), "```", "", render_docstring(obj.__doc__)]
    if inspect.isclass(obj):
        for name, value in _members(obj):
            if isinstance(value, property):
                text += [f"#### `{short}.{name}` (property)", "",
                         render_docstring(value.fget.__doc__)]
                continue
            func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            shown = f"{short}.{name}" if isinstance(value, classmethod) else name
            text += [f"#### `{short}.{name}`", "",
                     "```python no-run: a signature, not a program",
                     _signature(shown, func), "```", "",
                     render_docstring(func.__doc__)]
    return "\n".join(text)


def render() -> str:
    api = public_api()
    parts = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/make_api.py` (do not edit by hand; edit "
        "the docstrings and rerun it). Conventions: video ids are integers in `[1, num_videos)`, "
        "`0` is padding everywhere; `u` is the user vector, `W` / `b` the output video "
        "embeddings and biases of the softmax. Concepts: [how serving works]"
        "(how-serving-works.md); paper sections: [paper map](paper-map.md).",
        "",
        "## Contents",
        "",
    ]
    for sub, entries in api.items():
        names = ", ".join(f"[`{q.split('.', 1)[1]}`](#{_anchor(q)})" for q, _ in entries)
        parts.append(f"* **keras_yt.{sub}**: {names}")
    parts.append("")
    for sub, entries in api.items():
        module = importlib.import_module(f"keras_yt.{sub}")
        doc = inspect.cleandoc(module.__doc__) if module.__doc__ else ""
        parts += [f"## keras_yt.{sub}", "", doc, ""] if doc else [f"## keras_yt.{sub}", ""]
        for qualname, obj in entries:
            parts += [render_object(qualname, obj), ""]
    return "\n".join(parts).rstrip() + "\n"


def _anchor(qualname: str) -> str:
    """GitHub's anchor of the `### \\`name\\`` heading of the entry."""
    return qualname.split(".")[-1].lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; fail if docs/api.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not API_MD.exists() or API_MD.read_text() != text:
            print("docs/api.md is out of date: run python docs/make_api.py", file=sys.stderr)
            return 1
        return 0
    API_MD.write_text(text)
    print(f"wrote {API_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
