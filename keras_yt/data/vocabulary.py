"""`Vocabulary`: raw ids (the log's own video or user ids) ↔ model ids (1..N, 0 = unknown)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

FORMAT_KIND = "keras_yt.Vocabulary"
FORMAT_VERSION = 1

_CANONICAL_INT = re.compile(r"0|[1-9][0-9]*")  # ASCII digits, no sign, no leading zeros


def canonical_int(text: Any) -> int | None:
    """The integer raw id a text stands for, or None: only canonical decimals are integers.

    Raw ids are exact: `"7"` is the integer id 7, while `"007"`, `"+7"`, `" 7"`, `"7_0"`,
    `"7.0"` and non-ASCII digits (`"٧"`) are no integer id (as strings they are other ids).

    Example:
    >>> [canonical_int(t) for t in ["7", "0", "007", "+7", "1_0", "\u0663"]]
    [7, 0, None, None, None, None]
    """
    if not isinstance(text, str) or not _CANONICAL_INT.fullmatch(text):
        return None
    value = int(text)
    return value if value < 2**63 else None


def canonical_int_column(texts: Any) -> np.ndarray | None:
    """A column of texts as int64 when every one is a canonical decimal below 2**63, else None."""
    array = np.asarray(texts).astype(str)
    try:
        values = array.astype(np.int64)
    except (ValueError, OverflowError):
        return None
    if values.size and (values.min() < 0 or not np.array_equal(values.astype(str), array)):
        return None
    return values


class Vocabulary:
    """Maps the raw ids of a log (integers of any size, or strings) to model ids and back.

    *Raw ids* are the log's own ids: non-negative integers up to 2**63 - 1 (0 included) or
    non-empty strings. *Model ids* are ours: `1 .. N` in order of decreasing count (the
    log-uniform negative sampler assumes the most frequent video has the smallest id; equal counts
    are ordered by raw id), and `0` for padding and every unknown raw id. A `Vocabulary` of
    videos sizes the model (`num_videos = vocabulary.size = N + 1`); one of users maps the raw user
    ids of the command line and of the service to rows of the stored histories.

    Args:
        ids: the raw ids in model-id order (`ids[i]` has model id `i + 1`), unique.
        counts: occurrences of each raw id in the training log, `(N,)`; default zeros.
        titles: optional display titles, `(N,)` strings.
        name: what the ids are ("video" or "user"); used in messages.

    Example:
    >>> vocab = Vocabulary.from_ids(["b", "a", "b", "c", "b", "a"])
    >>> vocab.ids.tolist(), vocab.counts.tolist()
    (['b', 'a', 'c'], [3, 2, 1])
    >>> vocab.lookup(["a", "zzz", "b"]).tolist()
    [2, 0, 1]
    >>> vocab.raw_ids([1, 3]).tolist()
    ['b', 'c']
    """

    def __init__(self, ids: Any, counts: Any = None, titles: Any = None, name: str = "video"):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.ids = _raw_id_array(ids, f"{name} ids")
        n = len(self.ids)
        if len(np.unique(self.ids)) != n:
            raise ValueError(f"{name} ids of a Vocabulary must be unique, got duplicates")
        if counts is None:
            counts = np.zeros(n, np.int64)
        counts = np.asarray(counts)
        if counts.shape != (n,) or (n and (counts.dtype.kind not in "iu" or counts.min() < 0)):
            raise ValueError(
                f"counts must be {n} non-negative integers (one per id), got dtype "
                f"{counts.dtype} and shape {counts.shape}"
            )
        self.counts = counts.astype(np.int64)
        if titles is not None:
            titles = np.asarray(titles)
            if titles.shape != (n,) or (n and titles.dtype.kind not in "UO"):
                raise ValueError(
                    f"titles must be {n} strings (one per id), got dtype {titles.dtype} and "
                    f"shape {titles.shape}"
                )
            titles = titles.astype(str)
        self.titles = titles
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_ids(
        cls, raw_ids: Any, titles: Mapping | None = None, name: str = "video"
    ) -> Vocabulary:
        """Builds the vocabulary of a column of raw ids, most frequent first.

        Args:
            raw_ids: every occurrence (e.g. the `video` column of a watch log), integers >= 0
                or non-empty strings.
            titles: optional `{raw id: title}`; ids without a title get "".
            name: what the ids are ("video" or "user").

        Returns:
            A `Vocabulary` with model ids `1..N` by decreasing count (ties: by raw id).

        Example:
        >>> Vocabulary.from_ids([7, 2**40, 7, 0]).ids.tolist()
        [7, 0, 1099511627776]
        """
        values = _raw_id_array(raw_ids, f"{name} ids")
        unique, counts = np.unique(values, return_counts=True)
        order = np.lexsort((np.arange(len(unique)), -counts))  # unique is sorted: ties by raw id
        ids = unique[order]
        title_array = None
        if titles:
            key = str if ids.dtype.kind == "U" else int
            title_array = np.array([str(titles.get(key(i), "")) for i in ids.tolist()], dtype=str)
        return cls(ids, counts[order], title_array, name=name)

    def grow(self, raw_ids: Any, titles: Mapping | None = None) -> Vocabulary:
        """This vocabulary with the raw ids it lacks appended: known raw ids keep their model ids.

        For a log that has grown (new videos or users): model ids `1..N` stay those of this
        vocabulary, the new raw ids get `N+1..` in order of decreasing count in `raw_ids` (ties:
        by raw id). Counts become the counts in `raw_ids` (0 for an id that no longer occurs);
        titles are kept, and those of new ids come from `titles`.

        Args:
            raw_ids: every occurrence in the grown log (e.g. its `video` column), raw ids of the
                same kind as this vocabulary's (integers or strings).
            titles: optional `{raw id: title}` for the new ids.

        Returns:
            A new `Vocabulary` of size `self.size + number of new raw ids`.

        Raises:
            ValueError: `raw_ids` are integers and this vocabulary holds strings, or the reverse.

        Example:
        >>> old = Vocabulary.from_ids(["b", "a", "b"])
        >>> new = old.grow(["a", "c", "d", "d", "a"])
        >>> new.ids.tolist(), new.counts.tolist(), new.lookup(["b", "a", "d"]).tolist()
        (['b', 'a', 'd', 'c'], [0, 2, 2, 1], [1, 2, 3])
        """
        grown = Vocabulary.from_ids(raw_ids, titles, name=self.name)
        if len(grown) and len(self) and grown.is_string != self.is_string:
            have, got = ("string", "integer") if self.is_string else ("integer", "string")
            raise ValueError(f"the {self.name} ids are {got}s but the vocabulary holds {have} "
                             f"ids: the raw ids of a grown log must be of the same kind")
        known = self.lookup(grown.ids)
        counts = np.zeros(len(self), np.int64)
        counts[known[known > 0] - 1] = grown.counts[known > 0]
        fresh = known == 0  # grown is ordered by decreasing count: so are the new ids
        ids = np.concatenate([self.ids, grown.ids[fresh]]) if len(self) else grown.ids
        all_titles = None
        if self.titles is not None or grown.titles is not None:
            old_titles = self.titles if self.titles is not None else np.full(len(self), "")
            new_titles = grown.titles[fresh] if grown.titles is not None else \
                np.full(int(fresh.sum()), "")
            all_titles = np.concatenate([old_titles.astype(str), new_titles.astype(str)])
        return Vocabulary(ids, np.concatenate([counts, grown.counts[fresh]]), all_titles,
                          name=self.name)

    # ------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return int(len(self.ids))

    @property
    def size(self) -> int:
        """Number of model ids including the padding / unknown id 0: `len(self) + 1`."""
        return len(self) + 1

    @property
    def is_string(self) -> bool:
        """Whether the raw ids are strings (else 64-bit integers)."""
        return self.ids.dtype.kind == "U"

    def lookup(self, raw_ids: Any) -> np.ndarray:
        """Model ids (int64) of raw ids; unknown ids (and ids of the other kind) give 0.

        Args:
            raw_ids: array-like of raw ids, any shape.

        Returns:
            int64 array of the same shape.

        Example:
        >>> Vocabulary([10, 30]).lookup([[30, 5]]).tolist()
        [[2, 0]]
        """
        values = np.asarray(raw_ids)
        if values.size == 0:
            return np.zeros(values.shape, np.int64)
        if self.is_string != (values.dtype.kind in "UO"):
            return np.zeros(values.shape, np.int64)
        if self.is_string:
            values = values.astype(str)
        elif values.dtype.kind not in "iu":
            return np.zeros(values.shape, np.int64)
        if len(self) == 0:
            return np.zeros(values.shape, np.int64)
        flat = values.reshape(-1)
        pos = np.minimum(np.searchsorted(self._sorted, flat), len(self) - 1)
        found = self._sorted[pos] == flat
        out = np.where(found, self._order[pos] + 1, 0).astype(np.int64)
        return out.reshape(values.shape)

    def raw_ids(self, model_ids: Any) -> np.ndarray:
        """Raw ids of model ids `1..N`.

        Args:
            model_ids: array-like of model ids.

        Returns:
            Array of raw ids (int64 or str) of the same shape.

        Raises:
            ValueError: a model id is 0 (padding) or outside `1..N`.

        Example:
        >>> Vocabulary(["x", "y"]).raw_ids([2, 1]).tolist()
        ['y', 'x']
        """
        ids = np.asarray(model_ids)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 1 or ids.max() > len(self)):
            raise ValueError(
                f"model {self.name} ids must be integers in 1..{len(self)} (0 is padding), got "
                f"values from {ids.min()} to {ids.max()}"
            )
        return self.ids[ids.astype(np.int64) - 1]

    def title(self, model_id: int) -> str:
        """Title of a model id ("" without titles)."""
        if self.titles is None:
            return ""
        return str(self.titles[int(model_id) - 1])

    def lookup_layer(self):
        """A Keras `IntegerLookup` / `StringLookup` from raw ids to model ids (unknown → 0).

        Returns:
            The layer (int64 output); it goes into exported SavedModels so that they take raw ids.

        Example:
        >>> import numpy as np
        >>> layer = Vocabulary([2**40, 0]).lookup_layer()
        >>> np.asarray(layer(np.array([[0, 2**40, 5]]))).tolist()
        [[2, 1, 0]]
        """
        import keras

        if self.is_string:
            return keras.layers.StringLookup(
                vocabulary=self.ids.tolist(), num_oov_indices=1, mask_token=None, oov_token="",
                name=f"{self.name}_lookup",
            )
        return keras.layers.IntegerLookup(
            vocabulary=self.ids.astype(np.int64), num_oov_indices=1, mask_token=None,
            oov_token=-1, vocabulary_dtype="int64", name=f"{self.name}_lookup",
        )

    # ------------------------------------------------------------------ config and files

    def get_config(self) -> dict:
        """A JSON-serialisable config; `Vocabulary.from_config(config)` rebuilds it.

        Example:
        >>> v = Vocabulary([5, 6], counts=[2, 1], titles=["a", "b"])
        >>> Vocabulary.from_config(v.get_config()).titles.tolist()
        ['a', 'b']
        """
        return {
            "name": self.name,
            "ids": self.ids.tolist(),
            "id_kind": "string" if self.is_string else "int",
            "counts": self.counts.tolist(),
            "titles": None if self.titles is None else self.titles.tolist(),
        }

    @classmethod
    def from_config(cls, config: dict) -> Vocabulary:
        """Rebuilds a vocabulary from `get_config()`."""
        dtype = str if config.get("id_kind") == "string" else np.int64
        ids = np.asarray(config["ids"], dtype=dtype)
        return cls(ids, np.asarray(config["counts"], np.int64), config.get("titles"),
                   name=config.get("name", "video"))

    def write(self, group: Any) -> None:
        """Stores the vocabulary in an (open, writable) HDF5 group."""
        import h5py

        group.attrs["kind"] = FORMAT_KIND
        group.attrs["format_version"] = FORMAT_VERSION
        group.attrs["name"] = self.name
        group.attrs["id_kind"] = "string" if self.is_string else "int"
        text = h5py.string_dtype("utf-8")
        if self.is_string:
            group.create_dataset("ids", data=self.ids.astype(object), dtype=text)
        else:
            group.create_dataset("ids", data=self.ids)
        group.create_dataset("counts", data=self.counts)
        if self.titles is not None:
            group.create_dataset("titles", data=self.titles.astype(object), dtype=text)

    @classmethod
    def read(cls, group: Any, source: str = "the file") -> Vocabulary:
        """Reads a vocabulary written by `write`, with a clear error if the group is not one."""
        if group.attrs.get("kind") != FORMAT_KIND or "ids" not in group or "counts" not in group:
            raise ValueError(f"{source} does not hold a keras_yt Vocabulary")
        version = int(group.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source} holds a Vocabulary of format version {version}; this keras_yt reads "
                f"version {FORMAT_VERSION}"
            )
        ids = group["ids"][()]
        if group.attrs.get("id_kind") == "string":
            ids = np.asarray([i.decode("utf-8") if isinstance(i, bytes) else i for i in ids], str)
        titles = group["titles"][()] if "titles" in group else None
        if titles is not None:
            titles = np.asarray(
                [t.decode("utf-8") if isinstance(t, bytes) else t for t in titles], dtype=str
            )
        try:
            return cls(ids, group["counts"][()], titles, name=str(group.attrs.get("name")))
        except ValueError as error:
            raise ValueError(f"{source}: invalid Vocabulary: {error}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary to its own HDF5 file (no pickle).

        Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "videos.h5")
        >>> Vocabulary(["a", "b"]).save(path)
        >>> Vocabulary.load(path).ids.tolist()
        ['a', 'b']
        """
        import h5py

        with h5py.File(path, "w") as f:
            self.write(f)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Reads a file written by `save`."""
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(f"{os.fspath(path)!r} is not a readable HDF5 file ({error})") from None
        with f:
            return cls.read(f, source=repr(os.fspath(path)))

    def __repr__(self) -> str:
        kind = "string" if self.is_string else "integer"
        return f"Vocabulary(name={self.name!r}, {len(self)} {kind} ids)"


def _raw_id_array(values: Any, what: str) -> np.ndarray:
    """Raw ids as int64 (non-negative integers) or str (non-empty strings), 1-D."""
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1)
    if array.size == 0:
        return array.astype(np.int64)
    kind = array.dtype.kind
    if kind == "O":
        if all(isinstance(v, str) for v in array):
            kind = "U"
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array):
            array = np.array(array.tolist(), dtype=np.uint64 if max(array) > 2**63 - 1
                             else np.int64)
            kind = array.dtype.kind
        else:
            raise ValueError(f"{what} must be all integers or all strings, got mixed values")
    if kind in "iu":
        if array.min() < 0:
            raise ValueError(f"{what} must be integers >= 0, got {int(array.min())}")
        if kind == "u" and array.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{what} must be below 2**63, got {int(array.max())}")
        return array.astype(np.int64)
    if kind == "U":
        array = array.astype(str)
        if (array == "").any():
            raise ValueError(f"{what} must be non-empty strings, got ''")
        return array
    raise ValueError(f"{what} must be integers >= 0 or strings, got dtype {array.dtype}")
