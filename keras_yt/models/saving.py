"""Writing and reading `.keras` files safely: atomic saves, clear errors on bad files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras
import numpy as np

from keras_yt._files import atomic_path


def save_model(model: keras.Model, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Saves a model to a `.keras` file atomically (a temporary file, then a rename).

    A save that fails or is killed leaves any previous file at `path` intact; the temporary file
    is removed (or, after a kill, by the next save to the same path). `model.save(path)` of the
    keras_yt models goes through here.

    Args:
        model: a Keras model; it must be built (trained, called on data, or `model.build()`)
            and its weights must be finite.
        path: destination, ending in `.keras`.
        overwrite: replace an existing file; with `False` an existing file is an error.

    Returns:
        The path written.

    Raises:
        ValueError: the model was never built, a weight holds NaN or inf, `path` does not end
            in `.keras`, or it exists and `overwrite` is False.

    Example:

    >>> import tempfile, numpy as np
    >>> from keras_yt.models import CandidateGenerator
    >>> model = CandidateGenerator(num_videos=20, max_history=3, hidden_units=(8,),
    ...                            video_embedding_dim=4, num_sampled=5)
    >>> model.build()
    >>> path = save_model(model, tempfile.mkdtemp() + "/model.keras")
    >>> load_model(path).num_videos
    20
    """
    path = Path(os.fspath(path))
    if path.suffix != ".keras":
        raise ValueError(f"path must end in '.keras', got {str(path)!r}")
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built or not model.weights:
        raise ValueError(
            f"model {model.name!r} was never built, so it has no weights to save and the file "
            "could not be loaded: train it (fit), call it on data or call model.build() first"
        )
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(
                f"model {model.name!r} has non-finite weights (NaN or inf in {weight.path}), "
                f"not saved to {str(path)!r}: its training diverged"
            )
    if path.exists() and not overwrite:
        raise ValueError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    # In a folder of its own: Keras may write a temporary weights file next to the file.
    with atomic_path(path, suffix=".keras", private_folder=True) as tmp:
        keras.saving.save_model(model, tmp)
    return path


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """Loads a `.keras` file, with an error naming the file when it is not a loadable model.

    Args:
        path: a `.keras` file (written by `save_model` or `model.save`).
        compile: re-compile the model with its saved optimizer.

    Returns:
        The model.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a `.keras` archive (truncated, not a zip file, damaged) or
            Keras cannot rebuild the model from it.

    Example:

    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/broken.keras"
    >>> _ = open(path, "wb").write(b"not a zip")
    >>> try:
    ...     load_model(path)
    ... except ValueError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    '.../broken.keras' is not a .keras file (not a complete zip archive: truncated or ...
    """
    import keras_yt  # noqa: F401  (registers the layers and models with Keras)

    shown = os.fspath(path)
    if not os.path.isfile(shown):
        raise FileNotFoundError(f"model file {shown!r} does not exist")
    try:
        with zipfile.ZipFile(shown) as archive:
            damaged = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as err:
        raise ValueError(
            f"{shown!r} is not a .keras file (not a complete zip archive: truncated or "
            f"damaged?): {err}"
        ) from err
    if damaged is not None:
        raise ValueError(f"{shown!r} is damaged: member {damaged!r} fails its CRC check")
    missing = {"config.json", "model.weights.h5"} - names
    if missing:
        raise ValueError(f"{shown!r} is not a complete .keras file: it lacks {sorted(missing)}")
    try:
        return keras.saving.load_model(shown, compile=compile)
    except Exception as err:
        raise ValueError(
            f"{shown!r} could not be loaded as a model: {type(err).__name__}: {err}"
        ) from err
