"""Which variables are embedding tables read only row by row in training.

The layers that own such tables (`EmbeddingBag`, `SampledSoftmax`) mark them; the row-wise
optimizers (`SparseAdam`'s compact moments) and the JAX train step (`keras_yt.backend.jax`) ask.
A ground-floor module: the layers, the optimizers and the backends all import it.
"""

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
