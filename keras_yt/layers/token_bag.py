"""`TokenBag`: search queries → hashed unigrams and bigrams → averaged embedding."""

import keras
import numpy as np

from keras_yt import backend as yt_backend
from keras_yt.layers.embedding_bag import _COMBINERS, EmbeddingBag


def _normalize_ngrams(ngrams) -> tuple[int, ...]:
    if isinstance(ngrams, int) and not isinstance(ngrams, bool):
        ngrams = tuple(range(1, ngrams + 1))
    if (
        not isinstance(ngrams, (tuple, list))
        or not ngrams
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in ngrams)
        or len(set(ngrams)) != len(ngrams)
    ):
        raise ValueError(
            "ngrams must be a positive integer N (for widths 1..N) or a non-empty sequence of "
            f"distinct positive integers such as (1, 2), got {ngrams!r}"
        )
    return tuple(ngrams)


def _normalize_salt(salt) -> list[int] | None:
    if salt is None:
        return None
    if isinstance(salt, int) and not isinstance(salt, bool):
        return [salt, salt]
    if (
        isinstance(salt, (tuple, list))
        and len(salt) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in salt)
    ):
        return list(salt)
    raise ValueError(f"salt must be None, an integer or a pair of integers, got {salt!r}")


@keras.saving.register_keras_serializable(package="keras_yt")
class TokenBag(keras.layers.Layer):
    """Embeds a user's search history as an averaged bag of hashed word n-grams.

    Covington et al. (2016), section 3.3: "search history is treated similarly to watch history -
    each query is tokenized into unigrams and bigrams and each token is embedded. Once averaged,
    the user's tokenized, embedded queries represent a summarized dense search history."

    Each query is lower-cased and split on whitespace; n-grams (by default unigrams and bigrams)
    are formed within each query (never across two queries) and joined by one space; every token
    is hashed with `keras.layers.Hashing` (FarmHash fingerprint, or SipHash keyed by `salt`) into
    `num_bins - 1` buckets, shifted to `[1, num_bins)`: bin `0` is reserved for padding. The
    tokens of all of a row's queries form one bag, embedded and combined by an internal
    `EmbeddingBag(num_bins, output_dim, combiner)`. Empty strings / rows without tokens give the
    zero vector.

    Strings are handled with TensorFlow's string ops on every backend
    (`keras_yt.backend.tokenize_queries` and the `keras.layers.Hashing` preprocessing layer):

    * TensorFlow backend: the layer takes query strings (`tf.string` tensors; the models convert
      numpy string arrays) and tokenises them inside the model, also in a SavedModel.
    * JAX (and other backends): arrays hold no strings, so queries are tokenised in the input
      pipeline and reach the layer as integer token ids. `token_ids(queries)` does it eagerly
      on numpy arrays or inside `tf.data` (`dataset.map`); `CandidateGenerator` and its user
      tower do it for numpy query arrays given to `fit`/`evaluate`/`predict`. Called eagerly on
      strings, the layer tokenises them itself; inside a compiled (`jit`) step it takes ids only.
      TensorFlow is imported the first time queries are tokenised.

    The call takes either strings or the ids of `token_ids` (same result on every backend), and
    the weights are the same, so a model saved on one backend loads on the other.

    Args:
        num_bins: size of the hashed vocabulary including the padding bin `0` (>= 2).
        output_dim: width of the embedding.
        ngrams: n-gram widths, e.g. `(1, 2)` (unigrams and bigrams); an integer `N` means
            `(1, ..., N)`.
        max_tokens: if set, keep only the first `max_tokens` tokens of each row (order: query 0's
            n-grams of width `ngrams[0]`, then `ngrams[1]`, ..., then query 1, ...), padding to a
            fixed length; `None` keeps all tokens.
        combiner: `"mean"`, `"sum"` or `"sqrtn"` (see `EmbeddingBag`).
        salt: `None` (FarmHash64 fingerprint), an integer, or a pair of integers (keyed SipHash),
            as in `keras.layers.Hashing`.
        embeddings_initializer: initializer of the token table.
        embeddings_regularizer: optional regularizer of the token table.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        queries: string tensor / array of shape `(batch,)` (one query per row) or
            `(batch, num_queries)` (unused slots `""`), or the integer token ids `(batch, T)` of
            `token_ids(queries)` (`0` = padding). For `fit` / `predict` on TensorFlow, pass
            strings as a `tf.Tensor` or a `tf.data.Dataset`: Keras' data adapters reject numpy
            string arrays (`predict` accepts `dtype=object` arrays, `fit` does not). On JAX pass
            token ids (see above).

    Returns:
        A tensor of shape `(batch, output_dim)`.

    Example:

    >>> import numpy as np
    >>> layer = TokenBag(num_bins=1000, output_dim=8)
    >>> out = layer(np.array([["funny cats", "cat videos"], ["", ""]]))
    >>> tuple(out.shape), bool(np.all(np.asarray(out)[1] == 0))
    ((2, 8), True)
    """

    def __init__(
        self,
        num_bins: int,
        output_dim: int,
        ngrams=(1, 2),
        max_tokens: int | None = None,
        combiner: str = "mean",
        salt=None,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(
                f"num_bins must be an integer >= 2 (bin 0 is padding), got {num_bins!r}"
            )
        if isinstance(output_dim, bool) or not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(f"output_dim must be a positive integer, got {output_dim!r}")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise ValueError(f"max_tokens must be None or a positive integer, got {max_tokens!r}")
        if combiner not in _COMBINERS:
            raise ValueError(f"combiner must be one of {_COMBINERS}, got {combiner!r}")
        self.num_bins = num_bins
        self.output_dim = output_dim
        self.ngrams = _normalize_ngrams(ngrams)
        self.max_tokens = max_tokens
        self.combiner = combiner
        self.salt = _normalize_salt(salt)
        # Hashing outputs int64 bucket ids, so it keeps its own (integer) dtype. The padding
        # token "" goes to bin 0, the others to 1 + hash % (num_bins - 1).
        self.hashing = keras.layers.Hashing(
            num_bins=num_bins, mask_value="", salt=self.salt, name="hashing"
        )
        self.bag = EmbeddingBag(
            num_bins,
            output_dim,
            combiner=combiner,
            embeddings_initializer=embeddings_initializer,
            embeddings_regularizer=embeddings_regularizer,
            dtype=self.dtype_policy,
            name="embedding_bag",
        )
        # String arrays cannot go through Keras' float/int input conversion.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    @staticmethod
    def query_feature_spec(num_queries: int) -> tuple[tuple, str]:
        """`(shape_without_batch, dtype)` of a model input that feeds this layer.

        On TensorFlow the model takes the query strings, `((num_queries,), "string")`; on the
        other backends it takes their token ids (`token_ids`), `((None,), "int32")`.

        Args:
            num_queries: number of queries per row.

        Returns:
            The shape (without the batch axis) and the dtype of the input.

        Example:

        >>> import keras
        >>> shape, dtype = TokenBag.query_feature_spec(3)
        >>> dtype == ("string" if keras.backend.backend() == "tensorflow" else "int32")
        True
        """
        if keras.backend.backend() == "tensorflow":
            return (num_queries,), "string"
        return (None,), "int32"

    @property
    def embeddings(self):
        """The token table, shape `(num_bins, output_dim)` (row 0 = padding, never used)."""
        return self.bag.embeddings

    def build(self, input_shape=None):
        if input_shape is not None:
            _check_query_shape(input_shape)
        if not self.bag.built:
            self.bag.build((None, self.max_tokens))
        self.built = True

    def token_ids(self, queries):
        """Hashed token ids of `queries`, padded with `0`.

        This is the input-pipeline half of the layer: on JAX, map it over the queries before
        they reach the model. It runs eagerly (numpy or `tf.string` in, backend tensor out) or
        inside a `tf.data` pipeline (`tf.Tensor` out), on any backend.

        Args:
            queries: string tensor / array of shape `(batch,)` or `(batch, num_queries)`.

        Returns:
            Integer tensor `(batch, T)` of ids in `[1, num_bins)`, `0` on padding.

        Example:

        >>> import numpy as np
        >>> layer = TokenBag(num_bins=1000, output_dim=8, max_tokens=4)
        >>> ids = layer.token_ids(np.array([["funny cats", ""], ["", ""]]))
        >>> np.asarray(ids).tolist()[1], int(np.count_nonzero(np.asarray(ids)[0]))
        ([0, 0, 0, 0], 3)
        """
        tokens, _ = yt_backend.tokenize_queries(queries, self.ngrams, self.max_tokens)
        return self.hashing(tokens)

    def call(self, queries):
        if not _holds_strings(queries):
            return self.bag(queries)
        return self.bag(self.token_ids(queries))

    def compute_output_shape(self, input_shape):
        _check_query_shape(input_shape)
        return (input_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_bins": self.num_bins,
                "output_dim": self.output_dim,
                "ngrams": list(self.ngrams),
                "max_tokens": self.max_tokens,
                "combiner": self.combiner,
                "salt": self.salt,
                "embeddings_initializer": keras.initializers.serialize(
                    self.bag.embeddings_initializer
                ),
                "embeddings_regularizer": keras.regularizers.serialize(
                    self.bag.embeddings_regularizer
                ),
            }
        )
        return config


def _holds_strings(queries) -> bool:
    """Whether `queries` are strings (not token ids), for numpy, lists and tensors alike."""
    if isinstance(queries, (list, tuple)):
        return np.asarray(queries).dtype.kind in "USO"
    dtype = getattr(queries, "dtype", None)
    if dtype is None:
        return False
    return getattr(dtype, "kind", None) in ("U", "S", "O") or "string" in str(dtype)


def _check_query_shape(shape) -> None:
    shape = tuple(shape)
    if len(shape) not in (1, 2):
        raise ValueError(
            f"TokenBag expects queries of shape (batch,) or (batch, num_queries), got {shape}"
        )
