"""What the row-wise optimizers share: clipping row-sparse gradients without densifying them."""

from keras_yt import backend


class RowSparseClippingMixin:
    """`clipnorm`, `global_clipnorm` and `clipvalue` on the summed rows of row-sparse gradients.

    Keras' clipping densifies row-sparse gradients (and `tf.clip_by_norm` on repeated rows uses
    the wrong norm). Clipping the summed rows gives exactly the clipped dense gradient: the zero
    rows add nothing to a norm and stay zero.
    """

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
