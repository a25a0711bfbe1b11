"""Store the state of a PyNNDescent index in HDF5 without pickle (private).

`NNDescent.__getstate__()` returns a dict of numpy arrays, Python/numpy scalars, None, tuples
(the search forest), a scipy CSR matrix (the search graph) and compiled numba functions. The
functions are skipped (`NNDescent.__setstate__` rebuilds them); everything else is written as
typed HDF5 nodes. Decoding only ever creates those same plain types — never arbitrary objects.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

_TAG = "t"


class UnsupportedState(TypeError):
    """A value in the index state has a type this module does not store."""


def _is_skippable(value: Any) -> bool:
    if _is_numeric_type(value):
        return False
    return callable(value) and not isinstance(value, (np.ndarray, type))


def _is_numeric_type(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, np.generic) and (
        np.dtype(value).kind in "biuf"
    )


def encode(group: Any, state: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """Writes `state` (a dict with str keys) under `group`; returns the names of skipped keys."""
    skipped = []
    for key, value in state.items():
        if key in skip or _is_skippable(value):
            skipped.append(key)
            continue
        _write(group, key, value)
    group.attrs["skipped"] = json.dumps(sorted(skipped))
    return skipped


def _write(group: Any, name: str, value: Any) -> None:
    import scipy.sparse

    if value is None:
        group.create_group(name).attrs[_TAG] = "none"
    elif _is_numeric_type(value):  # e.g. _input_dtype = np.float32
        node = group.create_group(name)
        node.attrs[_TAG] = "dtype"
        node.attrs["v"] = np.dtype(value).str
    elif isinstance(value, (bool, np.bool_)):
        group.create_dataset(name, data=np.uint8(bool(value))).attrs[_TAG] = "bool"
    elif isinstance(value, (int, float)) and not isinstance(value, np.generic):
        kind = "int" if isinstance(value, int) else "float"
        dtype = np.int64 if kind == "int" else np.float64
        group.create_dataset(name, data=np.asarray(value, dtype=dtype)).attrs[_TAG] = kind
    elif isinstance(value, str):
        node = group.create_group(name)
        node.attrs[_TAG] = "str"
        node.attrs["v"] = value
    elif isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise UnsupportedState(f"state[{name!r}]: numpy scalar of dtype {value.dtype}")
        group.create_dataset(name, data=value).attrs[_TAG] = "npscalar"
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise UnsupportedState(f"state[{name!r}]: array of dtype {value.dtype}")
        group.create_dataset(name, data=value).attrs[_TAG] = "ndarray"
    elif scipy.sparse.issparse(value) and value.format == "csr":
        node = group.create_group(name)
        node.attrs[_TAG] = "csr"
        node.attrs["is_array"] = int(isinstance(value, scipy.sparse.sparray))
        node.attrs["shape"] = np.asarray(value.shape, dtype=np.int64)
        node.attrs["has_sorted_indices"] = int(bool(value.has_sorted_indices))
        for part in ("data", "indices", "indptr"):
            node.create_dataset(part, data=getattr(value, part))
    elif isinstance(value, (tuple, list)) and type(value) in (tuple, list):
        node = group.create_group(name)
        node.attrs[_TAG] = type(value).__name__
        node.attrs["n"] = len(value)
        for i, item in enumerate(value):
            _write(node, str(i), item)
    elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
        node = group.create_group(name)
        node.attrs[_TAG] = "dict"
        for key, item in value.items():
            _write(node, key, item)
    else:
        raise UnsupportedState(f"state[{name!r}]: cannot store a {type(value).__name__}")


def decode(group: Any, mapped: tuple[str, ...] = ()) -> dict:
    """Reads a dict written by `encode` (without the skipped keys).

    Top-level arrays named in `mapped` are copy-on-write memory maps of the file where they
    are stored contiguous (writeable for numba, never written back).
    """
    out = {}
    for name in group:
        node = group[name]
        value = None
        if name in mapped and node.attrs.get(_TAG) in ("ndarray", b"ndarray"):
            from keras_yt._files import mapped_dataset

            value = mapped_dataset(node, writeable=True)
        out[name] = _read(node) if value is None else value
    return out


def _read(node: Any) -> Any:
    import scipy.sparse

    tag = node.attrs.get(_TAG)
    tag = tag.decode() if isinstance(tag, bytes) else tag
    if tag == "none":
        return None
    if tag == "dtype":
        dtype = np.dtype(str(node.attrs["v"]))
        if dtype.kind not in "biuf":
            raise ValueError(f"unexpected dtype {dtype} at {node.name}")
        return dtype.type
    if tag == "bool":
        return bool(node[()])
    if tag == "int":
        return int(node[()])
    if tag == "float":
        return float(node[()])
    if tag == "str":
        return str(node.attrs["v"])
    if tag == "npscalar":
        return node[()]
    if tag == "ndarray":
        return node[()]
    if tag == "csr":
        shape = tuple(int(s) for s in node.attrs["shape"])
        cls = scipy.sparse.csr_array if int(node.attrs["is_array"]) else scipy.sparse.csr_matrix
        out = cls((node["data"][()], node["indices"][()], node["indptr"][()]), shape=shape)
        out.has_sorted_indices = bool(node.attrs["has_sorted_indices"])
        return out
    if tag in ("tuple", "list"):
        items = [_read(node[str(i)]) for i in range(int(node.attrs["n"]))]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict":
        return {name: _read(node[name]) for name in node}
    raise ValueError(f"unknown node type {tag!r} at {node.name}")
