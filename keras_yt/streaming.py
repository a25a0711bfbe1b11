"""Training on prepared shards (`keras-yt prepare [--sequences]`): the recipe of
`keras_yt.training.fit_candidate_generator`, with the examples or sequence windows streamed
from disk."""

from __future__ import annotations

import sys

import keras
import numpy as np

from keras_yt.data.example_shards import ExampleShards
from keras_yt.training import (
    DEFAULT_MAX_EPOCHS,
    DEFAULT_PATIENCE,
    DEFAULT_SEQUENCE_BATCH_SIZE,
    DEFAULT_SEQUENCE_LEARNING_RATE,
    DEFAULT_SEQUENCE_MAX_EPOCHS,
    DEFAULT_SEQUENCE_PATIENCE,
    recipe_batch_size,
)

__all__ = ["fit_candidate_generator_streaming"]

STREAMED_FEATURES = ("watch_history", "example_age", "watch_time", "timestamp", "history_length",
                     "user")
STREAMED_WINDOW_FEATURES = ("watch_history", "example_age", "watch_time", "timestamp",
                            "sequence_length", "user")


def fit_candidate_generator_streaming(
    model: keras.Model,
    shards: ExampleShards,
    validation: dict | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    patience: int | None = None,
    verbose: int | str = "auto",
    shuffle_buffer: int | None = None,
    seed: int = 0,
    steps_per_epoch: int | None = None,
) -> dict:
    """`keras_yt.training.fit_candidate_generator` on examples streamed from Parquet shards.

    The same recipe (compile defaults, batch size scaled to the data, early stopping on
    `validation` restoring the best weights), with the training examples read from `shards` a
    shuffle buffer at a time, so that memory does not grow with the log. On TensorFlow the
    input is a `tf.data` pipeline (`ExampleShards.dataset`), distributed with
    `distribute_datasets_from_function` under a `tf.distribute` strategy (each input pipeline
    reads its own shards); on the other backends (JAX) a numpy generator
    (`ExampleShards.batches`) feeds `model.fit`.

    Sequence windows (`keras_yt.data.prepare_sequences`, `shards.sequences`) train a
    `history_encoder="attention"` model on every position with the sequence recipe of
    `fit_candidate_generator`: batches of 32 windows, an uncompiled model compiled with
    `SparseAdam(2e-3)`, up to 200 epochs, patience 10.

    Args:
        model: a `CandidateGenerator` (compiled here with its defaults if it is not); an
            attention model for sequence windows, a bag model for examples.
        shards: the prepared examples or sequence windows.
        validation: held-out examples (e.g. `shards.held_out("validation")`), or None.
        epochs: the most epochs; None for 50 (200 for sequence windows).
        batch_size: rows per step; None for `recipe_batch_size(shards.num_examples)` (32
            windows).
        patience: epochs without improvement of the validation loss before stopping; None for
            3 (10 for sequence windows).
        verbose: Keras `fit` verbosity (`"auto"`: a progress bar on a terminal).
        shuffle_buffer: rows shuffled together; None for `shards.default_shuffle_buffer`.
        seed: shuffling seed.
        steps_per_epoch: cut epochs short (e.g. for benchmarks); None reads every example.

    Returns:
        The Keras history dict plus `best_epoch` and `batch_size`.

    Example:
    >>> import os, tempfile
    >>> from keras_yt.data import ExampleShards, prepare_examples
    >>> from keras_yt.models import CandidateGenerator
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "log.csv"), "w") as f:
    ...     _ = f.write("user,video,timestamp\\n" + "".join(
    ...         f"{u},{(u + t) % 5 + 1},{t}\\n" for u in range(20) for t in range(6)))
    >>> _ = prepare_examples(os.path.join(folder, "log.csv"), os.path.join(folder, "ex"),
    ...                      max_history=3)
    >>> shards = ExampleShards(os.path.join(folder, "ex"))
    >>> model = CandidateGenerator(num_videos=shards.videos.size, video_embedding_dim=4,
    ...                            max_history=3, hidden_units=(8,))
    >>> history = fit_candidate_generator_streaming(
    ...     model, shards, shards.held_out("validation"), epochs=2, verbose=0)
    >>> history["best_epoch"] in (1, 2)
    True
    """
    sequences = shards.sequences
    if epochs is None:
        epochs = DEFAULT_SEQUENCE_MAX_EPOCHS if sequences else DEFAULT_MAX_EPOCHS
    if patience is None:
        patience = DEFAULT_SEQUENCE_PATIENCE if sequences else DEFAULT_PATIENCE
    for name, value in (("epochs", epochs), ("patience", patience)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    attention = getattr(model, "history_encoder", "bag") == "attention"
    if attention != sequences:
        raise ValueError(
            f"{shards!r} holds {'sequence windows' if sequences else 'next-watch examples'}, "
            f"which a history_encoder={getattr(model, 'history_encoder', 'bag')!r} model does "
            "not train on: prepare sequence windows (keras-yt prepare --sequences, "
            "prepare_sequences) for an attention model, next-watch examples (keras-yt prepare, "
            "prepare_examples) for a bag model")
    if shards.num_examples == 0:
        raise ValueError("the prepared folder holds no training row: every user needs at "
                         "least 3 watches")
    from keras_yt._distributed_inputs import _batch_multiple, padded_rows

    if batch_size is None:
        batch_size = (padded_rows(DEFAULT_SEQUENCE_BATCH_SIZE, _batch_multiple()) if sequences
                      else recipe_batch_size(shards.num_examples))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    names = tuple(model.feature_specs())
    streamed = STREAMED_WINDOW_FEATURES if sequences else STREAMED_FEATURES
    missing = [n for n in names if n not in streamed]
    if missing:
        raise ValueError(f"the prepared folder lacks the feature(s) {missing} that the model "
                         f"reads; it holds {list(streamed)}")
    if not getattr(model, "compiled", False):
        if sequences:
            from keras_yt.optimizers import SparseAdam

            model.compile(optimizer=SparseAdam(DEFAULT_SEQUENCE_LEARNING_RATE))
        else:
            model.compile()
    fit_kwargs = {}
    if validation is not None:
        fit_kwargs["validation_data"] = ({n: validation[n] for n in names}, validation["label"])
        fit_kwargs["callbacks"] = [keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True)]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            strategy = tf.distribute.get_strategy()
            data = strategy.distribute_datasets_from_function(
                lambda context: shards.dataset(batch_size, names, shuffle_buffer, seed,
                                               input_context=context))
        else:
            data = shards.dataset(batch_size, names, shuffle_buffer, seed)
        if steps_per_epoch is not None:
            data = data.repeat() if not tf.distribute.has_strategy() else data
            fit_kwargs["steps_per_epoch"] = steps_per_epoch
    else:
        # Under a keras.distribution every batch must split evenly over the batch axis.
        even = _batch_multiple() > 1
        data = shards.batches(batch_size, names, shuffle_buffer, seed, repeat=True,
                              drop_remainder=even)
        steps = max(1, shards.num_examples // batch_size) if even else \
            shards.steps_per_epoch(batch_size)
        fit_kwargs["steps_per_epoch"] = steps_per_epoch or steps
    history = model.fit(data, epochs=epochs, verbose=verbose, shuffle=False, **fit_kwargs)
    out = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    monitored = out.get("val_loss", out["loss"])
    out["best_epoch"] = int(np.argmin(monitored)) + 1
    out["batch_size"] = int(batch_size)
    return out
