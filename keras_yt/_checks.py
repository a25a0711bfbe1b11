"""Argument checks shared by the public classes: each error names the argument, the value and what
was expected."""

from __future__ import annotations

import numbers

import numpy as np


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def hidden_units(value, allow_empty: bool = False) -> tuple:
    units = tuple(value) if isinstance(value, (list, tuple)) else None
    if units is None or (not units and not allow_empty) or any(
        isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 1 for u in units
    ):
        raise ValueError(
            f"hidden_units must be a {'' if allow_empty else 'non-empty '}list of positive "
            f"integers, got {value!r}"
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


def feature_model_args(num_videos, video_embedding_dim, max_history, units, dropout,
                       categorical, continuous, allow_no_tower: bool = False
                       ) -> tuple[tuple, dict, tuple]:
    """The constructor arguments `CandidateGenerator` and `Ranker` share, checked.

    Args (in the models' words): `num_videos` (>= 2), `video_embedding_dim`, `max_history`,
    `hidden_units` (here `units`), `dropout`, `categorical_features` (`categorical`),
    `continuous_features` (`continuous`); `allow_no_tower` accepts an empty `hidden_units`.

    Returns:
        `(hidden_units, categorical_features, continuous_features)` in their checked form: a
        tuple of ints, a `{name: {"input_dim": int, "output_dim": int}}` dict, a tuple of names.
    """
    positive_int("num_videos", num_videos, minimum=2)
    positive_int("video_embedding_dim", video_embedding_dim)
    positive_int("max_history", max_history)
    units = hidden_units(units, allow_empty=allow_no_tower)
    rate("dropout", dropout)
    return (units, categorical_features(categorical),
            feature_names("continuous_features", continuous))


def has_features(features, names, owner: str) -> None:
    if not isinstance(features, dict):
        raise ValueError(f"{owner} takes a dict of named features, got {type(features).__name__}")
    missing = [n for n in names if n not in features]
    if missing:
        raise ValueError(
            f"{owner} is missing input feature(s) {missing}; got features {sorted(features)}"
        )


# ------------------------------------------------------------------------ numpy value checks
# Run once on numpy inputs at the public entry points (fit / evaluate / predict, layer calls,
# example generation), never inside the training graph.

# Integer dtypes narrower than int64, whose range a numpy value must fit before it is cast.
_INT_RANGES = {
    "int8": (-(2**7), 2**7),
    "int16": (-(2**15), 2**15),
    "int32": (-(2**31), 2**31),
    "uint8": (0, 2**8),
    "uint16": (0, 2**16),
    "uint32": (0, 2**32),
}


def is_numpy_like(value) -> bool:
    """numpy arrays, lists and scalars: values that can be checked without running the graph."""
    return isinstance(value, (np.ndarray, np.generic, list, tuple, int, float, str, bytes))


def concrete(value):
    """A numpy copy of `value` when its values are known now (numpy, or an eager tensor), else
    None (a symbolic or traced tensor inside a graph, a ragged tensor): checks run on eager
    calls and never inside traced graphs."""
    if is_numpy_like(value):
        return np.asarray(value)
    import keras

    if isinstance(value, keras.KerasTensor) or not keras.ops.is_tensor(value):
        return None
    try:
        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:  # symbolic (tf.function) or traced (jax.jit): no values to check
        return None


def _examples(values, mask, limit: int = 5) -> list:
    return np.asarray(values)[mask].ravel()[:limit].tolist()


def int_array(name: str, value, low: int | None = None, high: int | None = None,
              what: str = "integer ids"):
    """`value` as an integer numpy array whose values lie in `[low, high)`.

    Floats are accepted only when every value is a whole number; strings, NaN and fractions
    raise a ValueError naming `name`, the values received and the range expected.
    """
    array = np.asarray(value)
    expected = what
    if low is not None or high is not None:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        expected = f"{what} in [{lo}, {hi})"
    if array.dtype.kind in "iu":
        pass
    elif array.dtype.kind == "f":
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            raise ValueError(
                f"{name} must hold {expected}, got non-integer values "
                f"{_examples(array, ~whole)} (dtype {array.dtype})"
            )
        array = array.astype(np.int64)
    else:
        sample = array.ravel()[:3].tolist() if array.size else []
        raise ValueError(
            f"{name} must hold {expected}, got dtype {array.dtype} (e.g. {sample!r})"
        )
    if array.size and (low is not None or high is not None):
        bad = np.zeros(array.shape, bool)
        if low is not None:
            bad |= array < low
        if high is not None:
            bad |= array >= high
        if bad.any():
            raise ValueError(
                f"{name} must hold {expected}, got {int(bad.sum())} value(s) outside it, e.g. "
                f"{_examples(array, bad)}"
            )
    return array


def float_array(name: str, value, low: float | None = None, what: str = "finite numbers"):
    """`value` as a float numpy array of finite values (`>= low` when given)."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        sample = array.ravel()[:3].tolist() if array.size else []
        raise ValueError(f"{name} must hold {what}, got dtype {array.dtype} (e.g. {sample!r})")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if low is not None:
        bad |= array < low
    if bad.any():
        expected = what if low is None else f"{what} >= {low}"
        raise ValueError(
            f"{name} must hold {expected}, got {int(bad.sum())} invalid value(s), e.g. "
            f"{_examples(array, bad)}"
        )
    return array


def feature_array(name: str, value, shape: tuple, dtype: str, high: int | None = None) -> None:
    """Checks one numpy feature against its spec `(shape_without_batch, dtype)`.

    Integer features must hold whole numbers that fit `dtype` (and are in `[0, high)` when
    `high` is given); float features must be finite; string features must be strings. Tensors
    and other non-numpy values are left to Keras (their dtype is checked when known).
    """
    if not is_numpy_like(value):
        kind = getattr(getattr(value, "dtype", None), "name", None) or str(
            getattr(value, "dtype", "")
        )
        if dtype != "string" and "string" in kind:
            raise ValueError(f"feature {name!r} must hold {dtype} values, got a string tensor")
        return
    array = np.asarray(value)
    if dtype == "string":
        if array.dtype.kind not in "USO":
            raise ValueError(
                f"feature {name!r} must hold strings, got dtype {array.dtype}"
            )
        return
    if shape:  # a sequence: (batch, length), any length
        ok = array.ndim == 2
        expected = f"(batch, {shape[0]})"
    else:  # a scalar per example: (batch,) or (batch, 1)
        ok = array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)
        expected = "(batch,) or (batch, 1)"
    if not ok:
        raise ValueError(f"feature {name!r} must have shape {expected}, got shape {array.shape}")
    if "int" in dtype:
        low, top = _INT_RANGES.get(dtype, (None, None))
        if high is not None:
            low, top = 0, high if top is None else min(high, top)
        int_array(f"feature {name!r}", array, low, top)
    else:
        float_array(f"feature {name!r}", array)


def labels(name: str, value, num_classes: int):
    """Class labels (video ids) must be integers in `[1, num_classes)` (0 is padding)."""
    return int_array(name, value, 1, num_classes, what="video ids")


def softmax_inputs(layer, u, labels) -> None:
    """Checks numpy user vectors (finite) and labels (video ids in `[1, num_classes)`) given to
    `SampledSoftmax`; tensors pass unchecked (values born in the graph)."""
    if is_numpy_like(u):
        float_array(f"{layer.name} user vectors u", u)
    if labels is not None and is_numpy_like(labels):
        int_array(f"{layer.name} labels", labels, 1, layer.num_classes, what="video ids")
