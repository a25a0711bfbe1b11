"""A keras_yt model's batches and variables under a `keras.distribution` (JAX).

What the models need from the distribution without knowing the models themselves (so that
`keras_yt.models` imports from here, and `keras_yt.distribution`, which writes the models'
layouts, imports from both): the row multiple a batch must have (`_batch_multiple`), numpy
inputs padded to it with rows of sample weight 0 (`_pad_inputs`), and the placement of variables
created before the distribution was set (`_place_variables`). `padded_rows` is public as
`keras_yt.distribution.padded_rows`.
"""

from __future__ import annotations

import keras
import numpy as np


def padded_rows(num_rows: int, shards: int) -> int:
    """The smallest multiple of `shards` that is at least `num_rows`.

    A table row-sharded over `shards` devices needs a row count divisible by `shards`: pad
    `num_videos` to this, and cut the trained tables back with `trim_padded_videos` before the
    model is served (the extra ids are never watched, but their rows would still be scored).

    Args:
        num_rows: rows needed (e.g. `num_videos`), an integer >= 0.
        shards: devices the rows are split over, an integer >= 1.

    Returns:
        The padded row count.

    Example:

    >>> padded_rows(1682, 4), padded_rows(1684, 4), padded_rows(10, 1)
    (1684, 1684, 10)
    """
    for name, value, minimum in (("num_rows", num_rows, 0), ("shards", shards, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(-(-num_rows // shards) * shards)



def _batch_multiple() -> int:
    """Rows each process's batches must be a multiple of under the current distribution.

    JAX splits a batch evenly over the devices of the mesh's batch axis (those of this process
    when several processes feed one global batch); 1 without a distribution.
    """
    if keras.backend.backend() != "jax":
        return 1
    dist = keras.distribution.distribution()
    if dist is None or getattr(dist, "batch_dim_name", None) is None:
        return 1
    import jax

    mesh = dist.device_mesh
    size = int(mesh.shape[list(mesh.axis_names).index(dist.batch_dim_name)])
    processes = jax.process_count()
    return size // processes if size % processes == 0 else size


def _place_variables(model) -> None:
    """Lays out the variables of `model` created before the distribution was set.

    `layout_map` needs the model, so the model is constructed before
    `keras.distribution.set_distribution`; its seed generators (sampled softmax, dropout) then
    hold their state on one device, which a multi-device (or multi-process) step cannot take.
    Built layers' variables are left alone (build the model under the distribution). Called
    by `build()` and by `fit/evaluate/predict` of the keras_yt models (which build the model
    first: Keras' own build is traced, where variables cannot be moved).
    """
    if keras.backend.backend() != "jax":
        return
    dist = keras.distribution.distribution()
    if dist is None:
        return
    import jax

    for variable in model.variables:
        if isinstance(variable.value, jax.core.Tracer):
            return  # inside Keras' traced symbolic build: placed at fit/evaluate/predict
        if getattr(variable, "_layout", None) is None and isinstance(
                getattr(variable.value, "sharding", None), jax.sharding.SingleDeviceSharding):
            variable._layout = dist.get_variable_layout(variable)
            variable.assign(np.asarray(variable.value))


def _rows(value) -> int | None:
    shape = getattr(value, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else None


def _is_array(value) -> bool:
    return _rows(value) is not None and not isinstance(value, (str, bytes))


def _pad_inputs(x, y=None, sample_weight=None, multiple: int | None = None):
    """Pads arrays `(x, y, sample_weight)` to a multiple of `multiple` rows.

    Padding rows repeat row 0 of every array and get sample weight 0 (`sample_weight` is made
    of ones when it is `None` and rows are added). Inputs that are not dicts/arrays (a
    `tf.data.Dataset`, a generator) are returned as they are.

    Returns:
        `(x, y, sample_weight, num_rows)`: the padded inputs and the rows before padding
        (`None` when nothing was padded).
    """
    multiple = _batch_multiple() if multiple is None else multiple
    arrays = keras.tree.flatten(x)
    if multiple <= 1 or not arrays or not all(_is_array(a) for a in arrays):
        return x, y, sample_weight, None
    rows = _rows(arrays[0])
    extra = padded_rows(rows, multiple) - rows
    if extra == 0 or rows == 0:
        return x, y, sample_weight, None

    def pad(value):
        if value is None:
            return None
        head = keras.ops.convert_to_numpy(value[:1])
        return np.concatenate([keras.ops.convert_to_numpy(value),
                               np.repeat(head, extra, axis=0)], axis=0)

    weight = (np.ones((rows,), "float32") if sample_weight is None
              else keras.ops.convert_to_numpy(sample_weight))
    weight = np.concatenate([weight, np.zeros((extra, *weight.shape[1:]), weight.dtype)])
    return keras.tree.map_structure(pad, x), pad(y), weight, rows
