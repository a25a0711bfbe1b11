"""Data and model parallelism on the JAX backend with `keras.distribution`.

Keras 3 distributes a model on JAX with a `keras.distribution.Distribution` set before the model
is built: `DataParallel` replicates the variables and splits each batch across the devices;
`ModelParallel` also splits variables over a `("batch", "model")` device mesh as a `LayoutMap`
says. This module writes the `LayoutMap` of the keras_yt models, which row-shard their large
tables (the video tables, the output embeddings W and biases b, the search-token table) over the
`"model"` axis, so that each device holds `1/m` of their rows (and of their optimizer slots):

    dist = keras_yt.distribution.model_parallel(model, model_parallel=4)
    keras.distribution.set_distribution(dist)   # before the model is built
    keras_yt.training.fit_candidate_generator(model, examples)

Several hosts: call `keras.distribution.initialize()` first in each process (see
`docs/distributed.md`); each process then feeds its own part of every global batch (numpy
arrays: set `dist.auto_shard_dataset = False`, Keras shards only a `tf.data.Dataset` itself).

Batches need not be multiples of the number of devices: under a distribution, `fit`,
`evaluate`, `predict` and `*_on_batch` of the keras_yt models pad numpy inputs with rows of
sample weight 0 (predictions of padding rows are dropped).
"""

from __future__ import annotations

import re

import keras
import numpy as np

from keras_yt._distributed_inputs import padded_rows

__all__ = ["data_parallel", "layout_map", "model_parallel", "padded_rows", "trim_padded_videos"]

_NEEDS_JAX = (
    "keras.distribution data/model parallelism needs KERAS_BACKEND=jax, the backend is {}; on "
    "TensorFlow use tf.distribute.MirroredStrategy"
)


def trim_padded_videos(model, num_videos: int):
    """A copy of a trained model with its video tables cut back to their first `num_videos` rows.

    After training with `num_videos` padded by `padded_rows` (so that the tables split evenly),
    the padding ids are never watched, but their rows of W and b are still scored: a model
    served as it is could recommend them. This copy has exactly `num_videos` rows in every
    video table (same weights for the real ids, same user vectors), is compiled with the
    model's default optimizer (fresh state) and is not laid out on any mesh: call it after the
    distribution's scope, or after `keras.distribution.set_distribution(None)`.

    Args:
        model: a built `CandidateGenerator` or `Ranker` with `num_videos >=` the given one.
        num_videos: the real vocabulary size (with the padding id 0).

    Returns:
        A new model of the same class and config, except `num_videos`.

    Example:

    >>> import numpy as np
    >>> from keras_yt.models import CandidateGenerator
    >>> padded = CandidateGenerator(num_videos=padded_rows(1682, 4), video_embedding_dim=8,
    ...                             max_history=5, hidden_units=(8,))
    >>> padded.build()
    >>> model = trim_padded_videos(padded, 1682)
    >>> W, b = model.get_output_embeddings()
    >>> W.shape, bool(np.array_equal(W, padded.get_output_embeddings()[0][:1682]))
    ((1682, 8), True)
    """
    if (not isinstance(num_videos, (int, np.integer)) or isinstance(num_videos, bool)
            or not 2 <= num_videos <= model.num_videos):
        raise ValueError(f"num_videos must be an integer in [2, {model.num_videos}] (the "
                         f"model's num_videos), got {num_videos!r}")
    model.build()
    config = dict(model.get_config(), num_videos=int(num_videos))
    if config.get("class_counts") is not None:
        config["class_counts"] = config["class_counts"][:num_videos]
    trimmed = type(model).from_config(config)
    trimmed.build()
    for target, source in zip(trimmed.weights, model.weights, strict=True):
        value = keras.ops.convert_to_numpy(source)
        target.assign(value[: target.shape[0]] if value.shape != tuple(target.shape) else value)
    trimmed.compile()
    return trimmed


def _prefix(model) -> str:
    return f"(?:.*/)?{re.escape(model.name)}/"


def _sharded_tables(model) -> list[tuple[str, str, int, tuple]]:
    """`(variable path regex, what, rows, axes)` of the tables of `model` to row-shard."""
    from keras_yt.models import CandidateGenerator, Ranker

    prefix = _prefix(model)
    if isinstance(model, CandidateGenerator):
        tables = [(prefix + "watch_embedding/embeddings", "num_videos", model.num_videos, 2)]
        if model.search_embedding is not None:
            tables.append((prefix + "search_embedding/embedding_bag/embeddings",
                           "search_num_bins", model.search_num_bins, 2))
        if not model.tie_output_embeddings:  # tied: W is the watch-history table
            tables.append((prefix + "softmax/output_embeddings", "num_videos",
                           model.num_videos, 2))
        if model.softmax.use_bias:
            tables.append((prefix + "softmax/output_biases", "num_videos", model.num_videos, 1))
    elif isinstance(model, Ranker):
        tables = [(prefix + "video_embedding/embeddings", "num_videos", model.num_videos, 2)]
    else:
        raise TypeError(
            f"layout_map takes a keras_yt CandidateGenerator or Ranker, got {type(model).__name__}"
        )
    return tables


def layout_map(model, mesh, model_axis: str = "model") -> keras.distribution.LayoutMap:
    """The `LayoutMap` that row-shards the large tables of a keras_yt model over `model_axis`.

    Sharded (rows split over the devices of `model_axis`, the other dimensions whole): for a
    `CandidateGenerator` the watch-history table (`watch_embedding`), the output embeddings W
    and biases b (`softmax`; with `tie_output_embeddings` W is the watch-history table) and the
    search-token table (`search_embedding`, when present); for a `Ranker` the video table
    (`video_embedding`). The optimizer's slots of a variable take its layout. Every other
    variable is replicated. The keys match the variable paths of the model when it is built
    under the distribution (`<model name>/<layer>/<variable>`), so build the model after
    `keras.distribution.set_distribution`.

    Args:
        model: a `CandidateGenerator` or `Ranker`, built or not.
        mesh: the `keras.distribution.DeviceMesh`; it must have an axis named `model_axis`.
        model_axis: the mesh axis the rows are split over.

    Returns:
        A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`.

    Raises:
        ValueError: `mesh` has no `model_axis`, or a table's row count is not a multiple of that
            axis' size (JAX shards evenly only; pad with `padded_rows`).

    Example:

    >>> import keras
    >>> from keras_yt.models import CandidateGenerator
    >>> model = CandidateGenerator(num_videos=100, video_embedding_dim=8, max_history=5,
    ...                            hidden_units=(8,))
    >>> mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"),
    ...                                      ["cpu:0", "cpu:1"])
    >>> layouts = layout_map(model, mesh)
    >>> layouts[f"{model.name}/softmax/output_embeddings"].axes  # the built model's path
    ('model', None)
    >>> layouts[f"{model.name}/relu_0/kernel"] is None  # replicated
    True
    """
    if model_axis not in mesh.axis_names:
        raise ValueError(f"the mesh has no axis {model_axis!r}: its axes are {mesh.axis_names}")
    shards = int(mesh.shape[list(mesh.axis_names).index(model_axis)])
    layouts = keras.distribution.LayoutMap(mesh)
    prefix = _prefix(model)
    for key, what, rows, ndim in _sharded_tables(model):
        if rows % shards:
            raise ValueError(
                f"{what} must be a multiple of {shards} (the size of mesh axis {model_axis!r}) "
                f"to split the rows of {key[len(prefix):]!r} evenly, got {rows}: use "
                f"{what}={padded_rows(rows, shards)} (keras_yt.distribution.padded_rows)"
            )
        layouts[key] = (model_axis,) + (None,) * (ndim - 1)
    return layouts


def _check_backend() -> None:
    if keras.backend.backend() != "jax":
        raise ValueError(_NEEDS_JAX.format(keras.backend.backend()))


def data_parallel(devices=None) -> keras.distribution.DataParallel:
    """`keras.distribution.DataParallel` over `devices`: variables replicated, batches split.

    Args:
        devices: device names (`"cpu:0"`, `"gpu:1"`, ...); `None` for all of them
            (`keras.distribution.list_devices()`, every process's after
            `keras.distribution.initialize`).

    Returns:
        The distribution; pass it to `keras.distribution.set_distribution` before building the
        model.

    Raises:
        ValueError: the backend is not JAX.

    Example:

    >>> import keras
    >>> dist = data_parallel()
    >>> dist.device_mesh.axis_names, dist.batch_dim_name
    (['batch'], 'batch')
    """
    _check_backend()
    devices = keras.distribution.list_devices() if devices is None else list(devices)
    return keras.distribution.DataParallel(devices=devices)


def model_parallel(model, model_parallel: int, devices=None) -> keras.distribution.ModelParallel:
    """`keras.distribution.ModelParallel` that row-shards the model's tables (`layout_map`).

    The mesh is `("batch", "model")` of shape `(n // model_parallel, model_parallel)` over the
    `n` devices: each table is split over `model_parallel` devices, each batch over
    `n // model_parallel` groups of them.

    Args:
        model: a `CandidateGenerator` or `Ranker`, not yet built.
        model_parallel: devices each table is split over (>= 1, dividing `n`).
        devices: device names; `None` for all of them (`keras.distribution.list_devices()`).

    Returns:
        The distribution; pass it to `keras.distribution.set_distribution` before building the
        model.

    Raises:
        ValueError: the backend is not JAX, `model_parallel` is not a positive divisor of the
            number of devices, or a table's row count is not a multiple of `model_parallel`
            (see `layout_map`).

    Example:

    >>> from keras_yt.models import CandidateGenerator
    >>> model = CandidateGenerator(num_videos=100, video_embedding_dim=8, max_history=5,
    ...                            hidden_units=(8,))
    >>> dist = model_parallel(model, model_parallel=2, devices=["cpu:0", "cpu:1"])
    >>> dist.device_mesh.shape
    (1, 2)
    """
    _check_backend()
    devices = keras.distribution.list_devices() if devices is None else list(devices)
    if (not isinstance(model_parallel, (int, np.integer)) or isinstance(model_parallel, bool)
            or model_parallel < 1):
        raise ValueError(f"model_parallel must be an integer >= 1, got {model_parallel!r}")
    if len(devices) % model_parallel:
        raise ValueError(
            f"model_parallel={model_parallel} must divide the number of devices ({len(devices)}):"
            f" the mesh is (devices // model_parallel, model_parallel)"
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_parallel, model_parallel), ("batch", "model"), devices
    )
    return keras.distribution.ModelParallel(
        layout_map=layout_map(model, mesh), batch_dim_name="batch"
    )
