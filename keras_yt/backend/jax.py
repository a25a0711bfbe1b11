"""JAX backend helpers: row-sparse training steps, dense padded ids, strings tokenised outside jit.

* Row-sparse gradients: `train_step` (used by `CandidateGenerator` / `Ranker` `fit` and
  `train_on_batch` with keras_yt's optimizers) takes the gradient with respect to the rows the
  layers read (`capture_rows`) and hands it to the optimizer as a `RowGradient`, which updates
  those rows only (`.at[rows]` scatters, in place in the donated state). Outside it, `jax.grad`
  of an embedding lookup is a table-sized dense array.
* bfloat16 optimizer slots hold their bits as `uint16` (`bfloat16_storage_dtype`); large tables
  are drawn a block of rows at a time (`table_initializer`).
* Ids must be dense `(batch, L)` arrays padded with id `0`: a `tf.RaggedTensor` raises a
  `ValueError` that says how to pad it.
* JAX arrays hold no strings: search queries are tokenised eagerly or in a `tf.data` pipeline
  (`TokenBag.token_ids`, TensorFlow's string ops imported on first use) and reach the model as
  integer token ids; `strings_to_tensors` does it for numpy query arrays given to
  `fit/evaluate/predict`.
"""

from __future__ import annotations

import contextlib
import math
import threading

import keras
from keras import ops

from keras_yt.backend.generic import (
    is_ragged,
    ragged_to_dense,
    replica_sum,
    rows_where,
    strings_to_tensors,
    tokenize_queries,
)

__all__ = [
    "RowGradient",
    "RowSparseAdagrad",
    "bag_sum_rows",
    "bfloat16_storage_dtype",
    "capture_rows",
    "gather_rows",
    "is_ragged",
    "load_bfloat16",
    "ragged_to_dense",
    "replica_sum",
    "row_sparse_parts",
    "rows_where",
    "scatter_assign_rows",
    "scatter_sub_rows",
    "store_bfloat16",
    "strings_to_tensors",
    "table_initializer",
    "tokenize_queries",
    "train_step",
    "unique_rows",
    "with_row_values",
]


def _rows(indices):
    return ops.reshape(ops.cast(indices, "int32"), (-1,))


def scatter_assign_rows(variable, indices, rows) -> None:
    """Writes `rows` into `variable[indices]` (`.at[].set`; in place under a donating `jit`).

    Indices out of range (the padding of a `RowGradient`) are dropped.
    """
    rows = ops.cast(rows, variable.dtype)
    variable.assign(variable.value.at[_rows(indices)].set(rows, mode="drop"))


def scatter_sub_rows(variable, indices, rows) -> None:
    """Subtracts `rows` from `variable[indices]` (`.at[].add`: repeated indices add up; indices
    out of range are dropped)."""
    rows = ops.cast(rows, variable.dtype)
    variable.assign(variable.value.at[_rows(indices)].add(-rows, mode="drop"))


def bfloat16_storage_dtype() -> str:
    """`"uint16"`: a variable of bfloat16 values holds their bits on JAX.

    XLA:CPU scatters rows into a bfloat16 array by converting the whole array to float32 and
    back (681 ms for two 1M × 256 moment tables against 41 ms as uint16, 56,320 rows, measured);
    into a uint16 array it writes the rows in place. `load_bfloat16` / `store_bfloat16` reinterpret
    the bits, so the values are exactly TensorFlow's bfloat16 ones.
    """
    return "uint16"


def load_bfloat16(values):
    """float32 values of bfloat16 bits (`uint16`), exactly."""
    import jax
    import jax.numpy as jnp

    return jax.lax.bitcast_convert_type(values, jnp.bfloat16).astype(jnp.float32)


def store_bfloat16(values):
    """`values` rounded to the nearest bfloat16 (ties to even), as their bits (`uint16`)."""
    import jax
    import jax.numpy as jnp

    rounded = ops.convert_to_tensor(values).astype(jnp.bfloat16)
    return jax.lax.bitcast_convert_type(rounded, jnp.uint16)


ROW_BLOCK_INIT_MIN_SIZE = 2**24  # elements (a 65,536 × 256 table: 64 MiB of float32)
_ROW_BLOCK_ELEMENTS = 2**20  # elements drawn at a time (4 MiB of float32)


def table_initializer(initializer):
    """An initializer that draws a large table a block of rows at a time, inside one `jit`.

    Keras' JAX initialisers draw a table whole, through about three table-sized temporaries
    (random bits, floats, scaled floats: 4.2 GiB of peak memory for one 1M × 256 float32 table,
    jitted or not, measured), which made the build of a 1M-video model the peak of its run.
    Here a 2-D table of at least `ROW_BLOCK_INIT_MIN_SIZE` elements, for `RandomUniform`,
    `RandomNormal`, `TruncatedNormal` and `VarianceScaling` (Glorot, He, LeCun: the scale from
    the whole table's shape), is filled with blocks of `_ROW_BLOCK_ELEMENTS` values drawn from
    the same distribution, each from its own key folded from the initializer's seed (1.8 GiB of
    peak memory for the 1M × 256 table, the table itself being 1 GiB). The values are not Keras'
    own draws; smaller tables, other initializers and tables built under a `keras.distribution`
    (which Keras draws shard by shard) are Keras' own.

    Args:
        initializer: a Keras initializer (object, name or callable).

    Returns:
        An initializer to give `add_weight`.

    Example:

    >>> draw = table_initializer(keras.initializers.RandomUniform(-0.05, 0.05, seed=1))
    >>> table = draw((65536, 256), "float32")
    >>> float(ops.max(ops.abs(table))) <= 0.05, abs(float(ops.mean(table))) < 1e-3
    (True, True)
    """
    initializer = keras.initializers.get(initializer)
    if _distribution(initializer, (2, 2)) is None:
        return initializer
    return _RowBlockInitializer(initializer)


def _distribution(initializer, shape) -> tuple | None:
    """`(kind, a, b)` of a Keras initializer on `shape`: `("uniform", low, high)`, `("normal",
    mean, stddev)` or `("truncated_normal", mean, stddev)` (at 2 stddev); None if unknown."""
    init = keras.initializers
    if isinstance(initializer, init.RandomUniform):
        return "uniform", initializer.minval, initializer.maxval
    if isinstance(initializer, init.RandomNormal):
        return "normal", initializer.mean, initializer.stddev
    if isinstance(initializer, init.TruncatedNormal):
        return "truncated_normal", initializer.mean, initializer.stddev
    if isinstance(initializer, init.VarianceScaling) and len(shape) == 2:
        fan_in, fan_out = shape  # Keras' fans of a 2-D weight
        fan = {"fan_in": fan_in, "fan_out": fan_out,
               "fan_avg": (fan_in + fan_out) / 2}[initializer.mode]
        scale = initializer.scale / max(1.0, fan)
        if initializer.distribution == "truncated_normal":
            return "truncated_normal", 0.0, scale**0.5 / 0.87962566103423978
        if initializer.distribution == "untruncated_normal":
            return "normal", 0.0, scale**0.5
        limit = (3.0 * scale) ** 0.5
        return "uniform", -limit, limit
    return None


class _RowBlockInitializer(keras.initializers.Initializer):
    """`table_initializer`'s initializer: Keras' own below the size, by blocks of rows above."""

    def __init__(self, initializer):
        self.initializer = initializer

    def __call__(self, shape, dtype=None):
        shape = tuple(int(n) for n in shape)
        if (len(shape) != 2 or math.prod(shape) < ROW_BLOCK_INIT_MIN_SIZE
                or keras.distribution.distribution() is not None):
            # Under a keras.distribution the table may be sharded: Keras draws each shard.
            return self.initializer(shape, dtype=dtype)
        import jax

        kind, a, b = _distribution(self.initializer, shape)
        seed = self.initializer.seed
        if isinstance(seed, keras.random.SeedGenerator):
            key = jax.random.wrap_key_data(seed.next())
        else:
            key = jax.random.key(seed)
        dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        return _fill_by_blocks(key, shape, kind, float(a), float(b), dtype)

    def get_config(self) -> dict:
        return {"initializer": keras.initializers.serialize(self.initializer)}


def _fill_by_blocks(key, shape, kind, a, b, dtype):
    import jax
    import jax.numpy as jnp

    rows, cols = shape
    block = max(1, min(rows, _ROW_BLOCK_ELEMENTS // max(cols, 1)))

    def draw(key):
        if kind == "uniform":
            return jax.random.uniform(key, (block, cols), jnp.float32, a, b)
        if kind == "normal":
            return a + b * jax.random.normal(key, (block, cols), jnp.float32)
        return a + b * jax.random.truncated_normal(key, -2.0, 2.0, (block, cols), jnp.float32)

    def fill(key):
        def body(i, table):
            start = jnp.minimum(i * block, rows - block)  # the last block may overlap
            values = draw(jax.random.fold_in(key, i)).astype(dtype)
            return jax.lax.dynamic_update_slice(table, values, (start, 0))

        table = jnp.zeros(shape, dtype)
        return jax.lax.fori_loop(0, -(-rows // block), body, table)

    return jax.jit(fill)(key)


class RowGradient:
    """A row-sparse gradient on JAX: `values[i]` is the gradient of row `indices[i]`.

    Made by `train_step` for the tables that keras_yt's layers read row by row; indices are
    distinct, padded (static shapes under `jit`) with `num_rows`, an out-of-range id whose row
    is zero, reads as zeros and whose writes are dropped. `SparseAdam` and `SparseAdagrad` take
    it through `row_sparse_parts`, as a `tf.IndexedSlices` on TensorFlow.
    """

    def __init__(self, indices, values, num_rows: int):
        self.indices, self.values, self.num_rows = indices, values, num_rows

    @property
    def shape(self):
        return (self.num_rows, *self.values.shape[1:])

    @property
    def dtype(self):
        return self.values.dtype


def _register_row_gradient() -> None:
    import jax

    jax.tree_util.register_pytree_node(
        RowGradient,
        lambda g: ((g.indices, g.values), g.num_rows),
        lambda num_rows, children: RowGradient(*children, num_rows),
    )


_register_row_gradient()


def row_sparse_parts(gradient):
    """`(indices, values)` of a `RowGradient` (distinct indices), else `None` (dense)."""
    if isinstance(gradient, RowGradient):
        return gradient.indices, gradient.values
    return None


def with_row_values(gradient, values):
    """The `RowGradient` with its row values replaced by `values`; `values` for a dense one."""
    if isinstance(gradient, RowGradient):
        return RowGradient(gradient.indices, values, gradient.num_rows)
    return values


def unique_rows(gradient):
    """Gradients unchanged: a `RowGradient`'s rows are already distinct."""
    return gradient


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
    import jax.numpy as jnp

    # Out-of-range ids (a RowGradient's padding) read zeros.
    return jnp.take(ops.convert_to_tensor(table), indices, axis=0, mode="fill", fill_value=0)


def bag_sum_rows(table, ids, valid):
    """`Σ_l table[ids[b, l]]` over the positions `l` where `valid[b, l]` (see `generic`)."""
    ids = ops.convert_to_tensor(ids)
    safe_ids = ops.where(valid, ids, ops.zeros_like(ids))
    vectors = gather_rows(table, safe_ids)
    return ops.einsum("bl,bld->bd", ops.cast(valid, vectors.dtype), vectors)


class RowSparseAdagrad:
    """A jitted JAX training step with Adagrad updates of only the rows read of `tables`.

    The route to row-sparse training on JAX, where `jax.grad` of a table is table-sized: the
    forward pass runs under `capture_rows(tables, deltas)`, the gradient is taken with respect
    to the rows read (the `deltas`) and to the other trainable variables, and Adagrad
    (`SparseAdagrad`'s rule) updates the summed rows of the tables and of their accumulators with
    `.at[rows]` scatters into donated buffers; the other variables get dense Adagrad. A step
    costs O(rows read), not O(table rows). It is a custom training loop, not `model.fit`:

    Args:
        model: a built Keras model.
        tables: the model's embedding variables to update row-wise (e.g. the watch-history
            table, the output embeddings and biases).
        loss_fn: `loss_fn(model, x, y) -> scalar`, the training loss (run in a stateless scope).
        learning_rate: Adagrad learning rate.
        initial_accumulator_value: starting value of the accumulators.
        epsilon: Adagrad's epsilon.

    Example:

    >>> import keras, numpy as np
    >>> from keras_yt.layers import EmbeddingBag
    >>> bag = EmbeddingBag(1000, 4)
    >>> model = keras.Sequential([keras.Input((3,), dtype="int32"), bag, keras.layers.Dense(1)])
    >>> trainer = RowSparseAdagrad(
    ...     model, [bag.embeddings], lambda m, x, y: keras.ops.mean((m(x) - y) ** 2), 0.1)
    >>> state = trainer.initial_state()
    >>> loss, state = trainer.step(state, np.array([[1, 2, 0]]), np.ones((1, 1)))
    >>> trainer.write_back(state)
    """

    def __init__(
        self,
        model,
        tables,
        loss_fn,
        learning_rate: float = 0.05,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
    ):
        import jax

        self.model = model
        self.tables = list(tables)
        self.dense = [
            v for v in model.trainable_variables if not any(v is t for t in self.tables)
        ]
        self.others = list(model.non_trainable_variables)
        self.loss_fn = loss_fn
        self.learning_rate = learning_rate
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon
        self._lookup_tables: list[int] = []
        self.step = jax.jit(self._step, donate_argnums=0)

    def initial_state(self):
        """`(dense values, dense accumulators, table values, table accumulators, others)`."""
        import jax.numpy as jnp

        def fill(variables):
            return [jnp.full(v.shape, self.initial_accumulator_value, v.dtype) for v in variables]

        return (
            [v.value for v in self.dense],
            fill(self.dense),
            [v.value for v in self.tables],
            fill(self.tables),
            [v.value for v in self.others],
        )

    def write_back(self, state) -> None:
        """Assigns the trained values of `state` to the model's variables."""
        dense_values, _, table_values, _, other_values = state
        for variables, values in (
            (self.dense, dense_values), (self.tables, table_values), (self.others, other_values)
        ):
            for variable, value in zip(variables, values):
                variable.assign(value)

    def _loss_and_rows(self, dense_values, deltas, table_values, other_values, x, y):
        mapping = [
            *zip(self.dense, dense_values),
            *zip(self.tables, table_values),
            *zip(self.others, other_values),
        ]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            with capture_rows(self.tables, deltas) as capture:
                loss = self.loss_fn(self.model, x, y)
        self._lookup_tables[:] = [
            next(k for k, t in enumerate(self.tables) if t is v) for v, _ in capture.lookups
        ]
        new_others = [scope.get_current_value(v) for v in self.others]
        new_others = [o if n is None else n for o, n in zip(other_values, new_others)]
        return loss, ([ids for _, ids in capture.lookups], new_others)

    def _step(self, state, x, y):
        import jax
        import jax.numpy as jnp

        dense_values, dense_acc, table_values, table_acc, other_values = state
        lr, eps = self.learning_rate, self.epsilon
        # A shape-only pass records the lookups; then one zero delta per lookup.
        shapes, _ = jax.eval_shape(
            lambda *a: self._loss_and_rows(*a)[1],
            dense_values, None, table_values, other_values, x, y,
        )
        deltas = [
            jnp.zeros((ids.shape[0], *self.tables[k].shape[1:]), self.tables[k].dtype)
            for ids, k in zip(shapes, self._lookup_tables)
        ]
        (loss, (lookup_ids, other_values)), (g_dense, g_rows) = jax.value_and_grad(
            self._loss_and_rows, argnums=(0, 1), has_aux=True
        )(dense_values, deltas, table_values, other_values, x, y)
        dense_acc = [a + g * g for a, g in zip(dense_acc, g_dense)]
        dense_values = [
            v - lr * g / jnp.sqrt(a + eps) for v, g, a in zip(dense_values, g_dense, dense_acc)
        ]
        table_values, table_acc = list(table_values), list(table_acc)
        for k, table in enumerate(table_values):
            picked = [i for i, t in enumerate(self._lookup_tables) if t == k]
            if not picked:
                continue
            ids = jnp.concatenate([lookup_ids[i] for i in picked])
            grads = jnp.concatenate([g_rows[i] for i in picked]).astype(table.dtype)
            n = ids.shape[0]
            # Repeated rows are summed first (the dense gradient's rows), padded with an
            # out-of-range id whose reads give 0 and whose writes are dropped.
            unique, inverse = jnp.unique(
                ids, size=n, fill_value=table.shape[0], return_inverse=True
            )
            summed = jax.ops.segment_sum(grads, inverse.reshape(-1), num_segments=n)
            acc_rows = table_acc[k].at[unique].get(mode="fill", fill_value=0) + summed**2
            table_acc[k] = table_acc[k].at[unique].set(acc_rows, mode="drop")
            table_values[k] = table.at[unique].add(
                -lr * summed / jnp.sqrt(acc_rows + eps), mode="drop"
            )
        return loss, (dense_values, dense_acc, table_values, table_acc, other_values)


def _row_read_variables(model) -> list[int]:
    """Positions in `model.trainable_variables` of the variables read only row by row."""
    from keras_yt._table_marks import is_row_read

    return [i for i, v in enumerate(model.trainable_variables) if is_row_read(v)]


def train_step(model, state, data):
    """Keras' JAX `train_step` with row-sparse gradients for the tables read row by row.

    Used by `CandidateGenerator` / `Ranker` (`fit`, `train_on_batch`) when their optimizer
    takes row-sparse gradients (`SparseAdam`, `SparseAdagrad`). The forward pass runs under
    `capture_rows` for the variables that keras_yt's layers read only through `gather_rows`
    (embedding tables, output embeddings and biases); the gradient is taken with respect to the
    rows read and to the other trainable variables; the rows of each table are summed per id
    (`jnp.unique` with a static size, padded with an out-of-range id) into a `RowGradient`, and
    the optimizer updates only those rows (`.at[rows]` scatters, in place in the donated state).
    Returns `None` when there is nothing to capture (the caller then runs Keras' own step).
    """
    import jax
    import jax.numpy as jnp

    positions = _row_read_variables(model)
    if not positions:
        return None
    trainable, non_trainable, optimizer_values, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    tables = [variables[i] for i in positions]
    dense_positions = [i for i in range(len(variables)) if i not in positions]
    lookup_tables: list[int] = []

    def merged(dense_values, table_values):
        values = list(trainable)
        for i, value in zip(dense_positions, dense_values):
            values[i] = value
        for i, value in zip(positions, table_values):
            values[i] = value
        return values

    def loss_fn(dense_values, deltas, table_values):
        with capture_rows(tables, deltas) as capture:
            loss, aux = model.compute_loss_and_updates(
                merged(dense_values, table_values), non_trainable, metrics_values, x, y,
                sample_weight, training=True, optimizer_variables=optimizer_values,
            )
        lookup_tables[:] = [
            next(k for k, t in enumerate(tables) if t is v) for v, _ in capture.lookups
        ]
        return loss, (aux, [ids for _, ids in capture.lookups])

    dense_values = [trainable[i] for i in dense_positions]
    table_values = [trainable[i] for i in positions]
    # A shape-only pass records the lookups; then one zero delta per lookup.
    shapes = jax.eval_shape(lambda: loss_fn(dense_values, None, table_values)[1][1])
    deltas = [
        jnp.zeros((ids.shape[0], *tables[k].shape[1:]), tables[k].dtype)
        for ids, k in zip(shapes, lookup_tables)
    ]
    (_, (aux, lookup_ids)), (dense_grads, row_grads) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True
    )(dense_values, deltas, table_values)
    unscaled_loss, y_pred, non_trainable, metrics_values = aux

    grads = [None] * len(variables)
    for i, g in zip(dense_positions, dense_grads):
        grads[i] = g
    for k, i in enumerate(positions):
        table = tables[k]
        picked = [j for j, t in enumerate(lookup_tables) if t == k]
        if not picked:
            grads[i] = RowGradient(
                jnp.zeros((0,), "int32"), jnp.zeros((0, *table.shape[1:]), table.dtype),
                table.shape[0],
            )
            continue
        ids = jnp.concatenate([lookup_ids[j] for j in picked])
        rows = jnp.concatenate([row_grads[j] for j in picked]).astype(table.dtype)
        n = ids.shape[0]
        unique, inverse = jnp.unique(ids, size=n, fill_value=table.shape[0], return_inverse=True)
        summed = jax.ops.segment_sum(rows, inverse.reshape(-1), num_segments=n)
        # Rows read only at masked or zero-weight positions (padding ids, rows added to split a
        # batch over devices) have an exactly zero gradient: left out, as TensorFlow's lookups
        # leave them out, so that lazy updates do not move them.
        read = jnp.any(summed.reshape(n, -1) != 0, axis=1)
        unique = jnp.where(read, unique, table.shape[0])
        grads[i] = RowGradient(unique.astype("int32"), summed, table.shape[0])

    trainable, optimizer_values = model.optimizer.stateless_apply(
        optimizer_values, grads, trainable
    )
    logs, metrics_values = model._update_metrics_variables(
        metrics_values, unscaled_loss, x, y, y_pred, sample_weight
    )
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)
