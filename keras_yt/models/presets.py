"""Presets: model configurations stored as JSON in the package's `zoo/` folder."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def preset_names() -> list[str]:
    """Names of the presets shipped with keras_yt (files `zoo/<name>.json`).

    Returns:
        The sorted preset names.

    Example:

    >>> "youtube_paper_candidate" in preset_names()
    True
    """
    return sorted(p.name[: -len(".json")] for p in _zoo().iterdir() if p.name.endswith(".json"))


def load_preset(name_or_path: str | Path) -> dict:
    """Reads a preset: a shipped name (see `preset_names()`) or the path of a JSON file.

    Args:
        name_or_path: a name from `preset_names()` or the path of a `.json` preset file.

    Returns:
        The preset dict: `{"class_name": str, "description": str, "config": dict}`.

    Example:

    >>> load_preset("youtube_paper_candidate")["config"]["hidden_units"]
    [1024, 512, 256]
    """
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise ValueError(f"preset file {str(path)!r} does not exist")
        source = path
    else:
        source = _zoo() / f"{name_or_path}.json"
        if not source.is_file():
            raise ValueError(
                f"unknown preset {str(name_or_path)!r}; expected one of {preset_names()} "
                "or the path of a .json preset file"
            )
    try:
        preset = json.loads(source.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"preset file {str(source)!r} is not valid JSON: {err}") from err
    if not isinstance(preset, dict) or not isinstance(preset.get("config"), dict):
        raise ValueError(
            f"preset {str(source)!r} must be a JSON object with a 'config' object, got "
            f"{type(preset).__name__}" + (
                f" with keys {sorted(preset)}" if isinstance(preset, dict) else ""
            )
        )
    return preset


def _zoo():
    try:
        return resources.files("keras_yt.zoo")
    except ModuleNotFoundError:  # running from a source checkout without installing
        return Path(__file__).resolve().parents[2] / "zoo"


class PresetMixin:
    """Adds `from_preset` to a model class whose presets carry its `class_name`."""

    @classmethod
    def from_preset(cls, name_or_path: str | Path, **overrides):
        """Builds the model from a preset, with keyword `overrides` of its config.

        Args:
            name_or_path: a preset name from `keras_yt.models.preset_names()` (e.g.
                `"youtube_paper_candidate"`, `"movielens_candidate"`, `"tiny_candidate"`) or the
                path of a JSON preset file.
            **overrides: config entries to replace (e.g. `num_videos=10_000`).

        Returns:
            A new, unbuilt model.
        """
        preset = load_preset(name_or_path)
        if preset.get("class_name") != cls.__name__:
            raise ValueError(
                f"preset {str(name_or_path)!r} is for {preset.get('class_name')!r}, "
                f"not {cls.__name__!r}"
            )
        try:
            return cls(**{**preset["config"], **overrides})
        except TypeError as err:  # unknown or missing config keys
            raise ValueError(
                f"preset {str(name_or_path)!r} does not fit {cls.__name__}: {err}"
            ) from err
