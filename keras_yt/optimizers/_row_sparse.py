"""What the row-wise optimizers share: the row-sparse update step and clipping row-sparse
gradients without densifying them.

Which variables are embedding tables (whose slots may be kept compact) is `keras_yt._table_marks`.
"""

import ml_dtypes
import numpy as np
from keras import ops

from keras_yt import backend


class RowSparseOptimizerMixin:
    """Base of the optimizers that take row-sparse gradients (also `RowGradient` on JAX).

    The update step: for a row-sparse gradient (`backend.row_sparse_parts` gives its distinct
    rows and their summed values) only the touched rows of the slot variables are read
    (`backend.gather_rows`), given the optimizer's rule (`_row_rule`) and written back
    (`backend.scatter_assign_rows`), and the rule's step is subtracted from the same rows of the
    variable (`_subtract_rows`, `backend.scatter_sub_rows` unless a subclass says otherwise).
    Dense gradients go to `_dense_update_step` (the Keras optimizer's own step by default).

    A subclass puts this mixin before its Keras optimizer and says which slots a variable has
    (`_row_slots`) and how one step changes them (`_row_rule`).

    Slots of bfloat16 values (variables of `backend.bfloat16_storage_dtype()`: bfloat16, or their
    bits on JAX) are read as float32 and rounded back to bfloat16 when written, so `_row_rule`
    computes in float32 on every backend; a saved optimizer holds them as bfloat16 on every
    backend (a `.keras` file moves between TensorFlow and JAX).

    `clipnorm`, `global_clipnorm` and `clipvalue` act on the summed rows of row-sparse
    gradients: Keras' clipping densifies them (and `tf.clip_by_norm` on repeated rows uses the
    wrong norm). Clipping the summed rows gives exactly the clipped dense gradient: the zero
    rows add nothing to a norm and stay zero.
    """

    takes_row_gradients = True

    def _row_slots(self, variable) -> list:
        """The slot variables of `variable` that `_row_rule` reads and writes, in its order."""
        raise NotImplementedError

    def _row_rule(self, variable, slot_rows: list, gradient, learning_rate) -> tuple:
        """One step of the optimizer on some rows (or on whole variables).

        Args:
            variable: the variable updated (for its dtype and what kind of slots it has).
            slot_rows: the current rows of `_row_slots(variable)`, in that order.
            gradient: the gradient rows, cast to `variable.dtype`.
            learning_rate: the step's learning rate.

        Returns:
            `(new_slot_rows, step)`: the slots' new rows (a list in the same order) and what to
            subtract from the variable's rows.
        """
        raise NotImplementedError

    def _dense_update_step(self, gradient, variable, learning_rate):
        """The step for a dense gradient: the Keras optimizer's own."""
        return super().update_step(gradient, variable, learning_rate)

    @staticmethod
    def _slot_numbers(slot, stored):
        """Values read from `slot` as numbers (bfloat16 slots as float32)."""
        if slot.dtype == backend.bfloat16_storage_dtype():
            return backend.load_bfloat16(stored)
        return stored

    @staticmethod
    def _slot_stored(slot, numbers):
        """`numbers` in `slot`'s storage dtype (rounded to nearest for bfloat16 slots)."""
        if slot.dtype == backend.bfloat16_storage_dtype():
            return backend.store_bfloat16(numbers)
        return ops.cast(numbers, slot.dtype)

    def _rule_update_dense(self, gradient, variable, learning_rate) -> None:
        """`_row_rule` applied to whole variables (for dense gradients of rule-only slots)."""
        slots = self._row_slots(variable)
        new_values, step = self._row_rule(
            variable, [self._slot_numbers(slot, slot.value) for slot in slots],
            ops.cast(gradient, variable.dtype), learning_rate,
        )
        for slot, value in zip(slots, new_values):
            slot.assign(self._slot_stored(slot, value))
        variable.assign_sub(step)

    def _subtract_rows(self, variable, indices, step) -> None:
        """Subtracts `step` from the (distinct) rows `indices` of `variable`."""
        backend.scatter_sub_rows(variable, indices, step)

    def update_step(self, gradient, variable, learning_rate):
        rows = backend.row_sparse_parts(gradient)
        if rows is None:
            return self._dense_update_step(gradient, variable, learning_rate)
        indices, values = rows
        slots = self._row_slots(variable)
        new_rows, step = self._row_rule(
            variable,
            [self._slot_numbers(slot, backend.gather_rows(slot, indices)) for slot in slots],
            ops.cast(values, variable.dtype), learning_rate,
        )
        for slot, slot_rows in zip(slots, new_rows):
            backend.scatter_assign_rows(slot, indices, self._slot_stored(slot, slot_rows))
        self._subtract_rows(variable, indices, step)

    @staticmethod
    def _holds_bfloat16_bits(variable) -> bool:
        storage = backend.bfloat16_storage_dtype()
        return storage != "bfloat16" and variable.dtype == storage

    def variable_numbers(self, variable) -> np.ndarray:
        """One of this optimizer's variables as a numpy array of its values (a bfloat16 slot as
        `ml_dtypes.bfloat16`, also on JAX, which holds its bits)."""
        value = np.asarray(variable.numpy())
        return value.view(ml_dtypes.bfloat16) if self._holds_bfloat16_bits(variable) else value

    def assign_variable_numbers(self, variable, value) -> None:
        """Assigns values (any float array) to one of this optimizer's variables, rounded to its
        dtype (to the nearest bfloat16 for a bfloat16 slot, also on JAX)."""
        value = np.asarray(value)
        if self._holds_bfloat16_bits(variable):
            value = value.astype(ml_dtypes.bfloat16).view(np.uint16)
        else:
            value = value.astype(ml_dtypes.bfloat16 if variable.dtype == "bfloat16"
                                 else variable.dtype)
        variable.assign(value)

    def save_own_variables(self, store):
        """Keras' own, with bfloat16 slots saved as bfloat16 on every backend."""
        for i, variable in enumerate(self.variables):
            store[str(i)] = self.variable_numbers(variable)

    def load_own_variables(self, store):
        """Keras' own, with bfloat16 slots read from bfloat16 (or any float) on every backend."""
        if len(store.keys()) != len(self.variables) or not any(
            self._holds_bfloat16_bits(v) for v in self.variables
        ):
            return super().load_own_variables(store)
        for i, variable in enumerate(self.variables):
            self.assign_variable_numbers(variable, store[str(i)])

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
