"""TensorFlow backend helpers of `keras_yt` (picked by `keras_yt.backend` on TensorFlow).

Every layer does its arithmetic with `keras.ops` and stays backend-agnostic. The few things that
have no `keras.ops` equivalent live here and use TensorFlow directly:

* `is_ragged` / `ragged_to_dense`: accept a `tf.RaggedTensor` of ids (e.g. watch histories of
  different lengths) and turn it into padded dense ids (padding id 0) plus dense weights.
* `tokenize_queries`: string handling for `TokenBag` (lower-case, whitespace split, n-grams).
* `gather_rows`, `bag_sum_rows`: embedding lookups that read only the looked-up rows of a
  variable (and give row-sparse `tf.IndexedSlices` gradients).
* `row_sparse_parts`, `scatter_assign_rows`, `scatter_sub_rows`: row-wise updates for
  `keras_yt.optimizers.SparseAdagrad` (gradients of embedding lookups are `tf.IndexedSlices`).
* `replica_sum`: the global denominators of a loss under `tf.distribute.MirroredStrategy`.
* `bfloat16_storage_dtype`, `load_bfloat16`, `store_bfloat16`: bfloat16 slots are bfloat16
  variables here.
* `strings_to_tensors`: numpy string features (search queries) as `tf.string` tensors, since
  Keras' data adapters take numeric arrays only.

Keep this module small: anything that can be written with `keras.ops` belongs in the layers.
The other backends implement the same functions (`keras_yt.backend.jax`, `.generic`).
"""

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf


def is_ragged(x) -> bool:
    """Whether `x` is a `tf.RaggedTensor`.

    Args:
        x: any object.

    Returns:
        `True` for a `tf.RaggedTensor`, `False` otherwise.

    Example:

    >>> import tensorflow as tf
    >>> is_ragged(tf.ragged.constant([[1, 2], [3]]))
    True
    >>> is_ragged([[1, 2], [3, 0]])
    False
    """
    return isinstance(x, tf.RaggedTensor)


def ragged_to_dense(ids, weights=None):
    """Pads ragged `ids` (and optional ragged `weights`) into dense tensors.

    Padding uses id `0` (the padding / out-of-vocabulary id) and weight `0`, so that the padded
    positions contribute nothing to a bag.

    Args:
        ids: `tf.RaggedTensor` of integer ids, shape `(batch, None)`.
        weights: `None`, or a `tf.RaggedTensor` with the same row lengths as `ids`, or a dense
            tensor already of the padded shape.

    Returns:
        A tuple `(dense_ids, dense_weights)`; `dense_weights` is `None` when `weights` is `None`.

    Example:

    >>> import tensorflow as tf
    >>> ids, w = ragged_to_dense(tf.ragged.constant([[4, 2], [7]]))
    >>> ids.numpy().tolist(), w
    ([[4, 2], [7, 0]], None)
    """
    dense_ids = ids.to_tensor(default_value=0)
    if weights is None:
        return dense_ids, None
    if isinstance(weights, tf.RaggedTensor):
        tf.debugging.assert_equal(
            tf.cast(ids.row_splits, tf.int64), tf.cast(weights.row_splits, tf.int64),
            message="ragged weights must have the same row lengths as the ids",
        )
        weights = weights.to_tensor(default_value=0, shape=tf.shape(dense_ids, out_type=tf.int64))
    return dense_ids, weights


def tokenize_queries(queries, ngrams: Sequence[int], max_tokens: int | None = None):
    """Turns search queries into padded bags of lower-cased word n-grams.

    Each query is lower-cased (UTF-8 aware) and split on whitespace; its n-grams of every width
    in `ngrams` are formed *within that query* (words joined by one space); the tokens of all the
    queries of a row are put together in one bag, in the order: query 0 (all n-grams of width
    `ngrams[0]`, then `ngrams[1]`, ...), query 1, ...

    Args:
        queries: string tensor (or array) of shape `(batch,)` (one query per row) or
            `(batch, num_queries)`.
        ngrams: n-gram widths, e.g. `(1, 2)` for unigrams and bigrams.
        max_tokens: if set, keep only the first `max_tokens` tokens of a row and pad every row to
            exactly `max_tokens`.

    Returns:
        A tuple `(tokens, mask)`: a dense string tensor `(batch, T)` padded with `""` and a
        boolean tensor `(batch, T)` that is `True` on real tokens.

    Example:

    >>> tokens, mask = tokenize_queries(["Cat  videos", ""], ngrams=(1, 2))
    >>> [t.decode() for t in tokens.numpy()[0]]
    ['cat', 'videos', 'cat videos']
    >>> mask.numpy().tolist()
    [[True, True, True], [False, False, False]]
    """
    queries = tf.convert_to_tensor(queries, dtype=tf.string)
    if queries.shape.rank == 1:
        queries = queries[:, tf.newaxis]
    if queries.shape.rank != 2:
        raise ValueError(
            f"queries must have shape (batch,) or (batch, num_queries), got shape {queries.shape}"
        )
    num_queries = tf.shape(queries, out_type=tf.int64)[1]
    words = tf.strings.split(tf.strings.lower(tf.reshape(queries, [-1]), encoding="utf-8"))
    grams = [
        words if n == 1 else tf.strings.ngrams(words, ngram_width=n, separator=" ") for n in ngrams
    ]
    per_query = grams[0] if len(grams) == 1 else tf.concat(grams, axis=1)
    tokens = tf.RaggedTensor.from_uniform_row_length(per_query, num_queries).merge_dims(1, 2)
    if max_tokens is not None:
        tokens = tokens[:, :max_tokens]
        dense = tokens.to_tensor(default_value="", shape=[None, max_tokens])
    else:
        dense = tokens.to_tensor(default_value="")
    mask = tf.sequence_mask(tokens.row_lengths(), maxlen=tf.shape(dense)[1])
    return dense, mask


# --- Row-sparse gradients (used by keras_yt.optimizers.SparseAdagrad) -----------------------------


def bag_sum_rows(table, ids, valid):
    """`Σ_l table[ids[b, l]]` over the positions `l` where `valid[b, l]`, for every row `b`.

    The embedding bag's sum the way `tf.nn.embedding_lookup_sparse` computes it: the distinct
    valid ids of the batch are found first, only their rows are read from `table`
    (`gather_rows`), and a fused sparse segment sum adds them up per row. The gradient with
    respect to `table` is then a `tf.IndexedSlices` with one (already summed) row per distinct
    id, and no `(batch * L, d)` tensor is built in the forward or the backward pass.

    Args:
        table: a variable (or tensor) of shape `(num_rows, d)`.
        ids: integer tensor `(batch, L)` of row indices; entries where `valid` is false are
            ignored (they may be out of range).
        valid: boolean tensor `(batch, L)`.

    Returns:
        A tensor `(batch, d)` in the dtype of `table`; a row without valid ids gives zeros.
    """
    ids = tf.convert_to_tensor(ids)
    valid = tf.convert_to_tensor(valid)
    batch = tf.shape(ids)[0]
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(ids))
    segments = tf.boolean_mask(rows, valid)
    # `unique_with_counts`, not `unique`: Grappler's SimplifyEmbeddingLookup rewrite turns
    # `segment_sum(gather(table, unique(x)[0]), unique(x)[1])` into `segment_sum(table, x)`, a
    # read of the whole table (a full copy on every step once the table is in copy-on-read mode,
    # which row-wise optimizer updates put it in); it does not match `UniqueWithCounts`.
    unique, position, _ = tf.unique_with_counts(tf.boolean_mask(ids, valid))
    vectors = gather_rows(table, unique)
    return tf.sparse.segment_sum(vectors, position, segments, num_segments=batch)


def row_sparse_parts(gradient):
    """Returns `(unique_row_indices, summed_row_values)` of a row-sparse gradient, else `None`.

    On TensorFlow an embedding lookup's gradient is a `tf.IndexedSlices` whose indices may repeat
    (a video watched by several users of the batch); repeated rows are summed here so that an
    optimizer sees each touched row once, as it would in the dense gradient.
    """
    if not isinstance(gradient, tf.IndexedSlices):
        return None
    unique, position = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(unique)[0])
    return unique, values


def with_row_values(gradient, values):
    """The row-sparse `gradient` with its row values replaced by `values` (same rows)."""
    return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)


def rows_where(keep, *tensors) -> tuple:
    """The rows of `tensors` where `keep` is true (shapes follow the data).

    The all-position loss of sequence windows keeps only the real positions (44 % of them on
    MovieLens), so the softmax is never computed at padding.

    Args:
        keep: boolean tensor `(n,)`.
        *tensors: tensors of `n` rows each.

    Returns:
        The kept rows of each tensor, as a tuple.
    """
    rows = tf.reshape(tf.where(keep), (-1,))  # found once, gathered from every tensor
    return tuple(tf.gather(t, rows) for t in tensors)


def unique_rows(gradient):
    """A row-sparse `gradient` with each row once (repeated rows summed); others unchanged."""
    rows = row_sparse_parts(gradient)
    if rows is None:
        return gradient
    return tf.IndexedSlices(rows[1], rows[0], gradient.dense_shape)


def _tf_variable(variable):
    """The `tf.Variable` behind a `keras.Variable` (itself for anything else)."""
    if isinstance(variable, keras.Variable):
        # Not `variable.value`: inside a mixed-precision layer call that is an autocast copy of
        # the whole table.
        inner = getattr(variable, "_value", None)
        return inner if isinstance(inner, tf.Variable) else variable.value
    return variable


def gather_rows(table, indices):
    """`table[indices]` along axis 0, reading only those rows when `table` is a variable.

    `keras.ops.take(variable, ids)` first reads the whole variable (`ReadVariableOp`) and then
    gathers. Once a variable has been updated with a scatter (as `SparseAdagrad` does), TensorFlow
    keeps it in copy-on-read mode, so that full read copies the entire table on every step:
    O(num_rows * d) per lookup, about 0.1 s for a 1M x 256 float32 table. Gathering from the
    variable itself (`ResourceGather`) costs O(len(indices) * d), and its gradient is a
    `tf.IndexedSlices` as well. The rows keep the variable's dtype (cast them to the compute
    dtype afterwards).

    Args:
        table: a `keras.Variable`, a `tf.Variable` or a tensor of shape `(num_rows, ...)`.
        indices: integer tensor of row indices in `[0, num_rows)`, any shape.

    Returns:
        A tensor of shape `indices.shape + table.shape[1:]`.
    """
    if isinstance(table, (keras.Variable, tf.Variable)):
        return tf.gather(_tf_variable(table), indices)
    return keras.ops.take(table, indices, axis=0)


def scatter_assign_rows(variable, indices, rows) -> None:
    """Writes `rows` into `variable[indices]` without touching the other rows."""
    _tf_variable(variable).scatter_update(tf.IndexedSlices(rows, indices))


def scatter_sub_rows(variable, indices, rows) -> None:
    """Subtracts `rows` from `variable[indices]` without touching the other rows."""
    _tf_variable(variable).scatter_sub(tf.IndexedSlices(rows, indices))


def bfloat16_storage_dtype() -> str:
    """`"bfloat16"`: TensorFlow scatters rows into bfloat16 variables in place."""
    return "bfloat16"


def load_bfloat16(values):
    """float32 values of a bfloat16 tensor (exact)."""
    return tf.cast(values, tf.float32)


def store_bfloat16(values):
    """`values` rounded to the nearest bfloat16 (ties to even)."""
    return tf.cast(values, tf.bfloat16)


def table_initializer(initializer):
    """`initializer` itself: TensorFlow draws a table without table-sized temporaries beyond it."""
    return keras.initializers.get(initializer)


# --- tf.distribute --------------------------------------------------------------------------------


def replica_sum(value):
    """The sum of `value` over the replicas of a `tf.distribute` strategy (e.g. a batch size).

    Under `tf.distribute.MirroredStrategy` a train step runs once per replica on that replica's
    share of the global batch, and the replicas' gradients are summed. A loss that divides by a
    count or a weight sum must divide by the *global* one for that sum to be the gradient of the
    global batch's loss: `replica_sum(local_count)` is that denominator (an all-reduce). Outside
    a replica context, or with one replica, `value` is returned unchanged.

    Args:
        value: a tensor (typically a scalar), the same shape on every replica.

    Returns:
        The sum over the replicas, same shape and dtype as `value`.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


# --- String features ------------------------------------------------------------------------------


def strings_to_tensors(features, tokenize=None):
    """Turns numpy string arrays of a feature dict into `tf.string` tensors.

    Keras' data adapters take numeric numpy arrays but not numpy string arrays (dtype `U`, `S` or
    object); `CandidateGenerator.fit/evaluate/predict` pass search queries through this first.
    `tokenize` is ignored here (the model tokenises `tf.string` tensors itself); it is used on
    backends whose tensors hold no strings (`keras_yt.backend.generic.strings_to_tensors`).
    """
    if not isinstance(features, dict):
        return features
    converted = {}
    for name, value in features.items():
        if isinstance(value, (list, tuple)) or (
            hasattr(value, "dtype") and getattr(value.dtype, "kind", None) in ("U", "S", "O")
        ):
            array = np.asarray(value)
            if array.dtype.kind in "USO":
                value = tf.constant(array.astype(str))
        converted[name] = value
    return converted
