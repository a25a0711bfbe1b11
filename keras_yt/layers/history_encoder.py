"""`HistoryEncoder`: causal self-attention over the watch history (an order-aware user state)."""

from __future__ import annotations

import keras
from keras import ops

from keras_yt import _checks
from keras_yt import backend as yt_backend


@keras.saving.register_keras_serializable(package="keras_yt")
class HistoryEncoder(keras.layers.Layer):
    """Reads a watch history in order and returns the user's state after each watch.

    The bag of `EmbeddingBag` forgets the order of the watches; this layer keeps it. Each watch is
    embedded (video embedding × √d plus a learned embedding of its position), and `num_blocks`
    pre-LayerNorm Transformer blocks (causal multi-head self-attention, then a ReLU feed-forward
    layer, each with dropout and a residual connection) turn the sequence into states: the state
    at a position depends on the watches up to it only (causal), so one pass over a history gives
    the state after every watch, which is how the candidate generator trains every next watch of
    a sequence at once. A final LayerNorm closes the stack (SASRec, Kang & McAuley 2018).

    **Input order and padding.** `ids` hold video ids oldest → newest, padded with 0, the
    convention of `keras_yt.data` (left padding, newest last). Ids `0` and out-of-range ids
    (`< 0` or `>= num_videos`) are padding wherever they sit: they are never attended to, their
    states are zeros, and positions are counted from the newest *real* watch (the newest is
    position 0, the one before it 1, ...), so the state after a watch does not depend on how much
    padding there is or where it is. With `return_sequences=False` the result is the state after
    the last real watch, wherever it sits. A history longer than `max_length` is rejected.

    **Video embeddings.** The layer owns a `(num_videos, embedding_dim)` table, or shares another
    layer's (`share_embeddings`, e.g. the candidate generator's watch-history `EmbeddingBag`, whose
    table the softmax may also tie to). Rows are gathered with `keras_yt.backend.gather_rows`: on
    TensorFlow the table's gradient is row-sparse.

    Args:
        num_videos: rows of the video table (ids in `[0, num_videos)`, 0 is padding).
        embedding_dim: width d of the video embeddings and of the states.
        max_length: the most positions (watches) the layer reads.
        num_blocks: number of self-attention blocks.
        num_heads: attention heads per block (`embedding_dim` must be divisible by it).
        feed_forward_dim: width of the blocks' ReLU layer; `None` for `embedding_dim`.
        dropout: dropout rate of the embeddings, attention weights and block outputs.
        seed: seed of the dropout layers.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        ids: int tensor `(batch, L)`, `L <= max_length`, oldest → newest, 0 = padding.
        training: whether dropout is on.
        return_sequences: `True` for the state at every position `(batch, L, embedding_dim)`
            (zeros at padding), `False` for the state after the last real watch
            `(batch, embedding_dim)`.

    Returns:
        The states (see `return_sequences`).

    Example:

    >>> import numpy as np
    >>> encoder = HistoryEncoder(num_videos=100, embedding_dim=8, max_length=5)
    >>> history = np.array([[0, 0, 3, 7, 9], [0, 0, 0, 0, 4]])   # oldest -> newest
    >>> tuple(encoder(history).shape), tuple(encoder(history, return_sequences=False).shape)
    ((2, 5, 8), (2, 8))
    >>> right_padded = np.array([[3, 7, 9, 0, 0], [4, 0, 0, 0, 0]])   # same users
    >>> bool(np.allclose(encoder(history, return_sequences=False),
    ...                  encoder(right_padded, return_sequences=False), atol=1e-5))
    True
    """

    def __init__(
        self,
        num_videos: int,
        embedding_dim: int = 64,
        max_length: int = 200,
        num_blocks: int = 2,
        num_heads: int = 1,
        feed_forward_dim: int | None = None,
        dropout: float = 0.2,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_videos = _checks.positive_int("num_videos", num_videos, minimum=2)
        self.embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
        self.max_length = _checks.positive_int("max_length", max_length)
        self.num_blocks = _checks.positive_int("num_blocks", num_blocks, minimum=0)
        self.num_heads = _checks.positive_int("num_heads", num_heads)
        if embedding_dim % num_heads:
            raise ValueError(
                f"embedding_dim ({embedding_dim}) must be divisible by num_heads, got "
                f"num_heads={num_heads}"
            )
        if feed_forward_dim is not None:
            feed_forward_dim = _checks.positive_int("feed_forward_dim", feed_forward_dim)
        self.feed_forward_dim = feed_forward_dim
        self.dropout = _checks.rate("dropout", dropout)
        self.seed = seed
        policy = self.dtype_policy
        width = feed_forward_dim or embedding_dim

        def norm(name):
            return keras.layers.LayerNormalization(epsilon=1e-6, dtype=policy, name=name)

        seeds = iter(range(10**6)) if seed is None else iter(range(seed, seed + 10**6))

        def drop():
            return keras.layers.Dropout(
                dropout, seed=None if seed is None else next(seeds), dtype=policy
            )

        self.embedding_dropout = drop()
        self.attention_norms = [norm(f"attention_norm_{i}") for i in range(num_blocks)]
        self.attentions = [
            keras.layers.MultiHeadAttention(
                num_heads, embedding_dim // num_heads, dropout=dropout,
                seed=None if seed is None else next(seeds), dtype=policy, name=f"attention_{i}",
            )
            for i in range(num_blocks)
        ]
        self.attention_dropouts = [drop() for _ in range(num_blocks)]
        self.feed_forward_norms = [norm(f"feed_forward_norm_{i}") for i in range(num_blocks)]
        self.feed_forward_ins = [
            keras.layers.Dense(width, activation="relu", dtype=policy, name=f"feed_forward_in_{i}")
            for i in range(num_blocks)
        ]
        self.feed_forward_outs = [
            keras.layers.Dense(embedding_dim, dtype=policy, name=f"feed_forward_out_{i}")
            for i in range(num_blocks)
        ]
        self.feed_forward_dropouts = [drop() for _ in range(num_blocks)]
        self.final_norm = norm("final_norm")
        # Not tracked: a shared table belongs to (and is saved by) the layer that owns it.
        object.__setattr__(self, "_shared_embedding_layer", None)
        self._own_embeddings = None

    # ------------------------------------------------------------------ building and sharing

    def share_embeddings(self, embedding_layer: keras.layers.Layer) -> None:
        """Reads the video embeddings from `embedding_layer.embeddings` instead of its own table.

        Args:
            embedding_layer: a layer with an `embeddings` variable of shape
                `(num_videos, embedding_dim)` (e.g. `EmbeddingBag`, `keras.layers.Embedding`).
                Must be called before this layer is built; the share is not part of the
                config (the owner of the table shares it again after `from_config`).
        """
        if self.built:
            raise RuntimeError(
                f"share_embeddings must be called before {self.name!r} is built; it already has "
                "its own embeddings"
            )
        dims = (getattr(embedding_layer, "input_dim", None),
                getattr(embedding_layer, "output_dim", None))
        if not isinstance(embedding_layer, keras.layers.Layer) or dims != (
            self.num_videos, self.embedding_dim
        ):
            raise ValueError(
                "embedding_layer must be a Keras layer with an `embeddings` table of shape "
                f"(num_videos, embedding_dim) = ({self.num_videos}, {self.embedding_dim}), got "
                f"{embedding_layer!r} with (input_dim, output_dim) = {dims}"
            )
        object.__setattr__(self, "_shared_embedding_layer", embedding_layer)

    @property
    def embeddings(self):
        """The video embeddings `(num_videos, embedding_dim)` (the shared table if shared)."""
        if self._shared_embedding_layer is not None:
            return self._shared_embedding_layer.embeddings
        return self._own_embeddings

    def build(self, input_shape=None):
        if self.built:
            return
        d = self.embedding_dim
        if self._shared_embedding_layer is not None:
            if not self._shared_embedding_layer.built:
                self._shared_embedding_layer.build(None)
        else:
            self._own_embeddings = self.add_weight(
                shape=(self.num_videos, d),
                initializer=yt_backend.table_initializer("glorot_uniform"),
                name="embeddings",
            )
        self.position_embeddings = self.add_weight(
            shape=(self.max_length, d), initializer="glorot_uniform", name="position_embeddings"
        )
        sequence_shape = (None, None, d)
        for i in range(self.num_blocks):
            self.attention_norms[i].build(sequence_shape)
            self.attentions[i].build(sequence_shape, sequence_shape)
            self.feed_forward_norms[i].build(sequence_shape)
            self.feed_forward_ins[i].build(sequence_shape)
            self.feed_forward_outs[i].build((None, None, self.feed_forward_dim or d))
        self.final_norm.build(sequence_shape)
        self.built = True

    # ------------------------------------------------------------------ forward pass

    def __call__(self, ids, training=None, return_sequences=True, **kwargs):
        if _checks.is_numpy_like(ids):
            ids = _checks.int_array("HistoryEncoder ids", ids)
        shape = tuple(ids.shape)
        if len(shape) != 2:
            raise ValueError(f"HistoryEncoder ids must have shape (batch, L), got shape {shape}")
        if shape[1] is not None and shape[1] > self.max_length:
            raise ValueError(
                f"HistoryEncoder reads at most max_length={self.max_length} watches, got ids of "
                f"shape {shape}; keep the last {self.max_length} watches"
            )
        return super().__call__(
            ids, training=training, return_sequences=return_sequences, **kwargs
        )

    def call(self, ids, training=False, return_sequences=True):
        ids = ops.convert_to_tensor(ids)
        if "int" not in keras.backend.standardize_dtype(ids.dtype):
            ids = ops.cast(ids, "int32")
        ids = ops.cast(ids, "int32")
        real = ops.logical_and(ids > 0, ids < self.num_videos)
        safe_ids = ops.where(real, ids, ops.zeros_like(ids))
        keep = ops.expand_dims(ops.cast(real, self.compute_dtype), -1)  # (batch, L, 1)
        # Position = number of real watches after this one (the newest real watch is 0).
        count = ops.cast(real, "int32")
        after = ops.sum(count, axis=1, keepdims=True) - ops.cumsum(count, axis=1)
        positions = ops.minimum(after, self.max_length - 1)
        x = ops.cast(yt_backend.gather_rows(self.embeddings, safe_ids), self.compute_dtype)
        x = x * ops.cast(self.embedding_dim**0.5, self.compute_dtype)
        x = x + ops.cast(ops.take(self.position_embeddings, positions, axis=0), self.compute_dtype)
        x = self.embedding_dropout(x, training=training) * keep
        length = ops.shape(ids)[1]
        index = ops.arange(length)
        causal = ops.expand_dims(index, 1) >= ops.expand_dims(index, 0)  # (L, L): key <= query
        # Real keys at or before the query; a padding query attends to itself only (no NaN).
        mask = ops.logical_or(
            ops.logical_and(ops.expand_dims(causal, 0), ops.expand_dims(real, 1)),
            ops.expand_dims(ops.eye(length, dtype="bool"), 0),
        )
        for i in range(self.num_blocks):
            h = self.attention_norms[i](x)
            h = self.attentions[i](h, h, attention_mask=mask, training=training)
            x = x + self.attention_dropouts[i](h, training=training)
            h = self.feed_forward_outs[i](
                self.feed_forward_ins[i](self.feed_forward_norms[i](x))
            )
            x = (x + self.feed_forward_dropouts[i](h, training=training)) * keep
        x = self.final_norm(x) * keep
        if return_sequences:
            return x
        # The state after the last real watch (a history without one gives zeros).
        last = ops.argmax(ops.where(real, ops.expand_dims(index, 0), -1), axis=1)
        state = ops.take_along_axis(x, ops.reshape(last, (-1, 1, 1)), axis=1)
        return ops.squeeze(state, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_videos": self.num_videos,
            "embedding_dim": self.embedding_dim,
            "max_length": self.max_length,
            "num_blocks": self.num_blocks,
            "num_heads": self.num_heads,
            "feed_forward_dim": self.feed_forward_dim,
            "dropout": self.dropout,
            "seed": self.seed,
        })
        return config
