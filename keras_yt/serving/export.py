"""SavedModel export of the serving halves: the user tower and the ranker.

A SavedModel is TensorFlow by nature: on another backend (JAX), `export_saved_model` saves the
model as a `.keras` file and exports it from a TensorFlow process
(`python -m keras_yt.serving.export MODEL.keras OUT_DIR`, run with `KERAS_BACKEND=tensorflow`).
"""


from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import keras


def export_saved_model(
    model: keras.Model | str | Path,
    path: str | Path,
    vocabulary: Any = None,
    verbose: bool = False,
) -> Path:
    """Exports what is served of a keras_yt model as a TensorFlow SavedModel.

    * `CandidateGenerator` → its user tower (`model.user_model()`, example age fixed at its serving
      value): signature `"user_vector"` (also `"serving_default"`) mapping the named serving
      features to `{"user_vector": (batch, d)}`. Pair it with the output embeddings
      (`keras_yt.serving.CandidateIndex`) to answer top-k queries.
    * `Ranker` → signature `"watch_time"` (also `"serving_default"`) mapping the named features to
      `{"watch_time": (batch, 1)}`, the expected watch time exp(logit).

    The SavedModel needs neither keras_yt nor Keras to be loaded: `tf.saved_model.load(path)
    .signatures["user_vector"](**features)` works in a plain TensorFlow process.

    **Raw ids.** With a `vocabulary` (`keras_yt.data.Vocabulary` of the videos), the user tower's
    `watch_history` input takes the log's own video ids: int64 for integer ids, strings for
    string ids, shape `(batch, max_history)`. A Keras `IntegerLookup` / `StringLookup` inside the
    SavedModel maps them to model ids; unknown ids, and the padding value (-1 for integer ids,
    "" for string ids), count as no watch. Without a vocabulary the input takes model ids (int32,
    0 = padding). Each row lists the watches oldest → newest, newest last; the padding may be on
    the left, on the right or in between: the real watches are moved to the right, in their
    order, before the tower reads them, so the user vector does not depend on where it is.

    Works on every backend: off TensorFlow (e.g. a model trained on JAX) the model is saved as a
    `.keras` file, loaded in a TensorFlow subprocess (`KERAS_BACKEND=tensorflow python -m
    keras_yt.serving.export`) and exported there; the weights are the same on both backends.

    Args:
        model: a `CandidateGenerator` or a `Ranker`, or the path of a `.keras` file holding one
            (saved on any backend).
        path: the SavedModel folder to write.
        vocabulary: the video `Vocabulary` of a `CandidateGenerator` (raw ids in), or None.
        verbose: print Keras' summary of the exported endpoints.

    Returns:
        The path written.

    Example:

    >>> import tempfile, numpy as np
    >>> from keras_yt.models import CandidateGenerator
    >>> model = CandidateGenerator.from_preset("tiny_candidate", search_num_bins=None,
    ...                                        categorical_features=None, continuous_features=None)
    >>> path = export_saved_model(model, tempfile.mkdtemp() + "/user_tower")
    """
    from keras_yt.models.candidate_generator import CandidateGenerator
    from keras_yt.models.ranker import Ranker

    path = Path(path)
    if vocabulary is not None and isinstance(model, CandidateGenerator):
        _check_vocabulary(model, vocabulary)
    if keras.backend.backend() != "tensorflow":
        return _export_in_tensorflow_process(model, path, vocabulary, verbose)
    if isinstance(model, (str, os.PathLike)):
        model = keras.saving.load_model(model)
    if isinstance(model, CandidateGenerator):
        output_name = "user_vector"
        served = model.user_model()
    elif isinstance(model, Ranker):
        output_name = "watch_time"
        model.build()
        inputs = model.serving_inputs()
        served = keras.Model(inputs, model(inputs, training=False), name="ranker")
    else:
        raise ValueError(
            "export_saved_model takes a CandidateGenerator or a Ranker, got "
            f"{type(model).__name__}"
        )
    specs = {
        name: keras.InputSpec(shape=tensor.shape, dtype=tensor.dtype, name=name)
        for name, tensor in served.input.items()
    }
    lookup = None
    if vocabulary is not None:
        if output_name != "user_vector":
            raise ValueError("vocabulary applies to a CandidateGenerator's watch history; got a "
                             f"{type(model).__name__}")
        _check_vocabulary(model, vocabulary)
        lookup = vocabulary.lookup_layer()
        lookup(keras.ops.convert_to_tensor([[""]] if vocabulary.is_string else [[-1]]))  # build
        history = specs["watch_history"]
        specs["watch_history"] = keras.InputSpec(
            shape=history.shape, dtype="string" if vocabulary.is_string else "int64",
            name="watch_history",
        )

    def serve(features):
        if lookup is not None:
            features = dict(features)
            ids = lookup(features["watch_history"])
            features["watch_history"] = keras.ops.cast(ids, "int32")
        return {output_name: served(features, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(served)
    if lookup is not None:
        archive.track(lookup)
    archive.add_endpoint(name=output_name, fn=serve, input_signature=[specs])
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[specs])
    archive.write_out(str(path), verbose=verbose)
    return path


def _check_vocabulary(model, vocabulary) -> None:
    if len(vocabulary) != model.num_videos - 1:
        raise ValueError(
            f"vocabulary has {len(vocabulary)} videos but the model has num_videos="
            f"{model.num_videos} (expected {model.num_videos - 1} videos + padding)"
        )


def _export_in_tensorflow_process(model, path: Path, vocabulary, verbose: bool) -> Path:
    """Runs `python -m keras_yt.serving.export` with `KERAS_BACKEND=tensorflow` on a `.keras`."""
    with tempfile.TemporaryDirectory() as folder:
        if isinstance(model, (str, os.PathLike)):
            source = Path(model)
        else:
            _check_exportable(model)
            source = Path(folder) / "model.keras"
            model.build()  # as on TensorFlow, where an unbuilt model is built for export
            model.save(source)
        command = [sys.executable, "-m", "keras_yt.serving.export", str(source), str(path)]
        if vocabulary is not None:
            vocabulary.save(Path(folder) / "vocabulary.h5")
            command += ["--vocabulary", str(Path(folder) / "vocabulary.h5")]
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_package_root(), env.get("PYTHONPATH")) if p
        )
        result = subprocess.run(
            command + (["--verbose"] if verbose else []), env=env, capture_output=True, text=True
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"SavedModel export in a TensorFlow process failed ({' '.join(command)}):\n"
            f"{result.stderr.strip()[-4000:]}"
        )
    if verbose:
        print(result.stdout, end="")
    return path


def _check_exportable(model) -> None:
    from keras_yt.models.candidate_generator import CandidateGenerator
    from keras_yt.models.ranker import Ranker

    if not isinstance(model, (CandidateGenerator, Ranker)):
        raise ValueError(
            "export_saved_model takes a CandidateGenerator or a Ranker, got "
            f"{type(model).__name__}"
        )


def _package_root() -> str:
    """The folder holding the `keras_yt` package (so the subprocess imports this copy)."""
    return str(Path(__file__).resolve().parents[2])


def main(argv: list[str] | None = None) -> None:
    """`python -m keras_yt.serving.export MODEL.keras OUT_DIR`: SavedModel of a `.keras` file.

    Exports with TensorFlow whatever backend the model was trained on; started on another
    backend, it re-runs itself with `KERAS_BACKEND=tensorflow`.
    """
    parser = argparse.ArgumentParser(
        prog="python -m keras_yt.serving.export",
        description="Export a keras_yt .keras model (trained on any backend) as a SavedModel.",
    )
    parser.add_argument("model", help="a .keras file holding a CandidateGenerator or a Ranker")
    parser.add_argument("out", help="the SavedModel folder to write")
    parser.add_argument("--vocabulary", help="an HDF5 file of the videos' Vocabulary (raw ids in)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    vocabulary = None
    if args.vocabulary:
        from keras_yt.data.vocabulary import Vocabulary

        vocabulary = Vocabulary.load(args.vocabulary)
    written = export_saved_model(args.model, args.out, vocabulary=vocabulary,
                                 verbose=args.verbose)
    print(written)


if __name__ == "__main__":
    main()
