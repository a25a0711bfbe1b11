"""Argument checks shared by the public classes: each error names the argument, the value and what
was expected."""

from __future__ import annotations

import numbers


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def hidden_units(value) -> tuple:
    units = tuple(value) if isinstance(value, (list, tuple)) else None
    if not units or any(
        isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 1 for u in units
    ):
        raise ValueError(
            f"hidden_units must be a non-empty list of positive integers, got {value!r}"
        )
    return tuple(int(u) for u in units)


def feature_names(name: str, value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must be a list of feature names (strings), got {value!r}")
    return tuple(value)


def categorical_features(value) -> dict:
    """`{name: {"input_dim": int >= 2, "output_dim": int >= 1}}`, validated."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(
            'categorical_features must be a dict {name: {"input_dim": int, "output_dim": int}}, '
            f"got {value!r}"
        )
    checked = {}
    for feature, spec in value.items():
        if not isinstance(spec, dict) or set(spec) != {"input_dim", "output_dim"}:
            raise ValueError(
                f"categorical_features[{feature!r}] must be a dict with keys 'input_dim' and "
                f"'output_dim', got {spec!r}"
            )
        checked[str(feature)] = {
            "input_dim": positive_int(f"categorical_features[{feature!r}]['input_dim']",
                                      spec["input_dim"], minimum=2),
            "output_dim": positive_int(f"categorical_features[{feature!r}]['output_dim']",
                                       spec["output_dim"]),
        }
    return checked


def has_features(features, names, owner: str) -> None:
    if not isinstance(features, dict):
        raise ValueError(f"{owner} takes a dict of named features, got {type(features).__name__}")
    missing = [n for n in names if n not in features]
    if missing:
        raise ValueError(
            f"{owner} is missing input feature(s) {missing}; got features {sorted(features)}"
        )
