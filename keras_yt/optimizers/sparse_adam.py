"""Lazy Adam: Adam that updates only the rows of an embedding table that a batch touched."""

import keras
from keras import ops

from keras_yt import backend
from keras_yt.optimizers._row_sparse import RowSparseClippingMixin


@keras.saving.register_keras_serializable(package="keras_yt")
class SparseAdam(RowSparseClippingMixin, keras.optimizers.Adam):
    """Adam whose step cost does not grow with the size of an embedding table ("lazy" Adam).

    For a row-sparse gradient (an embedding lookup's `tf.IndexedSlices` on TensorFlow) only the
    touched rows of the first and second moments and of the variable are read and written
    (`backend.gather_rows`, `backend.scatter_assign_rows`, `backend.scatter_sub_rows`), with
    Adam's bias correction from the global step:

        m_r ← β₁ m_r + (1 − β₁) g_r,   v_r ← β₂ v_r + (1 − β₂) g_r²,
        θ_r ← θ_r − lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m_r / (√v_r + ε)      for each touched row r.

    Rows that a step does not touch keep their moments and weights, where Keras' `Adam` would
    decay their moments and keep moving them: that is what makes a step at 1M videos as cheap as
    at 10k (Keras' `Adam` updates the whole table and both moment tables on every step). Rows
    touched on every step get exactly Adam's update. Dense gradients (the ReLU tower) take
    Adam's usual path. Clipping (`clipnorm`, `global_clipnorm`, `clipvalue`) acts on the summed
    rows, exactly as on the dense gradient.

    This is the default optimizer of `CandidateGenerator.compile()`. On backends without
    row-sparse gradients it behaves exactly like `keras.optimizers.Adam`.

    Under `tf.distribute.MirroredStrategy` (optimizer created in `strategy.scope()`), Keras sums
    the replicas' row-sparse gradients and runs `update_step` once per replica, on that replica's
    copy of the variable; the row-wise reads and writes of the moments then act on the same
    replica's copy, so every copy takes the same update.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        beta_1: decay of the first moment.
        beta_2: decay of the second moment.
        epsilon: small constant for numerical stability.
        **kwargs: the usual `keras.optimizers.Optimizer` arguments (`clipnorm`, `name`, ...);
            `amsgrad` is not supported.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> model = keras.Sequential([keras.layers.Embedding(100_000, 8), keras.layers.Dense(1)])
    >>> model.compile(optimizer=SparseAdam(0.01), loss="mse")
    >>> history = model.fit(np.array([[1], [7]]), np.ones((2, 1, 1)), verbose=0)
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str = "sparse_adam",
        **kwargs,
    ):
        if kwargs.get("amsgrad"):
            raise ValueError("SparseAdam does not support amsgrad=True, got amsgrad=True")
        kwargs.pop("amsgrad", None)
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{arg} must be a number in [0, 1), got {value!r}")
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0, got {epsilon!r}")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=False,
            name=name,
            **kwargs,
        )

    def update_step(self, gradient, variable, learning_rate):
        rows = backend.row_sparse_parts(gradient)
        if rows is None:
            return super().update_step(gradient, variable, learning_rate)
        indices, values = rows
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        values = ops.cast(values, dtype)
        lr = ops.cast(learning_rate, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1 = ops.cast(self.beta_1, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)
        alpha = lr * ops.sqrt(1 - ops.power(beta_2, step)) / (1 - ops.power(beta_1, step))
        m = beta_1 * backend.gather_rows(momentum, indices) + (1 - beta_1) * values
        v = beta_2 * backend.gather_rows(velocity, indices) + (1 - beta_2) * ops.square(values)
        backend.scatter_assign_rows(momentum, indices, m)
        backend.scatter_assign_rows(velocity, indices, v)
        backend.scatter_sub_rows(variable, indices, alpha * m / (ops.sqrt(v) + self.epsilon))
