"""Adagrad that updates only the rows of an embedding table that a batch touched."""

import keras
from keras import ops

from keras_yt.optimizers._row_sparse import RowSparseOptimizerMixin


@keras.saving.register_keras_serializable(package="keras_yt")
class SparseAdagrad(RowSparseOptimizerMixin, keras.optimizers.Adagrad):
    """Adagrad whose step cost does not grow with the size of an embedding table.

    An embedding lookup gives a row-sparse gradient (a `tf.IndexedSlices` on the TensorFlow
    backend): only the rows of the videos in the batch are non-zero. Keras' own optimizers touch
    every row of the table or of their slot variables on each step (Adam updates its moments
    densely; Adagrad takes `sqrt` of the whole accumulator), so a 1M-video table costs seconds
    per step. `SparseAdagrad` gives the same result as `keras.optimizers.Adagrad`, but for a
    row-sparse gradient it sums repeated rows (`backend.row_sparse_parts`), then reads
    (`backend.gather_rows`) and writes (`backend.scatter_assign_rows`, `scatter_sub_rows`) only
    the touched rows of the accumulator and of the variable. Dense gradients (the ReLU tower)
    take Adagrad's usual path.

    How a step stays O(batch), not O(table rows), end to end:

    * the layers look rows up with `backend.gather_rows` / `backend.bag_sum_rows` (a gather from
      the variable itself), never with a full read of the table: once a variable has been
      updated with a scatter, TensorFlow keeps it in copy-on-read mode, where every full read
      (`ReadVariableOp`, what `keras.ops.take(variable, ids)` does first) copies the whole table
      (about 0.1 s per 1M x 256 table per read on a 2-core CPU);
    * `clipnorm`, `global_clipnorm` and `clipvalue` are applied to the summed rows (exactly the
      dense gradient's clipping, without building it).

    Still dense, O(table rows) per step, whatever the optimizer: `weight_decay`, `use_ema`,
    `gradient_accumulation_steps`, `loss_scale_factor` and a mixed-float16
    `LossScaleOptimizer` (they act on whole variables or densify the gradient). Other optimizers
    in `CandidateGenerator.compile(optimizer=...)` still get row-sparse gradients, but Keras'
    Adam, Adagrad, RMSprop, ... update their slots (and, for Adam, the table) densely: a plain
    Keras model with a 1M x 256 table measured about 2 s/step with Adam and 0.7 s/step with
    Adagrad on a 2-core CPU (see `docs/performance.md`).

    This is the default optimizer of `CandidateGenerator` and `Ranker`; use it in your own models
    with a large `EmbeddingBag` or `SampledSoftmax` in the same way as any Keras optimizer. On
    backends without row-sparse gradients it behaves exactly like `keras.optimizers.Adagrad`.

    Under `tf.distribute.MirroredStrategy` (optimizer created in `strategy.scope()`), Keras sums
    the replicas' row-sparse gradients and runs `update_step` once per replica, on that replica's
    copy of the variable; the row-wise reads and writes of the accumulator then act on the same
    replica's copy, so every copy takes the same update.

    Args:
        learning_rate: float or schedule. Defaults to 0.05.
        initial_accumulator_value: starting value of the accumulators (must be >= 0).
        epsilon: small constant for numerical stability.
        **kwargs: the usual `keras.optimizers.Optimizer` arguments (`clipnorm`, `name`, ...).

    Example:

    >>> import numpy as np
    >>> import keras
    >>> model = keras.Sequential([keras.layers.Embedding(100_000, 8), keras.layers.Dense(1)])
    >>> model.compile(optimizer=SparseAdagrad(0.1), loss="mse")
    >>> history = model.fit(np.array([[1], [7]]), np.ones((2, 1, 1)), verbose=0)
    """

    def __init__(
        self,
        learning_rate: float = 0.05,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        name: str = "sparse_adagrad",
        **kwargs,
    ):
        if initial_accumulator_value < 0:
            raise ValueError(
                "initial_accumulator_value must be >= 0, got "
                f"{initial_accumulator_value!r}"
            )
        super().__init__(
            learning_rate=learning_rate,
            initial_accumulator_value=initial_accumulator_value,
            epsilon=epsilon,
            name=name,
            **kwargs,
        )

    def _row_slots(self, variable) -> list:
        return [self._accumulators[self._get_variable_index(variable)]]

    def _row_rule(self, variable, slot_rows, gradient, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        accumulator = slot_rows[0] + ops.square(gradient)
        return [accumulator], lr * gradient / ops.sqrt(accumulator + self.epsilon)
