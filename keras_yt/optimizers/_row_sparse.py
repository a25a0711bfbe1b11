"""What the row-wise optimizers share: clipping row-sparse gradients without densifying them, and
which variables are embedding tables (whose slots may be kept compact)."""

from keras_yt import backend

_TABLE_MARK = "_keras_yt_embedding_table"


def mark_embedding_table(variable, read_by_rows: bool = True) -> None:
    """Marks `variable` as read only row by row in training (`backend.gather_rows`).

    Set by the layers that own such tables (`EmbeddingBag`, `SampledSoftmax`'s output embeddings
    and biases); `SparseAdam` keeps compact moments for marked rank-2 tables (see its
    `compact_table_moments`) and the JAX train step takes their gradients row by row.
    `read_by_rows=False` removes the mark (a table that is also read whole in training).
    """
    setattr(variable, _TABLE_MARK, bool(read_by_rows))


def is_row_read(variable) -> bool:
    """Whether `variable` was marked by `mark_embedding_table` (read only row by row in
    training, through `backend.gather_rows`)."""
    return bool(getattr(variable, _TABLE_MARK, False))


def is_embedding_table(variable) -> bool:
    """Whether `variable` is a rank-2 variable marked by `mark_embedding_table`."""
    return is_row_read(variable) and len(variable.shape) == 2


class RowSparseClippingMixin:
    """Base of the optimizers that take row-sparse gradients (also `RowGradient` on JAX).

    `clipnorm`, `global_clipnorm` and `clipvalue` act on the summed rows of row-sparse
    gradients: Keras' clipping densifies them (and `tf.clip_by_norm` on repeated rows uses the
    wrong norm). Clipping the summed rows gives exactly the clipped dense gradient: the zero
    rows add nothing to a norm and stay zero.
    """

    takes_row_gradients = True

    def _clip_gradients(self, grads):
        if not (self.clipnorm or self.global_clipnorm or self.clipvalue):
            return grads
        grads = [g if g is None else backend.unique_rows(g) for g in grads]
        rows = [backend.row_sparse_parts(g) is not None for g in grads]
        values = [g.values if is_rows else g for g, is_rows in zip(grads, rows)]
        values = super()._clip_gradients(values)
        return [
            backend.with_row_values(g, v) if is_rows else v
            for g, v, is_rows in zip(grads, values, rows)
        ]
