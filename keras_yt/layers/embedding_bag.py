"""`EmbeddingBag`: the averaged bag of video embeddings (the paper's watch-history input)."""

import keras
import numpy as np
from keras import ops

from keras_yt import _checks
from keras_yt import backend as yt_backend
from keras_yt._table_marks import mark_embedding_table

_COMBINERS = ("mean", "sum", "sqrtn")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="keras_yt")
class EmbeddingBag(keras.layers.Layer):
    """Embeds a variable-length bag of ids and combines them into one vector.

    This is the input representation of Covington et al. (2016): a user's watch history is a bag
    of sparse video ids, each mapped to a dense embedding, and the embeddings are averaged into one
    fixed-width vector that feeds the ReLU tower.

    Id `0` is padding / out-of-vocabulary: it contributes nothing (its row is masked to zero) and
    is not counted in the `"mean"` / `"sqrtn"` normaliser. **Ids out of range** (`< 0` or
    `>= input_dim`) are an error in eager calls (numpy ids or eager tensors: a ValueError names
    them); inside a traced graph (`fit`, `predict`, where the models check their numpy inputs
    first) they are treated exactly like id `0`. A row with no valid id gives the zero vector
    (never NaN; the gradient is finite too).

    The table is looked up row by row (`keras_yt.backend.gather_rows`, a gather from the variable
    itself), so a call reads only the rows of the ids in the batch and on the TensorFlow backend
    the gradient with respect to `embeddings` is row-sparse (`tf.IndexedSlices`): with
    `keras_yt.optimizers.SparseAdagrad` a training step costs nothing per row of the table.

    Inputs are checked before the call: ids must have an integer dtype and rank 1 or 2 (numpy
    floats are accepted only when every value is a whole number; NaN, fractions and strings
    raise), and weights must have the ids' shape (ragged weights the ids' row lengths); numpy
    weights must be finite and non-negative. A ValueError names the argument and the values.

    To share one table between several features (the paper shares the video embeddings between
    the impression video and the watch history), call the same instance on each input.

    Args:
        input_dim: number of rows of the table (ids are in `[0, input_dim)`, `0` is padding).
        output_dim: width of each embedding.
        combiner: how the bag is reduced: `"mean"` (`Σ wᵢ eᵢ / Σ wᵢ`), `"sum"` (`Σ wᵢ eᵢ`) or
            `"sqrtn"` (`Σ wᵢ eᵢ / sqrt(Σ wᵢ²)`), over valid ids only; `wᵢ = 1` without weights.
        embeddings_initializer: initializer of the table.
        embeddings_regularizer: optional regularizer of the table.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        ids: integer ids of shape `(batch, L)` padded with `0`, or `(batch,)` (treated as
            `L = 1`), or on the TensorFlow backend a `tf.RaggedTensor` of shape `(batch, None)`.
        weights: optional non-negative per-item weights of the same shape as `ids` (ragged if
            `ids` is ragged), e.g. watch time or recency weights.

    Returns:
        A tensor of shape `(batch, output_dim)`.

    Example:

    >>> import numpy as np
    >>> bag = EmbeddingBag(input_dim=100, output_dim=8)
    >>> history = np.array([[3, 7, 0, 0], [0, 0, 0, 0]])   # padded watch histories
    >>> tuple(bag(history).shape)
    (2, 8)
    >>> impression = keras.Input(shape=(1,), dtype="int32")
    >>> watches = keras.Input(shape=(50,), dtype="int32")
    >>> shared = EmbeddingBag(input_dim=1000, output_dim=16)   # one table, two features
    >>> video, watched = shared(impression), shared(watches)
    >>> tuple(video.shape), tuple(watched.shape)
    ((None, 16), (None, 16))
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        combiner: str = "mean",
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim = _check_positive_int("input_dim", input_dim)
        self.output_dim = _check_positive_int("output_dim", output_dim)
        if combiner not in _COMBINERS:
            raise ValueError(f"combiner must be one of {_COMBINERS}, got {combiner!r}")
        self.combiner = combiner
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.supports_masking = False
        # Lets a tf.RaggedTensor reach `call` off TensorFlow, for a clear error there.
        self._allow_non_tensor_positional_args = True

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim),
            initializer=yt_backend.table_initializer(self.embeddings_initializer),
            regularizer=self.embeddings_regularizer,
            name="embeddings",
        )
        if self.embeddings_regularizer is None:  # else read whole in training
            mark_embedding_table(self.embeddings)
        self.built = True

    def __call__(self, ids, weights=None, **kwargs):
        ids, weights = _check_bag_inputs(ids, weights, self.input_dim)
        if weights is None:
            return super().__call__(ids, **kwargs)
        return super().__call__(ids, weights, **kwargs)

    def call(self, ids, weights=None):
        if yt_backend.is_ragged(ids):
            ids, weights = yt_backend.ragged_to_dense(ids, weights)
        ids = ops.convert_to_tensor(ids)
        if "int" not in keras.backend.standardize_dtype(ids.dtype):
            ids = ops.cast(ids, "int32")
        if len(ids.shape) == 1:
            ids = ops.expand_dims(ids, -1)
            if weights is not None:
                weights = ops.expand_dims(ops.convert_to_tensor(weights), -1)
        valid = ops.logical_and(ids > 0, ids < self.input_dim)
        item_weights = ops.cast(valid, self.compute_dtype)
        if weights is None and ids.shape[1] == 1:
            # One id per row (a categorical feature): a plain row gather, which XLA compiles
            # (the serving tower is jit-compiled); the gradient is row-sparse all the same.
            safe_ids = ops.where(valid, ids, ops.zeros_like(ids))[:, 0]
            vectors = ops.cast(yt_backend.gather_rows(self.embeddings, safe_ids),
                               self.compute_dtype)
            total = vectors * item_weights
        elif weights is None:
            # Only the distinct valid ids' rows are read; the gradient has one row per distinct
            # id (`tf.IndexedSlices`), and no (batch, L, output_dim) tensor is built.
            total = ops.cast(
                yt_backend.bag_sum_rows(self.embeddings, ids, valid), self.compute_dtype
            )
        else:
            item_weights = item_weights * ops.cast(weights, self.compute_dtype)
            safe_ids = ops.where(valid, ids, ops.zeros_like(ids))
            # Reads only the looked-up rows (not the whole table); row-sparse gradient.
            vectors = ops.cast(
                yt_backend.gather_rows(self.embeddings, safe_ids), self.compute_dtype
            )  # (batch, L, output_dim)
            total = ops.sum(vectors * ops.expand_dims(item_weights, -1), axis=1)
        if self.combiner == "sum":
            return total
        if self.combiner == "mean":
            norm = ops.sum(item_weights, axis=1, keepdims=True)
        else:
            norm = ops.sum(ops.square(item_weights), axis=1, keepdims=True)
        positive = norm > 0
        norm = ops.where(positive, norm, ops.ones_like(norm))
        if self.combiner == "sqrtn":
            norm = ops.sqrt(norm)
        return total / norm

    def compute_output_shape(self, ids_shape, weights_shape=None):
        return (ids_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "combiner": self.combiner,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
            }
        )
        return config


def _dtype_name(value) -> str:
    dtype = getattr(value, "dtype", None)
    try:
        return keras.backend.standardize_dtype(dtype)
    except (TypeError, ValueError, AttributeError):
        return str(getattr(dtype, "name", dtype))


def _check_bag_inputs(ids, weights, input_dim=None):
    """Static checks (dtype, rank, matching shapes) of any input; value checks of numpy ones.

    Numpy ids must be whole numbers (floats holding whole numbers are converted), numpy weights
    finite and non-negative. Tensors are checked by dtype and rank only (their values are born in
    the graph).
    """
    if _checks.is_numpy_like(ids):
        ids = _checks.int_array("EmbeddingBag ids", ids, 0, input_dim)
    elif input_dim is not None and not yt_backend.is_ragged(ids):
        values = _checks.concrete(ids)  # an eager tensor: its values are checked too
        if values is not None and values.dtype.kind in "iu":
            _checks.int_array("EmbeddingBag ids", values, 0, input_dim)
    if weights is not None and _checks.is_numpy_like(weights):
        weights = _checks.float_array(
            "EmbeddingBag weights", weights, low=0.0, what="finite weights"
        ).astype("float32")
    if yt_backend.is_ragged(ids):
        dtype = _dtype_name(ids)
        if "int" not in dtype:
            raise ValueError(f"EmbeddingBag ids must have an integer dtype, got {dtype}")
        return ids, weights
    dtype = _dtype_name(ids)
    if "int" not in dtype:
        raise ValueError(
            f"EmbeddingBag ids must have an integer dtype, got {dtype}"
            + (" (strings: hash or look them up first, e.g. with TokenBag)"
               if "str" in dtype else "")
        )
    shape = tuple(ids.shape)
    if len(shape) not in (1, 2):
        raise ValueError(
            f"EmbeddingBag ids must have shape (batch, L) or (batch,), got shape {shape}"
        )
    if weights is not None and not yt_backend.is_ragged(weights):
        w_shape = tuple(np.shape(weights)) if _checks.is_numpy_like(weights) else tuple(
            weights.shape
        )
        known = all(a is not None and b is not None for a, b in zip(w_shape, shape))
        if len(w_shape) != len(shape) or (known and w_shape != shape):
            raise ValueError(
                f"EmbeddingBag weights must have the shape of the ids {shape}, got {w_shape}"
            )
    return ids, weights
