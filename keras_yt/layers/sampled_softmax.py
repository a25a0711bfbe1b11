"""`SampledSoftmax`: the candidate-generation head of the YouTube recommender."""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from keras_yt import _checks
from keras_yt import backend as yt_backend
from keras_yt._table_marks import mark_embedding_table

_SAMPLERS = ("log_uniform", "unigram", "uniform", "in_batch")
# Accidental hits get this logit, like `tf.nn.sampled_softmax_loss` (which adds -FLOAT_MAX).
_ACCIDENTAL_HIT_LOGIT = float(np.finfo(np.float32).min)
# Floor for expected counts before the log, so a zero-probability label gives a finite loss.
_MIN_EXPECTED_COUNT = 1e-30


def _constant(values: np.ndarray):
    """An initializer returning a fixed table (used for the non-trainable sampling tables)."""

    def initializer(shape, dtype=None):
        return ops.convert_to_tensor(np.asarray(values).reshape(shape), dtype=dtype)

    return initializer


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@keras.saving.register_keras_serializable(package="keras_yt")
class SampledSoftmax(keras.layers.Layer):
    """Candidate-generation head: sampled softmax over the video corpus.

    The input is the *user vector* `u` (the output of the last ReLU layer of the tower). The layer
    owns the *output video embeddings* `W` (variable `output_embeddings`, shape
    `(num_classes, d)`) and biases `b` (variable `output_biases`, shape `(num_classes,)`); the
    score of video `j` is `u · W_j + b_j`, which is what serving ranks with a maximum inner product
    search (`get_output_embeddings()` hands `W` and `b` to the index).

    Class `0` is reserved for padding / out-of-vocabulary ids: the samplers draw negatives from
    `[1, num_classes)`, and `full_loss` and `top_k` mask class 0 to `-inf`. The full `logits`
    (and the inference output of `call`) still contain the column for class 0, so that column
    `j` is video id `j`.

    Training (`call(u, labels, training=True)`) never builds the full `(batch, num_classes)`
    logits: it gathers the rows of `W` and `b` for the labels and for one shared set of sampled
    negatives (`keras_yt.backend.gather_rows`, a gather from the variables themselves that never
    reads the whole tables), so its cost grows with `num_sampled`, not with `num_classes`, and on
    TensorFlow the gradients w.r.t. `W` and `b` are row-sparse (`tf.IndexedSlices`). As
    `tf.nn.sampled_softmax_loss` does, the log of the expected count `Q(j)`
    of each class in the sample is subtracted from the sampled logits and from the true logit,
    and a sampled id equal to an example's label gets a very large negative logit
    (`remove_accidental_hits`). Negatives are drawn with replacement, so `Q(j) = S * p(j)` with
    `S` the number of draws (the same expected count `tf.random.*_candidate_sampler` report with
    `unique=False`).

    Samplers (`p(j)` for `j` in `[1, num_classes)`):

    * `"log_uniform"`: Zipfian, `p(j) = log((j + 1) / j) / log(num_classes)` — the distribution of
      `tf.random.log_uniform_candidate_sampler` shifted by one to skip class 0. Assign video ids
      by decreasing popularity to use it.
    * `"unigram"`: `p(j) ∝ class_counts[j]` (`class_counts[0]` is ignored), drawn by inverse CDF
      over a cumulative table kept as the non-trainable weight `sampling_cdf`.
    * `"uniform"`: `p(j) = 1 / (num_classes - 1)`.
    * `"in_batch"`: the negatives are the labels of the batch (every example sees the batch's
      other labels; its own label is an accidental hit and is removed when
      `remove_accidental_hits=True`). `num_sampled` is ignored. The labels of a batch are
      treated as `batch` draws from `p(j) ∝ class_counts[j]` if `class_counts` is given (the log-Q
      correction then removes the popularity bias of in-batch negatives), else from the uniform
      distribution, in which case the correction is one constant shared by every logit and
      cancels.

    With `remove_accidental_hits=True` the label's own probability mass is missing from the sampled
    estimate of the partition function, so the expected gradient converges to the full-softmax
    gradient up to a term of order `p(label | u)`, negligible for a large corpus; with `False` it
    converges to the full-softmax gradient as `num_sampled` grows.

    Weight tying: `tie_weights(embedding_layer)` (before the layer is built) makes `W` the
    `embeddings` variable of an input embedding layer. The tie is not part of the config: a model
    that ties must tie again after `from_config`, before building (the embedding layer must belong
    to the same model so that the table is trained and saved).

    Args:
        num_classes: Number of classes (videos), including the reserved class 0. At least 2.
        num_sampled: Number of negatives drawn per batch (shared by all examples of the batch);
            in `[1, num_classes)`, or `None` for the **full softmax** in training too (every
            class is a negative: exact, O(`num_classes`) per example, the better choice for a
            catalogue of a few thousand videos). Ignored by the `"in_batch"` sampler.
        sampler: One of `"log_uniform"`, `"unigram"`, `"uniform"`, `"in_batch"`.
        class_counts: Optional sequence of `num_classes` non-negative counts (e.g. training
            watches per video); required by `"unigram"`, optional for `"in_batch"`, unused
            otherwise. Stored in the config.
        remove_accidental_hits: Whether sampled ids equal to the example's label are removed.
        use_bias: Whether the layer has the biases `b`.
        embeddings_initializer: Initializer for `W`.
        seed: Optional integer seed for the sampler.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        u: User vectors, float tensor of shape `(batch, d)`.
        labels: Optional int tensor of shape `(batch,)` or `(batch, 1)`: the watched video ids,
            in `[1, num_classes)`.
        training: Python boolean. With `True` and `labels`, the sampled-softmax loss is returned.

    Returns:
        With `training=True` and `labels`: the per-example sampled-softmax loss (the full-softmax
        cross-entropy when `num_sampled=None`), float32 of shape `(batch,)`. Otherwise the full
        logits `u Wᵀ + b` of shape `(batch, num_classes)`.

    Example:

    >>> import numpy as np
    >>> head = SampledSoftmax(num_classes=1000, num_sampled=64, seed=1)
    >>> u = np.random.rand(4, 16).astype("float32")
    >>> labels = np.array([3, 17, 256, 999])
    >>> tuple(head(u, labels, training=True).shape)
    (4,)
    >>> tuple(head(u).shape)
    (4, 1000)
    >>> scores, ids = head.top_k(u, k=10, exclude=np.array([[3, 0], [17, 5], [0, 0], [1, 2]]))
    >>> tuple(ids.shape)
    (4, 10)
    >>> W, b = head.get_output_embeddings()
    >>> W.shape, b.shape
    ((1000, 16), (1000,))
    """

    def __init__(
        self,
        num_classes: int,
        num_sampled: int | None = 4096,
        sampler: str = "log_uniform",
        class_counts: Sequence[float] | np.ndarray | None = None,
        remove_accidental_hits: bool = True,
        use_bias: bool = True,
        embeddings_initializer: Any = "uniform",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _is_int(num_classes) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        num_classes = int(num_classes)
        if sampler not in _SAMPLERS:
            raise ValueError(f"sampler must be one of {_SAMPLERS}, got {sampler!r}")
        if num_sampled is not None and (
            not _is_int(num_sampled)
            or (sampler == "in_batch" and num_sampled < 1)
            or (sampler != "in_batch" and not 1 <= num_sampled < num_classes)
        ):
            raise ValueError(
                f"num_sampled must be in [1, num_classes) = [1, {num_classes}) or None (full "
                f"softmax), got {num_sampled!r}"
            )
        if seed is not None and not _is_int(seed):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        if not isinstance(remove_accidental_hits, (bool, np.bool_)):
            raise ValueError(
                f"remove_accidental_hits must be a bool, got {remove_accidental_hits!r}"
            )
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(f"use_bias must be a bool, got {use_bias!r}")
        if sampler == "unigram" and class_counts is None:
            raise ValueError(
                "class_counts is required with sampler='unigram' (a sequence of num_classes "
                "non-negative counts), got None"
            )
        self._probs = None
        if class_counts is not None:
            counts = np.asarray(class_counts, dtype="float64")
            if counts.shape != (num_classes,):
                raise ValueError(
                    f"class_counts must have shape (num_classes,) = ({num_classes},), "
                    f"got shape {counts.shape}"
                )
            if not np.all(np.isfinite(counts)) or np.any(counts < 0):
                raise ValueError(
                    "class_counts must be finite and non-negative, got min "
                    f"{np.nanmin(counts)} and {np.count_nonzero(~np.isfinite(counts))} "
                    "non-finite values"
                )
            if counts[1:].sum() <= 0:
                raise ValueError(
                    "class_counts must have a positive count for at least one class in "
                    "[1, num_classes), got all zeros"
                )
            probs = counts.copy()
            probs[0] = 0.0
            probs /= probs.sum()
            self._probs = probs
            # The last class with a positive count: inverse-CDF draws are clipped to it.
            self._max_sampled_id = int(np.flatnonzero(probs)[-1])
            class_counts = counts.tolist()

        self.num_classes = num_classes
        self.num_sampled = None if num_sampled is None else int(num_sampled)
        self.sampler = sampler
        self.class_counts = class_counts
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.use_bias = bool(use_bias)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self._output_embeddings = None
        self.output_biases = None
        self.sampling_cdf = None
        self.sampling_probs = None
        # Not tracked: the tied table belongs to (and is saved by) the embedding layer.
        object.__setattr__(self, "_tied_embedding_layer", None)

    # ------------------------------------------------------------------ building and tying

    @property
    def output_embeddings(self):
        """The output video embeddings `W`, `(num_classes, d)` (the tied table if tied)."""
        if self._tied_embedding_layer is not None:
            return self._tied_embedding_layer.embeddings
        return self._output_embeddings

    def tie_weights(self, embedding_layer: keras.layers.Layer) -> None:
        """Use `embedding_layer.embeddings` as the output embeddings `W`.

        Args:
            embedding_layer: A layer with an `embeddings` variable of shape
                `(num_classes, d)`, e.g. `keras.layers.Embedding(num_classes, d)` or the
                project's `EmbeddingBag`. Must be called before this layer is built.
        """
        if self.built:
            raise RuntimeError(
                f"tie_weights must be called before {self.name!r} is built; it already has "
                "its own output_embeddings"
            )
        if not isinstance(embedding_layer, keras.layers.Layer):
            raise ValueError(
                "embedding_layer must be a Keras layer with an `embeddings` variable of shape "
                f"(num_classes, d) = ({self.num_classes}, d), got {embedding_layer!r}"
            )
        if embedding_layer.built:
            table = getattr(embedding_layer, "embeddings", None)
            if table is None:
                raise ValueError(
                    "embedding_layer must have an `embeddings` variable of shape "
                    f"(num_classes, d) = ({self.num_classes}, d), got {embedding_layer!r}"
                )
            self._check_tied_shape(table.shape, None)
        elif getattr(embedding_layer, "input_dim", self.num_classes) != self.num_classes:
            self._check_tied_shape(
                (embedding_layer.input_dim, getattr(embedding_layer, "output_dim", "d")), None
            )
        object.__setattr__(self, "_tied_embedding_layer", embedding_layer)

    def _check_tied_shape(self, shape, d) -> None:
        shape = tuple(shape)
        if len(shape) != 2 or shape[0] != self.num_classes or (d is not None and shape[1] != d):
            expected = f"({self.num_classes}, {'d' if d is None else d})"
            raise ValueError(
                f"The tied embeddings must have shape (num_classes, d) = {expected}, got {shape}"
            )

    def build(self, input_shape):
        d = input_shape[-1]
        if d is None:
            raise ValueError(
                f"The last dimension of the user vector must be known, got shape {input_shape}"
            )
        if self._tied_embedding_layer is not None:
            layer = self._tied_embedding_layer
            if not layer.built:
                layer.build(None)
            self._check_tied_shape(layer.embeddings.shape, d)
            if self.num_sampled is None and self.sampler != "in_batch":
                # A full softmax reads the tied table whole in training: not row by row only.
                mark_embedding_table(layer.embeddings, False)
        else:
            self._output_embeddings = self.add_weight(
                name="output_embeddings",
                shape=(self.num_classes, d),
                initializer=yt_backend.table_initializer(self.embeddings_initializer),
            )
            if self.num_sampled is not None or self.sampler == "in_batch":
                # Read row by row in training (a full softmax reads the whole table).
                mark_embedding_table(self._output_embeddings)
        if self.use_bias:
            self.output_biases = self.add_weight(
                name="output_biases", shape=(self.num_classes,), initializer="zeros"
            )
            if self.num_sampled is not None or self.sampler == "in_batch":
                mark_embedding_table(self.output_biases)
        if self._probs is not None and self.sampler in ("unigram", "in_batch"):
            self.sampling_probs = self.add_weight(
                name="sampling_probs",
                shape=(self.num_classes,),
                initializer=_constant(self._probs),
                dtype="float32",
                trainable=False,
            )
            if self.sampler == "unigram":
                self.sampling_cdf = self.add_weight(
                    name="sampling_cdf",
                    shape=(self.num_classes,),
                    initializer=_constant(np.cumsum(self._probs)),
                    dtype="float32",
                    trainable=False,
                    autocast=False,  # float16 would blur the CDF (and fail in searchsorted)
                )

    def _ensure_built(self, u) -> None:
        if not self.built:
            self.build(tuple(u.shape))

    # ------------------------------------------------------------------ sampling

    def _probabilities(self, ids):
        """`p(j)` of the sampling distribution for int tensor `ids` (float32)."""
        ids = ops.cast(ids, "int32")
        if self.sampler == "log_uniform":
            j = ops.cast(ops.maximum(ids, 1), "float32")
            return ops.log1p(1.0 / j) / math.log(self.num_classes)
        if self.sampling_probs is not None:
            return yt_backend.gather_rows(self.sampling_probs, ids)
        return ops.full(ops.shape(ids), 1.0 / (self.num_classes - 1), dtype="float32")

    def expected_count(self, ids, num_draws: int | None = None):
        """Expected number of times each of `ids` appears in `num_draws` draws of the sampler.

        Args:
            ids: Int tensor of class ids.
            num_draws: Number of draws (with replacement); defaults to `num_sampled`.

        Returns:
            Float32 tensor shaped like `ids`: `num_draws * p(ids)`.
        """
        if num_draws is None:
            num_draws = self.num_sampled
        if num_draws is None:
            raise ValueError("expected_count needs num_draws when num_sampled is None")
        return ops.cast(num_draws, "float32") * self._probabilities(ids)

    def sample_negatives(self, num_sampled: int | None = None):
        """Draw negatives from the sampler, with replacement.

        Args:
            num_sampled: Number of draws; defaults to `num_sampled`.

        Returns:
            Int32 tensor of shape `(num_sampled,)` with ids in `[1, num_classes)`.
        """
        if self.sampler == "in_batch":
            raise ValueError(
                "sample_negatives is not available with sampler='in_batch': the negatives are "
                "the labels of the batch"
            )
        if not self.built and self.sampler == "unigram":
            raise RuntimeError("Build the layer before sampling from the unigram table")
        n = self.num_sampled if num_sampled is None else int(num_sampled)
        if n is None:
            raise ValueError(
                "sample_negatives needs num_sampled: the layer was built with num_sampled=None "
                "(full softmax), so pass the number of draws"
            )
        if self.sampler == "uniform":
            return ops.cast(
                keras.random.randint((n,), 1, self.num_classes, seed=self.seed_generator),
                "int32",
            )
        uniform = keras.random.uniform((n,), dtype="float32", seed=self.seed_generator)
        if self.sampler == "log_uniform":
            # Inverse CDF: P(id <= k) = log(k + 1) / log(num_classes).
            ids = ops.floor(ops.exp(uniform * math.log(self.num_classes)))
            return ops.clip(ops.cast(ids, "int32"), 1, self.num_classes - 1)
        ids = ops.searchsorted(self.sampling_cdf, uniform, side="right")
        return ops.clip(ops.cast(ids, "int32"), 1, self._max_sampled_id)

    # ------------------------------------------------------------------ scores and losses

    def _biases(self, ids=None):
        if self.output_biases is None:
            return None
        b = self.output_biases if ids is None else yt_backend.gather_rows(self.output_biases, ids)
        return ops.cast(b, self.compute_dtype)

    def logits(self, u):
        """Full logits `u Wᵀ + b`, shape `(batch, num_classes)` (column 0 included).

        Args:
            u: User vectors `(batch, d)`.

        Returns:
            Logits `(batch, num_classes)` in the compute dtype.
        """
        return self._logits_from(u, 0)

    def _logits_from(self, u, first_class: int):
        """Logits `u Wᵀ + b` of the classes `[first_class, num_classes)`."""
        self._ensure_built(u)
        u = ops.cast(u, self.compute_dtype)
        w = ops.cast(self.output_embeddings[first_class:], self.compute_dtype)
        logits = ops.matmul(u, ops.transpose(w))
        b = self._biases()
        return logits if b is None else logits + b[first_class:]

    def sampled_loss(self, u, labels, sampled_ids=None):
        """Per-example sampled-softmax loss (log-Q corrected, accidental hits removed).

        Args:
            u: User vectors `(batch, d)`.
            labels: True class ids `(batch,)` or `(batch, 1)`, in `[1, num_classes)`.
            sampled_ids: Optional int tensor `(S,)` of negatives shared by the batch; by default
                drawn from the sampler (the batch's labels for `"in_batch"`). Their expected
                counts are `S * p(j)`.

        Returns:
            Float32 tensor `(batch,)`.
        """
        _checks.softmax_inputs(self, u, labels)
        self._ensure_built(u)
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        if sampled_ids is None:
            sampled_ids = labels if self.sampler == "in_batch" else self.sample_negatives()
        sampled_ids = ops.reshape(ops.cast(sampled_ids, "int32"), (-1,))
        num_draws = ops.shape(sampled_ids)[0]

        u = ops.cast(u, self.compute_dtype)
        # Row gathers only: cost O((batch + S) * d) and row-sparse gradients for W and b.
        # (`gather_rows` reads only these rows of the variables, not the whole tables.)
        true_w = ops.cast(
            yt_backend.gather_rows(self.output_embeddings, labels), self.compute_dtype
        )
        sampled_w = ops.cast(
            yt_backend.gather_rows(self.output_embeddings, sampled_ids), self.compute_dtype
        )
        true_logits = ops.sum(u * true_w, axis=-1)
        sampled_logits = ops.matmul(u, ops.transpose(sampled_w))
        if self.output_biases is not None:
            true_logits = true_logits + self._biases(labels)
            sampled_logits = sampled_logits + self._biases(sampled_ids)
        true_logits = ops.cast(true_logits, "float32")
        sampled_logits = ops.cast(sampled_logits, "float32")

        true_q = ops.maximum(self.expected_count(labels, num_draws), _MIN_EXPECTED_COUNT)
        sampled_q = ops.maximum(self.expected_count(sampled_ids, num_draws), _MIN_EXPECTED_COUNT)
        true_logits = true_logits - ops.log(true_q)
        sampled_logits = sampled_logits - ops.log(sampled_q)[None, :]
        if self.remove_accidental_hits:
            hits = ops.equal(labels[:, None], sampled_ids[None, :])
            sampled_logits = ops.where(hits, _ACCIDENTAL_HIT_LOGIT, sampled_logits)

        all_logits = ops.concatenate([true_logits[:, None], sampled_logits], axis=1)
        return ops.logsumexp(all_logits, axis=1) - true_logits

    def full_loss(self, u, labels):
        """Full-softmax cross-entropy over classes `[1, num_classes)`, per example.

        Args:
            u: User vectors `(batch, d)`.
            labels: True class ids `(batch,)` or `(batch, 1)`, in `[1, num_classes)`.

        Returns:
            Float32 tensor `(batch,)`.
        """
        _checks.softmax_inputs(self, u, labels)
        # The logits of classes 1.. only (no padding column to mask), and one fused
        # cross-entropy (TensorFlow's sparse softmax kernel): 1.7x faster than masking the
        # padding column and a logsumexp over (batch, num_classes) logits.
        logits = self._logits_from(u, 1)
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,)) - 1
        return ops.sparse_categorical_crossentropy(
            labels, ops.cast(logits, "float32"), from_logits=True
        )

    def _mask_padding(self, logits):
        column = ops.arange(self.num_classes) == 0
        return ops.where(column[None, :], float("-inf"), logits)

    def top_k(self, u, k: int, exclude=None):
        """Exact top-`k` classes by `u · W_j + b_j`, never class 0.

        Args:
            u: User vectors `(batch, d)`.
            k: Number of classes to return, in `[1, num_classes)`.
            exclude: Optional int tensor `(batch, M)` of ids to leave out per row (e.g. already
                watched videos); `0` (padding) and ids outside `[0, num_classes)` are ignored.
                If fewer than `k` classes remain, the last slots get id `-1` and score
                `-inf` (never the padding class 0 or an excluded id).

        Returns:
            Tuple `(scores, ids)`, each `(batch, k)`, sorted by decreasing score.
        """
        if not _is_int(k) or not 1 <= k < self.num_classes:
            raise ValueError(f"k must be in [1, num_classes) = [1, {self.num_classes}), got {k!r}")
        _checks.softmax_inputs(self, u, None)
        logits = self._mask_padding(ops.cast(self.logits(u), "float32"))
        if exclude is not None:
            exclude = ops.cast(exclude, "int32")
            exclude = ops.where(
                (exclude < 0) | (exclude >= self.num_classes), ops.zeros_like(exclude), exclude
            )
            batch = ops.shape(logits)[0]
            rows = ops.broadcast_to(ops.arange(batch, dtype="int32")[:, None], ops.shape(exclude))
            indices = ops.reshape(ops.stack([rows, exclude], axis=-1), (-1, 2))
            hits = ops.scatter(
                indices, ops.ones((ops.shape(indices)[0],), "float32"), ops.shape(logits)
            )
            logits = ops.where(hits > 0, float("-inf"), logits)
        scores, ids = ops.top_k(logits, k)
        # Slots no eligible class could fill (score -inf): id -1, as the serving indexes do.
        ids = ops.where(ops.equal(scores, float("-inf")), -1, ops.cast(ids, "int32"))
        return scores, ids

    def get_output_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The output video embeddings and biases for serving.

        Returns:
            `(W, b)` as numpy arrays of shapes `(num_classes, d)` and `(num_classes,)`; `b` is
            zeros when `use_bias=False`.
        """
        if not self.built:
            raise RuntimeError(f"{self.name!r} is not built yet: call it on a user vector first")
        w = np.asarray(ops.convert_to_numpy(self.output_embeddings))
        if self.output_biases is None:
            b = np.zeros((self.num_classes,), dtype=w.dtype)
        else:
            b = np.asarray(ops.convert_to_numpy(self.output_biases))
        return w, b

    def __call__(self, u, labels=None, training=None, **kwargs):
        _checks.softmax_inputs(self, u, labels)  # numpy values only, never in the graph
        if labels is None:
            return super().__call__(u, training=training, **kwargs)
        return super().__call__(u, labels, training=training, **kwargs)

    def call(self, u, labels=None, training=None):
        if training and labels is not None:
            if self.num_sampled is None and self.sampler != "in_batch":
                return self.full_loss(u, labels)
            return self.sampled_loss(u, labels)
        return self.logits(u)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "num_sampled": self.num_sampled,
                "sampler": self.sampler,
                "class_counts": self.class_counts,
                "remove_accidental_hits": self.remove_accidental_hits,
                "use_bias": self.use_bias,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "seed": self.seed,
            }
        )
        return config
