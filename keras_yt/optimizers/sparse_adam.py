"""Lazy Adam: Adam that updates only the rows of an embedding table that a batch touched."""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_yt import backend
from keras_yt._table_marks import is_embedding_table
from keras_yt.optimizers._row_sparse import RowSparseOptimizerMixin


@keras.saving.register_keras_serializable(package="keras_yt")
class SparseAdam(RowSparseOptimizerMixin, keras.optimizers.Adam):
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

    Compact moments of embedding tables (`compact_table_moments=True`, opt-in): for the
    tables of keras_yt's layers (`EmbeddingBag`, `SampledSoftmax`'s output embeddings) the first
    moment is kept in bfloat16 and the second moment is one value per row, the mean of `g_r²` over
    the row ("partial row-wise Adam", as in FBGEMM's embedding optimizers):

        m_r ← β₁ m_r + (1 − β₁) g_r,   v_r ← β₂ v_r + (1 − β₂) mean(g_r²),
        θ_r ← θ_r − lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m_r / (√v_r + ε).

    A table then needs half a table of optimizer state instead of two, and a step reads and
    writes half as many bytes of it; but on the MovieLens quality benchmark it lost 0.007
    HR@10 and 0.022 HR@100 (one seed, see `docs/performance.md`), so it is off by default.
    Other variables (the tower, the biases, tables of other layers) keep Adam's element-wise
    moments in float32.

    Element-wise moments in bfloat16 (`table_moment_dtype`; by default, `"auto"`, for the
    tables of at least 2**24 elements, e.g. 65,536 videos × 256, where the float32 moments
    would weigh 128 MiB or more): the same tables keep both moments element by element, stored
    in bfloat16 (the rule runs in float32 on the gathered rows, and the new rows are rounded to
    nearest). Two tables of optimizer state then weigh what Adagrad's one float32 accumulator
    does: at 1M videos × 256 the default optimizer trains in the TF-native Adagrad trainer's
    memory (`docs/performance.md`). Smaller tables keep float32 moments (exactly lazy Adam).

    What the rounding does: with `beta_2 = 0.999` a step moves `v` by at most 0.1 % of it
    downwards, less than half a bfloat16 step (0.2–0.4 %), so a row's second moment never
    decreases and grows only when `g²` exceeds three to five times it: it follows the largest
    gradients, as Adagrad's accumulator (or AMSGrad's maximum) does. On the MovieLens quality
    benchmark, bfloat16 moments forced on its small tables (3 seeds, full and sampled softmax,
    `docs/performance.md`) kept the quality of float32 moments. On JAX a bfloat16 slot holds
    the values' bits (`uint16`: XLA:CPU scatters rows into a bfloat16 array by converting all
    of it); the values, the rounding and a saved optimizer are the same as on TensorFlow.
    `compact_table_moments=True` takes precedence.

    This is the default optimizer of `CandidateGenerator.compile()`. For dense gradients it
    applies the same rules to the whole variable (exactly `keras.optimizers.Adam` for variables
    without compact moments).

    Under `tf.distribute.MirroredStrategy` (optimizer created in `strategy.scope()`), Keras sums
    the replicas' row-sparse gradients and runs `update_step` once per replica, on that replica's
    copy of the variable; the row-wise reads and writes of the moments then act on the same
    replica's copy, so every copy takes the same update.

    Args:
        learning_rate: float or schedule. Defaults to 0.001.
        beta_1: decay of the first moment.
        beta_2: decay of the second moment.
        epsilon: small constant for numerical stability.
        compact_table_moments: keep bfloat16 first moments and row-wise second moments for
            the embedding tables of keras_yt's layers (default `False`: element-wise moments
            for every variable, exactly lazy Adam).
        table_moment_dtype: the dtype of the element-wise moments of the embedding tables of
            keras_yt's layers: `"float32"`, `"bfloat16"`, or `"auto"` (the default: bfloat16
            for tables of at least `BFLOAT16_MOMENTS_MIN_SIZE` = 2**24 elements, float32 for
            smaller ones).
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
        compact_table_moments: bool = False,
        table_moment_dtype: str = "auto",
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
        if not isinstance(compact_table_moments, bool):
            raise ValueError(
                f"compact_table_moments must be True or False, got {compact_table_moments!r}"
            )
        if table_moment_dtype not in TABLE_MOMENT_DTYPES:
            raise ValueError(
                f"table_moment_dtype must be one of {TABLE_MOMENT_DTYPES}, got "
                f"{table_moment_dtype!r}"
            )
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=False,
            name=name,
            **kwargs,
        )
        self.compact_table_moments = compact_table_moments
        self.table_moment_dtype = table_moment_dtype

    def _is_compact(self, variable) -> bool:
        """Whether `variable`'s moments were built compact (checked by slot: in a TensorFlow
        update step `variable` may be the `tf.Variable` behind the marked `keras.Variable`)."""
        index = self._get_variable_index(variable)
        return index in getattr(self, "_compact_indices", ())

    def _has_own_slots(self, variable) -> bool:
        """Whether `variable`'s moments are not Keras' float32 copies of it (compact, or in
        another dtype): Keras' own Adam step cannot update them."""
        index = self._get_variable_index(variable)
        return index in getattr(self, "_own_slot_indices", ())

    def build(self, var_list):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)
        self._momentums, self._velocities = [], []
        self._compact_indices, self._own_slot_indices = set(), set()
        for variable in var_list:
            if self._overwrite_variable_with_gradient(variable):
                self._momentums.append(None)
                self._velocities.append(None)
            elif self.compact_table_moments and is_embedding_table(variable):
                self._own_slot_indices.add(len(self._momentums))
                self._compact_indices.add(len(self._momentums))
                self._momentums.append(
                    self._slot(variable, "momentum", variable.shape, _storage("bfloat16"))
                )
                self._velocities.append(
                    self._slot(variable, "velocity", (variable.shape[0], 1), variable.dtype)
                )
            elif is_embedding_table(variable) and (
                dtype := _moment_dtype(self.table_moment_dtype, variable)
            ) != variable.dtype:
                self._own_slot_indices.add(len(self._momentums))
                dtype = _storage(dtype)
                for slots, name in ((self._momentums, "momentum"), (self._velocities, "velocity")):
                    slots.append(self._slot(variable, name, variable.shape, dtype))
            else:
                self._momentums.append(self.add_variable_from_reference(variable, "momentum"))
                self._velocities.append(self.add_variable_from_reference(variable, "velocity"))

    def _slot(self, variable, name, shape, dtype):
        """A zeros slot of its own shape and dtype, placed like `variable` (its rows)."""
        name = f"{variable.path.replace('/', '_')}_{name}"
        strategy = getattr(self, "_distribution_strategy", None)
        context = (
            strategy.extended.colocate_vars_with(variable.value)
            if strategy is not None else contextlib.nullcontext()
        )
        with context:
            return self.add_variable(
                shape=tuple(shape), initializer="zeros", dtype=dtype, name=name,
                layout=getattr(variable, "_layout", None),
            )

    def _alpha(self, learning_rate, dtype):
        lr = ops.cast(learning_rate, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1 = ops.cast(self.beta_1, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)
        return lr * ops.sqrt(1 - ops.power(beta_2, step)) / (1 - ops.power(beta_1, step))

    def _row_slots(self, variable) -> list:
        index = self._get_variable_index(variable)
        return [self._momentums[index], self._velocities[index]]

    def _row_rule(self, variable, slot_rows, gradient, learning_rate):
        (m, v), g = slot_rows, gradient
        alpha = self._alpha(learning_rate, variable.dtype)
        if self._is_compact(variable):
            # `m` rows read from bfloat16 (the rule is float32), `v` one value per row.
            m = self.beta_1 * ops.cast(m, g.dtype) + (1 - self.beta_1) * g
            v = self.beta_2 * v + (1 - self.beta_2) * ops.mean(
                ops.square(g), axis=-1, keepdims=True
            )
            return [m, v], m * (alpha / (ops.sqrt(v) + self.epsilon))
        m, v = ops.cast(m, g.dtype), ops.cast(v, g.dtype)
        m = self.beta_1 * m + (1 - self.beta_1) * g
        v = self.beta_2 * v + (1 - self.beta_2) * ops.square(g)
        return [m, v], alpha * m / (ops.sqrt(v) + self.epsilon)

    def _dense_update_step(self, gradient, variable, learning_rate):
        if not self._has_own_slots(variable):
            return super()._dense_update_step(gradient, variable, learning_rate)
        self._rule_update_dense(gradient, variable, learning_rate)

    def _subtract_rows(self, variable, indices, step) -> None:
        if not self._is_compact(variable):
            return super()._subtract_rows(variable, indices, step)
        # A gather and an assignment of the (distinct) rows: cheaper than a scatter-sub.
        backend.scatter_assign_rows(
            variable, indices, backend.gather_rows(variable, indices) - step
        )

    def get_config(self):
        return {
            **super().get_config(),
            "compact_table_moments": self.compact_table_moments,
            "table_moment_dtype": self.table_moment_dtype,
        }


TABLE_MOMENT_DTYPES = ("auto", "float32", "bfloat16")
BFLOAT16_MOMENTS_MIN_SIZE = 2**24  # elements of a table: 64 MiB per float32 moment


def _moment_dtype(requested: str, table) -> str:
    """The dtype of a marked table's element-wise moments (`"auto"`: by the table's size)."""
    if requested != "auto":
        return requested
    size = int(np.prod(table.shape))
    return "bfloat16" if size >= BFLOAT16_MOMENTS_MIN_SIZE else "float32"


def _storage(dtype: str) -> str:
    """The dtype of a slot of `dtype` values (bfloat16 ones are held as bits on JAX)."""
    return backend.bfloat16_storage_dtype() if dtype == "bfloat16" else dtype
