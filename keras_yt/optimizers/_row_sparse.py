"""What the row-wise optimizers share: clipping row-sparse gradients without densifying them.

Which variables are embedding tables (whose slots may be kept compact) is `keras_yt._table_marks`.
"""

from keras_yt import backend


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
