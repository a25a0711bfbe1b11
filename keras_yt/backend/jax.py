"""JAX backend helpers: dense padded ids, dense gradients, strings tokenised outside `jit`.

* Gradients are dense: `jax.grad` of an embedding lookup is a table-sized array (a scatter-add
  of the looked-up rows into zeros), `row_sparse_parts` returns `None` and
  `keras_yt.optimizers.SparseAdagrad` takes `keras.optimizers.Adagrad`'s dense path (see
  `docs/performance.md` for the measured cost and the row-sparse route).
* Ids must be dense `(batch, L)` arrays padded with id `0`: a `tf.RaggedTensor` raises a
  `ValueError` that says how to pad it.
* JAX arrays hold no strings: search queries are tokenised eagerly or in a `tf.data` pipeline
  (`TokenBag.token_ids`, TensorFlow's string ops imported on first use) and reach the model as
  integer token ids; `strings_to_tensors` does it for numpy query arrays given to
  `fit/evaluate/predict`.
"""

from __future__ import annotations

import contextlib
import threading

import keras
from keras import ops

from keras_yt.backend import generic
from keras_yt.backend.generic import (
    is_ragged,
    ragged_to_dense,
    row_sparse_parts,
    strings_to_tensors,
    tokenize_queries,
    unique_rows,
    with_row_values,
)

__all__ = [
    "bag_sum_rows",
    "capture_rows",
    "gather_rows",
    "is_ragged",
    "ragged_to_dense",
    "row_sparse_parts",
    "scatter_assign_rows",
    "scatter_sub_rows",
    "strings_to_tensors",
    "tokenize_queries",
    "unique_rows",
    "with_row_values",
]


def _rows(indices):
    return ops.reshape(ops.cast(indices, "int32"), (-1,))


def scatter_assign_rows(variable, indices, rows) -> None:
    """Writes `rows` into `variable[indices]` (`.at[].set`; in place under a donating `jit`)."""
    rows = ops.cast(rows, variable.dtype)
    variable.assign(variable.value.at[_rows(indices)].set(rows))


def scatter_sub_rows(variable, indices, rows) -> None:
    """Subtracts `rows` from `variable[indices]` (`.at[].add`: repeated indices add up)."""
    rows = ops.cast(rows, variable.dtype)
    variable.assign(variable.value.at[_rows(indices)].add(-rows))


# --- Row-sparse gradients on JAX: differentiate with respect to the gathered rows ---------------

_capture = threading.local()


class RowCapture:
    """Lookups of some tables, recorded so that gradients are taken w.r.t. the rows read.

    `jax.grad` with respect to a table gives a table-sized array. Inside `capture_rows`, each
    `gather_rows(table, ids)` of a captured table returns `stop_gradient(table)[ids] + delta`,
    where `delta` is the next array of `deltas` (zeros): the gradient with respect to `delta`
    is the gradient of the rows read, `(len(ids), d)`, and `(ids, grad_delta)` pairs are a
    row-sparse gradient of the table (repeated ids to be summed). With `deltas=None` the
    lookups are only recorded (their shapes, to make the zeros: run the forward pass once under
    `jax.eval_shape`).

    Attributes:
        lookups: `[(variable, ids)]` in call order.
    """

    def __init__(self, variables, deltas=None):
        self.variables = list(variables)
        self.deltas = None if deltas is None else list(deltas)
        self.lookups = []

    def captures(self, table) -> bool:
        return any(table is v for v in self.variables)

    def gather(self, table, indices):
        import jax

        ids = _rows(indices)
        rows = ops.take(jax.lax.stop_gradient(ops.convert_to_tensor(table)), ids, axis=0)
        if self.deltas is not None:
            rows = rows + self.deltas[len(self.lookups)]
        self.lookups.append((table, ids))
        return ops.reshape(rows, (*ops.shape(indices), *ops.shape(rows)[1:]))


@contextlib.contextmanager
def capture_rows(variables, deltas=None):
    """Context in which `gather_rows` / `bag_sum_rows` of `variables` go through a `RowCapture`.

    Args:
        variables: the `keras.Variable` tables whose lookups are captured.
        deltas: `None` (record the lookups only) or one zeros array `(n_k, d)` per lookup, in
            call order (`n_k` = number of ids of lookup `k`).

    Yields:
        The `RowCapture`.

    Example:

    >>> import jax, keras, numpy as np
    >>> table = keras.Variable(np.ones((5, 2), "float32"))
    >>> ids = np.array([1, 3, 1])
    >>> def loss(delta):
    ...     with capture_rows([table], [delta]):
    ...         return keras.ops.sum(gather_rows(table, ids) ** 2)
    >>> np.asarray(jax.grad(loss)(np.zeros((3, 2), "float32"))).tolist()
    [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]
    """
    previous = getattr(_capture, "active", None)
    _capture.active = RowCapture(variables, deltas)
    try:
        yield _capture.active
    finally:
        _capture.active = previous


def gather_rows(table, indices):
    """`table[indices]` along axis 0 (`keras.ops.take`); captured inside `capture_rows`.

    Args:
        table: a `keras.Variable` or a tensor of shape `(num_rows, ...)`.
        indices: integer tensor of row indices in `[0, num_rows)`, any shape.

    Returns:
        A tensor of shape `indices.shape + table.shape[1:]`.
    """
    capture = getattr(_capture, "active", None)
    if capture is not None and isinstance(table, keras.Variable) and capture.captures(table):
        return capture.gather(table, indices)
    return generic.gather_rows(table, indices)


def bag_sum_rows(table, ids, valid):
    """`Σ_l table[ids[b, l]]` over the positions `l` where `valid[b, l]` (see `generic`)."""
    ids = ops.convert_to_tensor(ids)
    safe_ids = ops.where(valid, ids, ops.zeros_like(ids))
    vectors = gather_rows(table, safe_ids)
    return ops.einsum("bl,bld->bd", ops.cast(valid, vectors.dtype), vectors)
