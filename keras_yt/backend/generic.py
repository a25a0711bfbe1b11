"""Backend helpers written with `keras.ops` only: any Keras backend without its own module.

Gradients are dense on these backends: `row_sparse_parts` returns `None`, so
`keras_yt.optimizers.SparseAdagrad` takes `keras.optimizers.Adagrad`'s dense path, and an
embedding lookup's gradient is a table-sized array. Ids must be dense and padded (id `0`);
strings are tokenised outside the model (see `TokenBag` and `strings_to_tensors`), with
TensorFlow's string ops, imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops


def _is_tf_type(x, type_name: str) -> bool:
    """Whether `x` is a TensorFlow `type_name` (checked without importing TensorFlow)."""
    cls = type(x)
    return cls.__name__ == type_name and cls.__module__.startswith("tensorflow")


def is_ragged(x) -> bool:
    """Whether `x` is a `tf.RaggedTensor` (TensorFlow is not imported to find out).

    Args:
        x: any object.

    Returns:
        `True` for a `tf.RaggedTensor`, `False` otherwise.

    Example:

    >>> is_ragged([[1, 2], [3, 0]])
    False
    """
    return _is_tf_type(x, "RaggedTensor")


def ragged_to_dense(ids, weights=None):
    """Ragged ids are accepted on the TensorFlow backend only: raises a `ValueError`.

    On the other backends pad ragged ids in the input pipeline, with id `0` (and weight `0`):
    `ids.to_tensor(default_value=0)` for a `tf.RaggedTensor`, or `keras.utils.pad_sequences`.
    """
    raise ValueError(
        f"Ragged ids are accepted on the TensorFlow backend only; on the "
        f"{keras.backend.backend()!r} backend pass dense ids of shape (batch, L) padded with id 0 "
        "(and weights padded with 0), e.g. ragged.to_tensor(default_value=0) or "
        f"keras.utils.pad_sequences(lists, padding='post'); got a {type(ids).__name__}"
    )


def tokenize_queries(queries, ngrams: Sequence[int], max_tokens: int | None = None):
    """Search queries to padded bags of word n-grams, with TensorFlow's string ops.

    Same contract as `keras_yt.backend.tensorflow.tokenize_queries` (strings have no tensor type
    on this backend): TensorFlow is imported on the first call. Returns TensorFlow tensors, for
    the `keras.layers.Hashing` layer that follows; call it eagerly or inside a `tf.data`
    pipeline, not inside a compiled (`jit`) function.
    """
    from keras_yt.backend import tensorflow as tf_backend

    return tf_backend.tokenize_queries(queries, ngrams, max_tokens)


def gather_rows(table, indices):
    """`table[indices]` along axis 0 (`keras.ops.take`).

    Args:
        table: a `keras.Variable` or a tensor of shape `(num_rows, ...)`.
        indices: integer tensor of row indices in `[0, num_rows)`, any shape.

    Returns:
        A tensor of shape `indices.shape + table.shape[1:]`.
    """
    return ops.take(table, indices, axis=0)


def bag_sum_rows(table, ids, valid):
    """`Σ_l table[ids[b, l]]` over the positions `l` where `valid[b, l]`, for every row `b`.

    Args:
        table: a variable (or tensor) of shape `(num_rows, d)`.
        ids: integer tensor `(batch, L)`; entries where `valid` is false are ignored.
        valid: boolean tensor `(batch, L)`.

    Returns:
        A tensor `(batch, d)` in the dtype of `table`; a row without valid ids gives zeros.
    """
    ids = ops.convert_to_tensor(ids)
    safe_ids = ops.where(valid, ids, ops.zeros_like(ids))
    vectors = gather_rows(table, safe_ids)
    return ops.einsum("bl,bld->bd", ops.cast(valid, vectors.dtype), vectors)


def row_sparse_parts(gradient):
    """`None`: gradients are dense on this backend (the optimizer takes its dense path)."""
    return None


def with_row_values(gradient, values):
    """Dense gradients carry no rows: `values` is the whole gradient."""
    return values


def unique_rows(gradient):
    """Dense gradients are returned unchanged."""
    return gradient


def scatter_assign_rows(variable, indices, rows) -> None:
    """Writes `rows` into `variable[indices]` (distinct indices)."""
    indices = ops.cast(ops.reshape(indices, (-1, 1)), "int32")
    variable.assign(ops.scatter_update(variable, indices, ops.cast(rows, variable.dtype)))


def scatter_sub_rows(variable, indices, rows) -> None:
    """Subtracts `rows` from `variable[indices]` (distinct indices)."""
    current = ops.take(variable, ops.reshape(indices, (-1,)), axis=0)
    scatter_assign_rows(variable, indices, current - ops.cast(rows, variable.dtype))


def bfloat16_storage_dtype() -> str:
    """The dtype of a variable that holds bfloat16 values (an optimizer's compact slots).

    `"bfloat16"` here and on TensorFlow; on JAX `"uint16"`, the values' bits (XLA:CPU
    scatters rows into a bfloat16 array by converting the whole array, not into a uint16 one).
    `load_bfloat16` and `store_bfloat16` convert between it and float32.

    Returns:
        The dtype name.

    Example:

    >>> bfloat16_storage_dtype()
    'bfloat16'
    """
    return "bfloat16"


def load_bfloat16(values):
    """float32 values of a tensor read from a `bfloat16_storage_dtype()` variable (exact).

    Args:
        values: a tensor of that dtype (e.g. rows gathered from the variable).

    Returns:
        A float32 tensor of the same shape.
    """
    return ops.cast(values, "float32")


def store_bfloat16(values):
    """`values` rounded to the nearest bfloat16, in `bfloat16_storage_dtype()`.

    Args:
        values: a float tensor.

    Returns:
        A tensor of the same shape, ready to be written into a `bfloat16_storage_dtype()`
        variable.
    """
    return ops.cast(values, "bfloat16")


def table_initializer(initializer):
    """The initializer to build an embedding table of `initializer`'s values with.

    The same initializer here and on TensorFlow. On JAX, a table of at least
    `keras_yt.backend.jax.ROW_BLOCK_INIT_MIN_SIZE` elements is drawn from the same distribution a
    block of rows at a time (Keras' JAX initialisers hold about three table-sized temporaries
    while they draw one: 4.2 GiB of peak memory for a 1M × 256 float32 table, against 1.8 GiB
    drawn by blocks, measured).

    Args:
        initializer: a Keras initializer (object, name or callable).

    Returns:
        An initializer to give `add_weight`.

    Example:

    >>> tuple(table_initializer("zeros")((2, 3)).shape)
    (2, 3)
    """
    return keras.initializers.get(initializer)


def replica_sum(value):
    """`value`: a train step sees the whole global batch on this backend (one replica)."""
    return value


def rows_where(keep, *tensors) -> tuple:
    """The rows of `tensors` where `keep` is true, where shapes may depend on data; else all.

    A compiled step on this backend has static shapes: the tensors come back unchanged, and the
    caller's weights (zero where `keep` is false) leave the dropped rows out of its sums.

    Args:
        keep: boolean tensor `(n,)`.
        *tensors: tensors of `n` rows each.

    Returns:
        `tensors`, as a tuple.
    """
    return tensors


def _is_string_value(value) -> bool:
    if isinstance(value, (list, tuple)):
        return np.asarray(value).dtype.kind in "USO"
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    return getattr(dtype, "kind", None) in ("U", "S", "O") or getattr(dtype, "name", "") == "string"


def strings_to_tensors(features, tokenize: Callable | None = None):
    """Replaces the string features of a feature dict by their token ids (computed here).

    Tensors on this backend cannot hold strings, so search queries are tokenised before they
    reach the model: `tokenize(name, queries)` (the model's `TokenBag.token_ids`) turns each
    string array (numpy `U`/`S`/`O`, list, or `tf.string` tensor) into integer token ids.

    A `tf.data.Dataset` whose elements are feature dicts (or `(features, labels[, weights])`)
    is mapped the same way: its `tf.string` features become token ids inside the pipeline.

    Args:
        features: a dict of features or a `tf.data.Dataset` (anything else is returned
            unchanged).
        tokenize: `(name, queries) -> int ids`; required if `features` holds strings.

    Returns:
        The dict with string features replaced by numpy int32 token ids (or the mapped dataset).
    """
    if _is_tf_type(features, "DatasetV2") or (
        hasattr(features, "element_spec") and type(features).__module__.startswith("tensorflow")
    ):
        return _tokenize_dataset(features, tokenize)
    if not isinstance(features, dict):
        return features
    converted = {}
    for name, value in features.items():
        if _is_string_value(value):
            if tokenize is None:
                raise ValueError(
                    f"Feature {name!r} holds strings, which the {keras.backend.backend()!r} "
                    "backend cannot carry: turn queries into token ids in the input pipeline "
                    "(TokenBag.token_ids) first"
                )
            value = np.asarray(keras.ops.convert_to_numpy(tokenize(name, value)), dtype="int32")
        converted[name] = value
    return converted


def _tokenize_dataset(dataset, tokenize):
    """Maps the `tf.string` features of a `tf.data.Dataset` of feature dicts to token ids."""
    spec = dataset.element_spec
    features_spec = spec[0] if isinstance(spec, tuple) else spec
    if not isinstance(features_spec, dict):
        return dataset
    names = [n for n, s in features_spec.items() if getattr(s.dtype, "name", "") == "string"]
    if not names:
        return dataset
    if tokenize is None:
        raise ValueError(
            f"Features {names} hold strings, which the {keras.backend.backend()!r} backend cannot "
            "carry: map them to token ids (TokenBag.token_ids) in the dataset first"
        )

    def convert(features):
        return {**features, **{name: tokenize(name, features[name]) for name in names}}

    if isinstance(spec, tuple):
        return dataset.map(lambda features, *rest: (convert(features), *rest))
    return dataset.map(convert)
