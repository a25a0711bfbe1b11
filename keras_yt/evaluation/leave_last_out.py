"""`LeaveLastOut`: the standard leave-last-out protocol with full ranking over every item."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_yt.data.candidate import leave_last_out_split
from keras_yt.data.io import to_watch_log
from keras_yt.evaluation._interactions import checked_num_items

DEFAULT_KS = (10, 50, 100)
_BLOCK_ROWS = 1024


class LeaveLastOut:
    """Each user's last watch held out; every model ranks *all* items for it.

    The protocol of most recommender papers and of the baselines users know (popularity,
    item-kNN, implicit ALS), written once so that every model of a comparison is measured the
    same way:

    * **Split.** A user's watches are ordered by timestamp; among watches with the same
      timestamp the later row of the log comes later (``ties="log_order"``, a deterministic
      rule: the log's own order breaks ties) or the larger video id (``ties="video_id"``, the
      rule of the SASRec papers on MovieLens, where 44% of last ratings share their second with
      the one before). The last watch is the **test** item, and every earlier watch is
      training data (`train_watches`). With `validation=True` the last-but-one watch is held
      out as well, as the **validation** item for early stopping: `fit_watches` is the log
      without it, and it stays in the inputs of the test example.
    * **Inputs.** A held-out example's watch history is the user's watches strictly before it
      in time (its last `max_history`), as `keras_yt.data.candidate_examples` builds them; with
      ``same_time_history=True``, every watch before it in the order above, same-second ones
      included, as `keras_yt.data.sequence_examples` reads a sequence (the SASRec protocol).
    * **Ranking.** A model scores every item id in `[1, num_items)`; the rank of the held-out
      item is the number of eligible items that score higher, plus those that tie with it and
      have a smaller id (the tie rule of `keras_yt.metrics.rank_top_k`). *Unfiltered*: every
      item is eligible. *Filtered*: every other item the user watched in training (the whole
      history, not the last `max_history`) is removed, as a service that never recommends a
      watched video would (the held-out item itself stays a candidate, also when the user had
      watched it before).
    * **Metrics** at each k of `ks`: hit rate (equal to recall with one held-out item), NDCG
      (`1 / log2(rank + 2)` within the top k) and MRR (`1 / (rank + 1)` within the top k),
      averaged over the users with a held-out item.

    Args:
        watches: a watch log (see `keras_yt.data.to_watch_log`) with model ids in
            `[1, num_items)`.
        max_history: width of the held-out examples' `watch_history`.
        validation: also hold out each user's last-but-one watch.
        num_items: size of the id space including padding 0; defaults to the largest id + 1.
        queries: optional search log (`user, timestamp, text`): adds `search_history` to the
            held-out examples (see `keras_yt.data.leave_last_out_split`).
        max_queries: width of `search_history`.
        example_age_reference: end of the training window for `example_age` (default: the
            largest timestamp).
        ties: order of same-timestamp watches, ``"log_order"`` or ``"video_id"``.
        same_time_history: whether the watches that share a held-out watch's timestamp (and
            come before it in the order) are part of its history.

    Attributes:
        train_watches: every watch but each user's last (sorted by user, time and `ties`: feed
            it to `sequence_examples` as it is, and its sequences follow the split's order).
        fit_watches: `train_watches` without the validation items (equal to it when
            `validation=False`): the labels a model trains on while validating.
        test: the test examples, a dict like `keras_yt.data.candidate_examples` returns, one row
            per user with at least one earlier watch.
        validation: the validation examples (same form), or `None`.

    Example:

    >>> log = {"user": [1, 1, 1, 2, 2, 2], "video": [1, 2, 3, 2, 3, 4],
    ...        "timestamp": [1, 2, 3, 1, 2, 3]}
    >>> split = LeaveLastOut(log, validation=False)
    >>> split.test["label"].tolist()
    [3, 4]
    >>> scores = np.tile(np.array([0.0, 4.0, 3.0, 2.0, 1.0]), (2, 1))  # items 1 > 2 > 3 > 4
    >>> split.ranks(scores, filtered=False).tolist(), split.ranks(scores).tolist()
    ([2, 3], [0, 1])
    >>> split.evaluate(scores, ks=(1, 2))["filtered"]["hr@1"]
    0.5
    """

    def __init__(
        self,
        watches: Any,
        max_history: int = 50,
        validation: bool = True,
        num_items: int | None = None,
        queries: Any = None,
        max_queries: int = 5,
        example_age_reference: float | None = None,
        ties: str = "log_order",
        same_time_history: bool = False,
    ):
        if not isinstance(validation, (bool, np.bool_)):
            raise ValueError(f"validation must be a bool, got {validation!r}")
        log = to_watch_log(watches)
        self.num_items = checked_num_items(log, num_items)
        self.max_history = max_history
        inputs = {"max_history": max_history, "queries": queries, "max_queries": max_queries,
                  "example_age_reference": example_age_reference, "ties": ties,
                  "same_time_history": same_time_history}
        self.train_watches, self.test = leave_last_out_split(log, **inputs)
        if validation:
            self.fit_watches, self.validation = leave_last_out_split(self.train_watches, **inputs)
        else:
            self.fit_watches, self.validation = self.train_watches, None
        self._seen = {
            "test": _seen_items(self.train_watches, self.test["user"]),
            "validation": (
                None if self.validation is None
                else _seen_items(self.fit_watches, self.validation["user"])
            ),
        }

    def examples(self, split: str = "test") -> dict[str, np.ndarray]:
        """The held-out examples of `split` (`"test"` or `"validation"`)."""
        self._check_split(split)
        return self.test if split == "test" else self.validation

    def seen(self, split: str = "test") -> list[np.ndarray]:
        """For each held-out example of `split`, the sorted ids its user watched in training."""
        self._check_split(split)
        indptr, items = self._seen[split]
        return np.split(items, indptr[1:-1])

    def ranks(self, scores: Any, split: str = "test", filtered: bool = True) -> np.ndarray:
        """0-based rank of each held-out item among the eligible items (see the class docstring).

        Args:
            scores: float array `(num_examples, num_items)`: column j scores item j; column 0
                (padding) is ignored.
            split: `"test"` or `"validation"`.
            filtered: remove the items each user watched in training.

        Returns:
            int64 array `(num_examples,)`.
        """
        labels = self.examples(split)["label"]
        expected = (len(labels), self.num_items)
        if np.shape(scores) != expected:
            raise ValueError(
                f"scores must have shape (num_examples, num_items) = {expected} for split "
                f"{split!r}, got shape {np.shape(scores)}"
            )
        return held_out_ranks(scores, labels, self.seen(split) if filtered else None)

    def evaluate(
        self, scores: Any, split: str = "test", ks: tuple[int, ...] = DEFAULT_KS
    ) -> dict[str, dict[str, float]]:
        """Hit rate, NDCG and MRR at each k, unfiltered and filtered.

        Args:
            scores: float array `(num_examples, num_items)` (see `ranks`).
            split: `"test"` or `"validation"`.
            ks: cut-offs.

        Returns:
            `{"unfiltered": {"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., ...}, "filtered":
            {...}}`.
        """
        for k in ks:
            if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
                raise ValueError(f"ks must hold positive integers, got {ks!r}")
        return {
            name: metrics_from_ranks(self.ranks(scores, split, filtered), ks)
            for name, filtered in (("unfiltered", False), ("filtered", True))
        }

    def _check_split(self, split: str) -> None:
        if split not in ("test", "validation"):
            raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
        if split == "validation" and self.validation is None:
            raise ValueError("split='validation' needs LeaveLastOut(..., validation=True)")


def held_out_ranks(scores: Any, labels: Any, exclude: Any = None) -> np.ndarray:
    """0-based rank of each row's held-out item in a full score matrix.

    The rank counts the eligible items that score higher, plus those that tie and have a smaller
    id (the tie rule of `keras_yt.metrics.rank_top_k`). Column 0 (padding) and, per row, the ids
    in `exclude` are not eligible, except the row's own held-out item.

    Args:
        scores: float array `(n, num_items)`; column j scores item j.
        labels: int array `(n,)`: each row's held-out item, in `[1, num_items)`.
        exclude: `None`, or one sequence of item ids per row (e.g. what the user watched).

    Returns:
        int64 array `(n,)`.

    Example:

    >>> held_out_ranks(np.array([[0.0, 3.0, 2.0, 1.0]]), np.array([3]), exclude=[[1]]).tolist()
    [1]
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.dtype.kind not in "iuf":
        raise ValueError(
            f"scores must be a 2-D numeric array (n, num_items), got shape {scores.shape} and "
            f"dtype {scores.dtype}"
        )
    n, num_items = scores.shape
    if labels.shape != (n,) or labels.dtype.kind not in "iu" or (
        n and (labels.min() < 1 or labels.max() >= num_items)
    ):
        raise ValueError(
            f"labels must be {n} integer ids in [1, {num_items}) (one per row of scores), got "
            f"shape {labels.shape}, dtype {labels.dtype}"
        )
    if scores.dtype.kind == "f" and not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite, got NaN or inf values")
    if exclude is not None and len(exclude) != n:
        raise ValueError(f"exclude must have {n} rows like scores, got {len(exclude)}")
    labels = labels.astype(np.int64)
    ranks = np.zeros(n, dtype=np.int64)
    ids = np.arange(num_items)[None, :]
    for start in range(0, n, _BLOCK_ROWS):  # bounded memory for large catalogues
        block, label = scores[start : start + _BLOCK_ROWS], labels[start : start + _BLOCK_ROWS]
        label_scores = block[np.arange(len(label)), label][:, None]
        ahead = (block > label_scores) | ((block == label_scores) & (ids < label[:, None]))
        ahead[:, 0] = False
        ranks[start : start + len(label)] = ahead.sum(axis=1)
    if exclude is not None:
        # Subtract the excluded items that were ranked ahead of the held-out item.
        rows = [np.unique(np.asarray(e, dtype=np.int64).reshape(-1)) for e in exclude]
        rows = [r[(r > 0) & (r < num_items)] for r in rows]
        owner = np.repeat(np.arange(n), [len(r) for r in rows])
        items = np.concatenate(rows + [np.zeros(0, np.int64)])
        label_scores = scores[np.arange(n), labels]
        item_scores = scores[owner, items]
        ahead = (item_scores > label_scores[owner]) | (
            (item_scores == label_scores[owner]) & (items < labels[owner])
        )
        np.subtract.at(ranks, owner, ahead.astype(np.int64))
    return ranks


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Hit rate, NDCG and MRR at each k from the 0-based ranks of single held-out items.

    Args:
        ranks: int array of 0-based ranks (one held-out item per example).
        ks: cut-offs.

    Returns:
        `{"hr@k": ..., "ndcg@k": ..., "mrr@k": ...}` for each k, means over the examples.

    Example:

    >>> metrics_from_ranks(np.array([0, 3]), ks=(1, 10))["mrr@10"]
    0.625
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return out


def _seen_items(watches: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR `(indptr, items)`: the distinct videos of each of `users` in `watches`."""
    pairs = np.unique(np.stack([watches["user"], watches["video"]], axis=1), axis=0)
    start = np.searchsorted(pairs[:, 0], users, side="left")
    end = np.searchsorted(pairs[:, 0], users, side="right")
    indptr = np.concatenate([[0], np.cumsum(end - start)])
    items = np.concatenate([pairs[s:e, 1] for s, e in zip(start, end)] + [np.zeros(0, "int64")])
    return indptr.astype(np.int64), items.astype(np.int64)
