"""SavedModel export of the serving halves: the user tower and the ranker."""

from __future__ import annotations

from pathlib import Path

import keras


def export_saved_model(model: keras.Model, path: str | Path, verbose: bool = False) -> Path:
    """Exports what is served of a keras_yt model as a TensorFlow SavedModel.

    * `CandidateGenerator` → its user tower (`model.user_model()`, example age fixed at its serving
      value): signature `"user_vector"` (also `"serving_default"`) mapping the named serving
      features to `{"user_vector": (batch, d)}`. Pair it with the output embeddings
      (`keras_yt.serving.CandidateIndex`) to answer top-k queries.
    * `Ranker` → signature `"watch_time"` (also `"serving_default"`) mapping the named features to
      `{"watch_time": (batch, 1)}`, the expected watch time exp(logit).

    The SavedModel needs neither keras_yt nor Keras to be loaded: `tf.saved_model.load(path)
    .signatures["user_vector"](**features)` works in a plain TensorFlow process.

    Args:
        model: a `CandidateGenerator` or a `Ranker`.
        path: the SavedModel folder to write.
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

    def serve(features):
        return {output_name: served(features, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(served)
    archive.add_endpoint(name=output_name, fn=serve, input_signature=[specs])
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[specs])
    path = Path(path)
    archive.write_out(str(path), verbose=verbose)
    return path
