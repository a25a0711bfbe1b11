"""Checking and converting the columns of a log (private): integers, numbers, timestamps (Unix
seconds or ISO-8601 date-times) and plausible values, with errors that name the column and the
position. `keras_yt.data.io` reads files with them; `to_unix_seconds` is public there and in
`keras_yt.data`.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import numpy as np

MAX_ABS_SECONDS = 1e11
"""Timestamps are seconds with `|t| < 1e11` (about year 5138): a larger value is milliseconds
(or microseconds), or garbage, and is rejected with its line."""

# A number written as text: ASCII digits, optional sign, point and exponent (no "1_000", "nan",
# "inf", "0x10" or non-ASCII digits, which Python and numpy would otherwise accept).
_NUMBER = re.compile(r"[ \t]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
_NOT_NUMBER_CHAR = re.compile(r"[^0-9+\-.eE \t\x00]")


def _first_non_number(texts: np.ndarray) -> int | None:
    """Position of the first text holding a character no plain ASCII number has, or None.

    Malformed texts of number characters only ("1e5e5", "--1") fail numpy's parse afterwards."""
    values = texts.reshape(-1).tolist()
    if not _NOT_NUMBER_CHAR.search("\x00".join(values)):
        return None
    return next((i for i, t in enumerate(values) if not _NUMBER.fullmatch(t)), None)


def _implausible(name: str, values: np.ndarray) -> tuple[int, str] | None:
    """`(position, why)` of the first implausible timestamp / watch time, or None."""
    values = np.asarray(values, dtype=np.float64)
    if name == "timestamp":
        bad = ~(np.abs(values) < MAX_ABS_SECONDS)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            why = "Unix seconds with |t| < 1e11"
            if np.isfinite(values[i]) and values[i] >= MAX_ABS_SECONDS and values[i] < 1e17:
                why += " (it looks like milliseconds or microseconds: divide by 1000)"
            return i, why
    elif name == "watch_time":
        bad = ~(np.isfinite(values) & (values >= 0))
        if bad.any():
            return int(np.flatnonzero(bad)[0]), "finite numbers >= 0 (seconds watched)"
    return None


def _check_column(name: str, values: Any, kind: str, source: str) -> np.ndarray:
    """Converts one column to numpy, raising a ValueError that names it on a bad type."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"Column '{name}' of {source} must be one-dimensional, got shape {array.shape}"
        )
    if kind == "int":
        if array.dtype.kind in "iub":
            return array.astype(np.int64)
        if array.dtype.kind == "f" and array.size and np.all(np.isfinite(array)) and np.all(
            array == np.round(array)
        ):
            return array.astype(np.int64)
        if array.dtype.kind == "f" and array.size == 0:
            return array.astype(np.int64)
        raise ValueError(
            f"Column '{name}' of {source} must hold integers, got dtype {array.dtype}"
            + (f" (e.g. {array[:3].tolist()!r})" if array.size else "")
        )
    if kind == "time" and array.dtype.kind in "MUSO":
        array = to_unix_seconds(array, f"Column '{name}' of {source}")
    if array.dtype.kind in "iubf":
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"Column '{name}' of {source} must hold finite numbers, got NaN/inf"
                             f" at position {int(np.flatnonzero(~np.isfinite(array))[0])}")
        return array.astype(np.float64)
    raise ValueError(
        f"Column '{name}' of {source} must hold numbers, got dtype {array.dtype}"
        + (f" (e.g. {array[:3].tolist()!r})" if array.size else "")
    )


def _check_plausible(name: str, values: np.ndarray, source: str) -> np.ndarray:
    """Rejects implausible timestamps / watch times of an in-memory column, with the position."""
    bad = _implausible(name, values)
    if bad is not None:
        raise ValueError(f"Column '{name}' of {source} must hold {bad[1]}; got "
                         f"{values[bad[0]].item()!r} at position {bad[0]}")
    return values


def to_unix_seconds(values: Any, what: str = "timestamps") -> np.ndarray:
    """Timestamps as float64 Unix seconds.

    Accepts numbers (already seconds), numeric strings, ISO-8601 strings (``2016-09-15``,
    ``2016-09-15T10:30:00``, ``2016-09-15 10:30:00.5+02:00``, ``...Z``), numpy ``datetime64``
    and ``datetime`` / pandas ``Timestamp`` objects. Date-times without a time zone are UTC.

    Args:
        values: 1-D array-like of timestamps.
        what: name used in error messages.

    Returns:
        float64 array of seconds since 1970-01-01 UTC.

    Raises:
        ValueError: a value is neither a number nor an ISO-8601 date-time (the message shows it
            and its position).

    Example:
    >>> to_unix_seconds(["1970-01-02", "86400.5", "1970-01-01T00:01:00+00:01"]).tolist()
    [86400.0, 86400.5, 0.0]
    """
    array = np.asarray(values)
    if array.dtype.kind in "iuf":
        return array.astype(np.float64)
    if array.dtype.kind == "M":
        if np.isnat(array).any():
            raise ValueError(f"{what} must hold date-times, got NaT at position "
                             f"{int(np.flatnonzero(np.isnat(array))[0])}")
        return array.astype("datetime64[us]").astype(np.int64) / 1e6
    if array.dtype.kind == "S":
        array = array.astype(str)
    if array.dtype.kind == "U" and _first_non_number(array) is None:
        try:
            return array.astype(np.float64)
        except ValueError:
            pass
    out = np.empty(array.shape[0] if array.ndim else 1, np.float64)
    for i, value in enumerate(array.reshape(-1).tolist()):
        out[i] = _one_timestamp(value, what, i)
    return out


def _one_timestamp(value: Any, what: str, position: int) -> float:
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    elif isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    elif isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day,
                                 tzinfo=datetime.timezone.utc).timestamp()
    elif isinstance(value, np.datetime64):
        return float(value.astype("datetime64[us]").astype(np.int64)) / 1e6
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            return _one_timestamp(parsed, what, position)
    raise ValueError(
        f"{what} must hold numbers (Unix seconds) or ISO-8601 date-times, got {value!r} "
        f"at position {position}"
    )
