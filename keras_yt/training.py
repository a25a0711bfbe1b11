"""`fit_candidate_generator`: the training recipe that the presets, the CLI and the demo share."""

from __future__ import annotations

import sys

import keras
import numpy as np

from keras_yt._distributed_inputs import _batch_multiple, padded_rows
from keras_yt.models._feature_model import runs_on_several_replicas

__all__ = ["default_batch_size", "fit_candidate_generator", "recipe_batch_size"]

DEFAULT_MAX_EPOCHS = 50
DEFAULT_PATIENCE = 3
# All-position training on sequence windows (docs/sequential.md): batches of 32 users' windows
# at Adam 2e-3 instead of the SASRec+ anchor's 128 at 1e-3 (4x the steps per epoch: the best
# validation epoch comes at 17-20 instead of 63-72, for the same test quality within the seeds'
# spread; measured, docs/sequential.md), stopped after 10 flat epochs.
DEFAULT_SEQUENCE_MAX_EPOCHS = 200
DEFAULT_SEQUENCE_PATIENCE = 10
DEFAULT_SEQUENCE_LEARNING_RATE = 2e-3
DEFAULT_SEQUENCE_BATCH_SIZE = 32


def default_batch_size(num_examples: int) -> int:
    """A batch size scaled to the data: about 400 steps per epoch, a power of 2 in [32, 256].

    Small logs need small batches to take enough optimizer steps (a 300-user log trains poorly
    with batch 256); large ones gain nothing in quality from batches above 256 with the default
    `SparseAdam(1e-3)`.

    Args:
        num_examples: number of training examples.

    Returns:
        The batch size.

    Example:

    >>> default_batch_size(96_000), default_batch_size(15_000), default_batch_size(500)
    (256, 32, 32)
    """
    if not isinstance(num_examples, (int, np.integer)) or num_examples < 0:
        raise ValueError(f"num_examples must be an integer >= 0, got {num_examples!r}")
    exponent = round(np.log2(max(num_examples, 1) / 400))
    return int(min(max(2**exponent, 32), 256))


def recipe_batch_size(num_examples: int) -> int:
    """`default_batch_size` rounded up to a multiple of the devices that split each batch under
    a `keras.distribution` (JAX splits a batch evenly over its batch axis): the batch size that
    `fit_candidate_generator` and the streamed training take when none is given.

    Args:
        num_examples: number of training examples.

    Returns:
        The batch size.

    Example:

    >>> recipe_batch_size(96_000)  # one device
    256
    """
    return padded_rows(default_batch_size(num_examples), _batch_multiple())


def fit_candidate_generator(
    model: keras.Model,
    examples: dict,
    validation: dict | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    patience: int | None = None,
    verbose: int | str = "auto",
    group_by_length: bool = False,
) -> dict:
    """Trains a `CandidateGenerator` the way it trains well: early stopping on held-out watches.

    The recipe, found by measurement on MovieLens-100K (`docs/quality.md`): every next-watch
    example (no per-user cap), the model's `compile()` defaults (`SparseAdam(1e-3)`; the full
    softmax for catalogues up to 10,000 videos), a batch size scaled to the data
    (`default_batch_size`), and at most `epochs` epochs, stopped when the full-softmax loss on
    `validation` (e.g. each user's last-but-one watch, `keras_yt.evaluation.LeaveLastOut`) has
    not improved for `patience` epochs, restoring the best weights.

    Sequence windows (`keras_yt.data.sequence_examples`, `label` of shape `(n, max_history)`)
    train a `history_encoder="attention"` model on every position at once, with the SASRec+
    recipe of docs/sequential.md: batches of 32 windows, an uncompiled model compiled
    with `SparseAdam(2e-3)`, up to 200 epochs and a patience of 10; `validation` stays one
    example per user (the last-but-one watch, as `LeaveLastOut` builds it).

    Args:
        model: a `CandidateGenerator` (compiled here with its defaults if it is not compiled).
        examples: training examples (`keras_yt.data.candidate_examples`, or
            `keras_yt.data.sequence_examples` for an attention model) with every feature the
            model reads and `label`.
        validation: held-out examples of the same form; `None` trains for `epochs` epochs.
        epochs: the most epochs to train (> 0); `None` for 50 (200 for sequence windows).
        batch_size: examples per step; `None` for `default_batch_size` (32 for sequence
            windows), rounded up to a multiple of the devices that split each batch under a
            `keras.distribution` (a given `batch_size` must be such a multiple). Under a
            distribution, each process passes its own examples and `batch_size` is per process.
        patience: epochs without improvement before stopping; `None` for 3 (10 for sequence
            windows).
        verbose: Keras `fit` verbosity; `"auto"` is a progress bar on a terminal and one line
            per epoch otherwise.
        group_by_length: sequence windows only, on one device: batch windows of similar length
            together and cut each batch to its longest window (`WindowBatches`: the same
            positions, about 40 % fewer positions on MovieLens; measured to train to a lower
            quality there, and no faster with batches of 32, docs/sequential.md, so off by
            default).

    Returns:
        The Keras history dict (`loss`, and `val_loss` with `validation`), plus
        `best_epoch` (1-based) and `batch_size`.

    Example:

    >>> import numpy as np
    >>> from keras_yt.models import CandidateGenerator
    >>> model = CandidateGenerator(num_videos=20, video_embedding_dim=4, max_history=3,
    ...                            hidden_units=(8,), use_example_age=False)
    >>> x = {"watch_history": np.array([[0, 1, 2], [0, 0, 3]] * 8), "label": np.array([3, 4] * 8)}
    >>> history = fit_candidate_generator(model, x, validation=x, epochs=2, verbose=0)
    >>> history["best_epoch"] in (1, 2)
    True
    """
    sequences = "label" in examples and np.ndim(examples["label"]) == 2
    if patience is None:
        patience = DEFAULT_SEQUENCE_PATIENCE if sequences else DEFAULT_PATIENCE
    if epochs is None:
        epochs = DEFAULT_SEQUENCE_MAX_EPOCHS if sequences else DEFAULT_MAX_EPOCHS
    for name, value, minimum in (("epochs", epochs, 1), ("patience", patience, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not isinstance(group_by_length, (bool, np.bool_)):
        raise ValueError(f"group_by_length must be a bool, got {group_by_length!r}")
    if group_by_length and not sequences:
        raise ValueError("group_by_length=True needs sequence windows (a 2-D `label`, "
                         "keras_yt.data.sequence_examples); got one label per example")
    if "label" not in examples:
        raise ValueError(f"examples must have a 'label' column, got {sorted(examples)}")
    num_examples = len(examples["label"])
    if num_examples == 0:
        raise ValueError("examples has no rows: every user needs at least 2 watches")
    if batch_size is None:
        batch_size = (padded_rows(DEFAULT_SEQUENCE_BATCH_SIZE, _batch_multiple()) if sequences
                      else recipe_batch_size(num_examples))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    names = list(model.feature_specs())
    missing = [n for n in names if n not in examples]
    if missing:
        raise ValueError(f"examples lack the feature(s) {missing} that the model reads")
    if not getattr(model, "compiled", False):
        if sequences:
            from keras_yt.optimizers import SparseAdam

            model.compile(optimizer=SparseAdam(DEFAULT_SEQUENCE_LEARNING_RATE))
        else:
            model.compile()
    fit_kwargs = {}
    if validation is not None:
        fit_kwargs["validation_data"] = (
            {n: validation[n] for n in names if n in validation}, validation["label"]
        )
        fit_kwargs["callbacks"] = [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        ]
    features = {n: examples[n] for n in names}
    if group_by_length and _batch_multiple() == 1 and not runs_on_several_replicas(model):
        # Windows of similar length batched together and cut to the longest: the same real
        # positions, 59 % of the full-width work on MovieLens (docs/sequential.md).
        from keras_yt._window_batches import WindowBatches

        # Seeded from numpy's global state, which keras.utils.set_random_seed sets.
        data = WindowBatches(features, examples["label"], batch_size,
                             seed=int(np.random.randint(2**31)))
        history = model.fit(data, epochs=epochs, verbose=verbose, **fit_kwargs)
    else:
        history = model.fit(features, examples["label"], batch_size=batch_size, epochs=epochs,
                            shuffle=True, verbose=verbose, **fit_kwargs)
    out = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    monitored = out.get("val_loss", out["loss"])
    out["best_epoch"] = int(np.argmin(monitored)) + 1
    out["batch_size"] = int(batch_size)
    return out
