"""Weight carry-over to grown vocabularies: a model's weights, and its optimizer's state, copied
into a model whose video (or user) axes have more rows (`keras_yt.warm_start`'s first step).

Each variable of the new model is matched by its path to the old model's; an axis whose size
changed from the old to the new vocabulary size is a video (or user) axis (`AxisGrowth`), and
along it rows `0..N` are copied bit-identically while the appended rows are initialised
(`new_rows`: `"cowatched"` from `cowatched_rows`, `"mean"` or `"random"`). Everything else is
copied as it is. `grow_candidate_generator` does it for a trained `CandidateGenerator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

COWATCH_WINDOW = 5
NEW_ROWS = ("cowatched", "mean", "random")
OPTIMIZER_STATES = ("carry", "reset")

__all__ = ["AxisGrowth", "carry_over_weights", "cowatched_rows", "grow_candidate_generator"]


@dataclass
class AxisGrowth:
    """How one vocabulary axis (videos or users) grows from `old_size` to `new_size` rows.

    Growth appends: rows `0..old_size-1` keep their meaning. `mixing`, when given, is a
    `(new_size - old_size, old_size)` float array: new row `j` = `mixing[j] @ old rows`
    (a row-normalised `mixing` averages known rows, see `cowatched_rows`); `None` leaves
    the initialisation to `new_rows` of `carry_over_weights`.

    Example:
    >>> AxisGrowth("video", 4, 6).added
    2
    """

    name: str
    old_size: int
    new_size: int
    mixing: np.ndarray | None = None

    @property
    def added(self) -> int:
        return self.new_size - self.old_size


def cowatched_rows(watches: np.ndarray, old_size: int, new_size: int,
                   window: int = COWATCH_WINDOW) -> np.ndarray:
    """Row-normalised weights of the known videos watched next to each new video.

    Args:
        watches: the grown log in model ids (`user`, `video`, `timestamp`); videos
            `>= old_size` are new.
        old_size: size of the old video vocabulary (padding included).
        new_size: size of the grown one.
        window: neighbours counted on each side of each watch, in the user's time order.

    Returns:
        float64 array `(new_size - old_size, old_size)`; a new video without a known neighbour
        gets the uniform mean of the known videos `1..old_size-1`.

    Example:
    >>> log = {"user": [1, 1, 1], "video": [1, 3, 2], "timestamp": [0, 1, 2]}
    >>> cowatched_rows(log, old_size=3, new_size=4, window=1).tolist()
    [[0.0, 0.5, 0.5]]
    """
    from keras_yt.data.io import to_watch_log

    log = to_watch_log(watches)
    log = log[np.lexsort((log["timestamp"], log["user"]))]
    users, videos = log["user"], log["video"].astype(np.int64)
    added = new_size - old_size
    weights = np.zeros((added, old_size))
    for offset in [d for d in range(-window, window + 1) if d]:
        a = slice(max(0, -offset), len(log) - max(0, offset))
        b = slice(max(0, offset), len(log) - max(0, -offset) if offset < 0 else len(log))
        here, there = videos[a], videos[b]
        keep = (users[a] == users[b]) & (here >= old_size) & (there >= 1) & (there < old_size)
        np.add.at(weights, (here[keep] - old_size, there[keep]), 1.0)
    totals = weights.sum(axis=1, keepdims=True)
    uniform = np.zeros(old_size)
    uniform[1:] = 1.0 / max(old_size - 1, 1)
    return np.where(totals > 0, weights / np.maximum(totals, 1e-300), uniform)


def _grow_array(old: np.ndarray, new_shape: tuple, growths: list[AxisGrowth], path: str,
                new_rows: str, rng: np.random.Generator, zero_new: bool) -> np.ndarray:
    """`old` grown to `new_shape` along its vocabulary axes (see `carry_over_weights`)."""
    if old.shape == tuple(new_shape):
        return old.copy()
    if old.ndim != len(new_shape):
        raise ValueError(f"variable {path!r} has shape {old.shape} in the old model and "
                         f"{tuple(new_shape)} in the new one")
    out = old
    for axis, (before, after) in enumerate(zip(old.shape, new_shape)):
        if before == after:
            continue
        matches = [g for g in growths if (g.old_size, g.new_size) == (before, after)]
        if len(matches) != 1:
            raise ValueError(
                f"variable {path!r} has shape {old.shape} in the old model and "
                f"{tuple(new_shape)} in the new one: axis {axis} is "
                + ("no vocabulary axis" if not matches else
                   f"ambiguous ({', '.join(g.name for g in matches)} grow alike)")
            )
        growth = matches[0]
        moved = np.moveaxis(out, axis, 0)
        known = moved[1:growth.old_size].astype(np.float64)
        if zero_new:  # optimizer moments: a new row has never been updated
            added = np.zeros((growth.added, *moved.shape[1:]))
        elif growth.mixing is not None and new_rows == "cowatched":
            added = np.tensordot(growth.mixing, moved.astype(np.float64), axes=(1, 0))
        elif new_rows in ("cowatched", "mean"):
            added = np.broadcast_to(known.mean(axis=0) if len(known) else 0.0,
                                    (growth.added, *moved.shape[1:]))
        elif moved.ndim == 1:  # "random": a zero bias
            added = np.zeros(growth.added)
        else:
            scale = 0.1 * (known.std() if known.size else 0.01)
            added = rng.normal(0.0, scale, (growth.added, *moved.shape[1:]))
        out = np.moveaxis(np.concatenate([moved, added.astype(old.dtype)]), 0, axis)
    return out


def _relative(path: str, model_name: str) -> str:
    """A model variable's path without the model's name (a subclassed model's variables start
    with it, a functional model's with their layer's name)."""
    prefix = f"{model_name}/"
    return path[len(prefix):] if path.startswith(prefix) else path


def _relative_slot(path: str, model_name: str) -> str:
    """An optimizer variable's path without the optimizer's and the model's names (Keras names a
    slot after its variable's path, which starts with the model's name)."""
    relative = path.split("/", 1)[1] if "/" in path else path  # without the optimizer's name
    prefix = f"{model_name}_"
    return relative[len(prefix):] if relative.startswith(prefix) else relative


def carry_over_weights(old_model: Any, new_model: Any, growths: list[AxisGrowth],
                       new_rows: str = "cowatched", optimizer_state: str = "reset",
                       seed: int = 0) -> dict:
    """Copies every weight of `old_model` into `new_model`, growing the vocabulary axes.

    Variables are matched by path (without the model's name). Equal shapes are copied as they
    are; an axis whose size went from `g.old_size` to `g.new_size` for one of `growths` is a
    vocabulary axis: its first `g.old_size` rows are copied bit-identically and the appended
    rows are initialised (`new_rows`, see the module docstring). The same is done for the
    optimizer's variables (matched by path without the optimizer's and the model's names; new
    rows of its moments are zero) when `optimizer_state="carry"` and both models are compiled.

    Args:
        old_model: the trained model (built).
        new_model: the same architecture with grown vocabularies (built; compiled to carry
            the optimizer state).
        growths: the vocabulary axes that grew.
        new_rows: `"cowatched"`, `"mean"` or `"random"`.
        optimizer_state: `"carry"` or `"reset"` (the new model's optimizer is left fresh).
        seed: seed of `"random"`.

    Returns:
        `{"copied": [paths], "grown": {path: axis...}, "optimizer": "carried" | "reset"}`.

    Raises:
        ValueError: a trainable variable of the new model, or a variable of its optimizer when
            the optimizer state is carried, has no counterpart in the old one, or a shape
            changed along an axis that is no vocabulary axis.

    Example:
    >>> import keras
    >>> old = keras.Sequential([keras.Input((1,)), keras.layers.Embedding(3, 2, name="e")])
    >>> new = keras.Sequential([keras.Input((1,)), keras.layers.Embedding(5, 2, name="e")])
    >>> report = carry_over_weights(old, new, [AxisGrowth("video", 3, 5)], new_rows="mean")
    >>> bool((new.get_layer("e").embeddings.numpy()[:3] == old.get_layer("e").embeddings.numpy()
    ...       ).all())
    True
    """
    if new_rows not in NEW_ROWS:
        raise ValueError(f"new_rows must be one of {NEW_ROWS}, got {new_rows!r}")
    if optimizer_state not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer_state must be one of {OPTIMIZER_STATES}, got "
                         f"{optimizer_state!r}")
    rng = np.random.default_rng(seed)
    report = {"copied": [], "grown": {}, "optimizer": "reset"}

    def plain_read(variable) -> np.ndarray:
        return np.asarray(variable.numpy())

    def plain_write(variable, value) -> None:
        variable.assign(value)

    def transfer(old_vars, new_vars, zero_new: bool, what: str, read=plain_read,
                 write=plain_write, old_key=None, new_key=None) -> None:
        old_key = old_key or (lambda path: _relative(path, old_model.name))
        new_key = new_key or (lambda path: _relative(path, new_model.name))
        by_path = {}
        for var in old_vars:
            by_path.setdefault(old_key(var.path), var)
        for var in new_vars:
            source = by_path.get(new_key(var.path))
            if source is None:
                if getattr(var, "trainable", False) or what == "optimizer":
                    raise ValueError(f"{what} variable {var.path!r} of the new model has no "
                                     "counterpart in the old one: not the same architecture")
                continue  # e.g. a seed generator's state
            old_value = read(source)
            value = _grow_array(old_value, tuple(var.shape), growths, var.path, new_rows, rng,
                                zero_new)
            write(var, value)
            if value.shape != old_value.shape:
                report["grown"][var.path] = [i for i, (a, b) in
                                             enumerate(zip(old_value.shape, value.shape)) if a != b]
            else:
                report["copied"].append(var.path)

    transfer(old_model.variables, new_model.variables, False, "model")
    old_opt = getattr(old_model, "optimizer", None)
    new_opt = getattr(new_model, "optimizer", None)
    if optimizer_state == "carry" and old_opt is not None and new_opt is not None \
            and old_opt.variables:
        if not new_opt.built:
            new_opt.build(new_model.trainable_variables)
        # keras_yt's optimizers read and write their slots as values: a bfloat16 slot (its
        # bits on JAX) may meet a float32 one when a table grows past `SparseAdam`'s size for
        # bfloat16 moments.
        transfer(old_opt.variables, new_opt.variables, True, "optimizer",
                 getattr(old_opt, "variable_numbers", plain_read),
                 getattr(new_opt, "assign_variable_numbers", plain_write),
                 lambda path: _relative_slot(path, old_model.name),
                 lambda path: _relative_slot(path, new_model.name))
        report["optimizer"] = "carried"
    return report


def grow_candidate_generator(old_model: Any, num_videos: int, mixing: np.ndarray | None = None,
                             new_rows: str = "cowatched", optimizer_state: str = "reset",
                             seed: int = 0) -> tuple[Any, dict]:
    """A compiled copy of a trained candidate generator with `num_videos` videos.

    The architecture is the old model's (`get_config()` with `num_videos` changed: any
    candidate generator class, whatever its history encoder), its weights are carried over by
    `carry_over_weights`, and it is compiled with the old model's optimizer configuration.

    Args:
        old_model: a trained `CandidateGenerator` (or a subclass / sibling with a `num_videos`
            config entry).
        num_videos: the grown vocabulary size (>= the old one; padding included).
        mixing: `cowatched_rows` weights for the new videos, or None.
        new_rows: `"cowatched"`, `"mean"` or `"random"`.
        optimizer_state: `"carry"` or `"reset"`.
        seed: seed of `"random"` rows.

    Returns:
        `(new_model, report)`, the report of `carry_over_weights`.

    Example:
    >>> from keras_yt.models import CandidateGenerator
    >>> old = CandidateGenerator(num_videos=10, video_embedding_dim=4, max_history=3,
    ...                          hidden_units=(8,), use_example_age=False)
    >>> old.build()
    >>> new, report = grow_candidate_generator(old, 12, new_rows="mean")
    >>> new.get_output_embeddings()[0].shape
    (12, 8)
    """
    old_size = int(old_model.num_videos)
    if num_videos < old_size:
        raise ValueError(f"num_videos must be >= the old model's ({old_size}), got {num_videos}")
    config = old_model.get_config()
    config["num_videos"] = int(num_videos)
    if config.get("class_counts") is not None:  # the unigram sampler: new videos count 1
        counts = list(config["class_counts"])
        config["class_counts"] = counts + [1] * (num_videos - len(counts))
    new_model = type(old_model).from_config(config)
    new_model.build()
    old_opt = getattr(old_model, "optimizer", None)
    if old_opt is not None:
        new_model.compile(optimizer=type(old_opt).from_config(old_opt.get_config()))
    else:
        new_model.compile()
    growth = AxisGrowth("video", old_size, int(num_videos), mixing)
    report = carry_over_weights(old_model, new_model, [growth], new_rows=new_rows,
                                optimizer_state=optimizer_state, seed=seed)
    return new_model, report
