"""Training on prepared example shards (`keras-yt prepare`): the recipe of
`keras_yt.training.fit_candidate_generator`, with the examples streamed from disk."""

from __future__ import annotations

import sys

import keras
import numpy as np

from keras_yt.data.example_shards import DEFAULT_SHUFFLE_BUFFER, ExampleShards
from keras_yt.training import DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE, recipe_batch_size

__all__ = ["fit_candidate_generator_streaming"]

STREAMED_FEATURES = ("watch_history", "example_age", "watch_time", "timestamp", "history_length",
                     "user")


def fit_candidate_generator_streaming(
    model: keras.Model,
    shards: ExampleShards,
    validation: dict | None = None,
    epochs: int = DEFAULT_MAX_EPOCHS,
    batch_size: int | None = None,
    patience: int = DEFAULT_PATIENCE,
    verbose: int | str = "auto",
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
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

    Args:
        model: a `CandidateGenerator` (compiled here with its defaults if it is not).
        shards: the prepared examples.
        validation: held-out examples (e.g. `shards.held_out("validation")`), or None.
        epochs: the most epochs.
        batch_size: examples per step; None for `recipe_batch_size(shards.num_examples)`.
        patience: epochs without improvement of the validation loss before stopping.
        verbose: Keras `fit` verbosity (`"auto"`: a progress bar on a terminal).
        shuffle_buffer: examples shuffled together.
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
    for name, value in (("epochs", epochs), ("patience", patience)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if shards.num_examples == 0:
        raise ValueError("the prepared examples hold no training example: every user needs at "
                         "least 3 watches")
    from keras_yt._distributed_inputs import _batch_multiple

    if batch_size is None:
        batch_size = recipe_batch_size(shards.num_examples)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    names = tuple(model.feature_specs())
    missing = [n for n in names if n not in STREAMED_FEATURES]
    if missing:
        raise ValueError(f"the prepared examples lack the feature(s) {missing} that the model "
                         f"reads; they hold {list(STREAMED_FEATURES)}")
    if not getattr(model, "compiled", False):
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
