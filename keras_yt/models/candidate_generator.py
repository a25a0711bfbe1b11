"""The candidate-generation model of Covington et al. (2016), figure 3."""

from __future__ import annotations

import threading

import keras
import numpy as np
from keras import ops

from keras_yt import _checks, backend
from keras_yt.layers._padding import left_pad
from keras_yt.layers.embedding_bag import EmbeddingBag
from keras_yt.layers.example_age import ExampleAge
from keras_yt.layers.history_encoder import HistoryEncoder
from keras_yt.layers.sampled_softmax import SampledSoftmax
from keras_yt.layers.token_bag import TokenBag
from keras_yt.models._feature_model import FeatureModelMixin
from keras_yt.models._string_features import StringFeaturesMixin
from keras_yt.models.presets import PresetMixin
from keras_yt.models.user_tower import UserTower
from keras_yt.optimizers.sparse_adam import SparseAdam

WATCH_HISTORY = "watch_history"
SEARCH_HISTORY = "search_history"
EXAMPLE_AGE = "example_age"
DEFAULT_LEARNING_RATE = 1e-3
# With num_sampled="auto", catalogues up to this many videos train on the full softmax.
FULL_SOFTMAX_MAX_VIDEOS = 10_000
AUTO_NUM_SAMPLED = 4096
HISTORY_ENCODERS = ("bag", "attention")
USER_VECTOR_ACTIVATIONS = ("relu", "linear")

# The full logits of an evaluation batch, from `compute_loss` to `compute_metrics` (on JAX the
# model's variables are not readable in `compute_metrics`). Per thread: under a tf.distribute
# strategy each replica traces its step in a thread of its own, and the threads take turns at the
# cross-replica sum in `compute_loss`.
_evaluation_logits = threading.local()


@keras.saving.register_keras_serializable(package="keras_yt")
class CandidateGenerator(StringFeaturesMixin, FeatureModelMixin, PresetMixin, keras.Model):
    """Candidate generator: user features → ReLU tower → user vector → softmax over all videos.

    Each input feature is embedded and the embeddings are concatenated: the watch history (the
    paper's average of its video embeddings, `EmbeddingBag`, or with `history_encoder="attention"`
    the order-aware state of a causal self-attention `HistoryEncoder` after the last watch), the
    averaged search tokens (`TokenBag`, optional), the example age (`ExampleAge`), optional
    categorical features (geography, gender, device, ...) embedded with
    one `EmbeddingBag` each, and optional continuous features (e.g. user age, already scaled to
    about [0, 1]) with their squares and square roots. A tower of ReLU layers turns this into the
    **user vector** u (its width is the last of `hidden_units`, 256 in the paper).

    The `SampledSoftmax` head on top owns the **output video embeddings** W and biases b. Training
    (`fit`) minimises a sampled softmax over u·W_j + b_j, so a step costs O(`num_sampled`), not
    O(`num_videos`); `evaluate` reports the full-softmax cross-entropy and Recall@k over the whole
    corpus. Serving drops the softmax: the top-k videos for a user are the top-k of u·W_j + b_j, a
    maximum-inner-product search (`recommend` does it by brute force; `keras_yt.serving.
    CandidateIndex.from_model(model)` does it with an approximate nearest-neighbour index).

    The model's output (`predict`, `__call__`) is the user vector; the label `y` passed to `fit` is
    the id of the next watched video.

    **All-position training** (`history_encoder="attention"`): `fit` also takes the sequence
    windows of `keras_yt.data.sequence_examples`, with `y` of shape `(batch, max_history)` (the
    next watch after each position, 0 = none) and `example_age` per position: the encoder reads
    each window once, the tower turns the state at every position (joined with the user's other
    features) into a user vector, and the loss is the (sampled) softmax averaged over the real
    positions: every next watch of the window trains in one pass. With a sampled softmax the
    negatives are drawn once per step and shared by all positions of the batch. Serving and
    `evaluate` use the user vector after the last real watch, so validation examples are the
    usual `candidate_examples` (for `y` of shape `(batch, max_history)` in `evaluate`, the last
    column's label is the one predicted).

    Training cost does not grow with `num_videos` (with the default optimizer): the watch-history
    and search-token bags and the sampled softmax read only the rows of the ids in the batch and
    the sampled negatives, their gradients are row-sparse (`tf.IndexedSlices`), and
    `keras_yt.optimizers.SparseAdam` (the default of `compile()`, a "lazy" Adam) updates only those
    rows of the tables and of its moments. Measured on 2 CPU cores (batch 1024, d=256, 4096 sampled
    negatives): about 0.15-0.2 s/step from 10k to 1M videos, see `docs/performance.md`. Another
    optimizer works too, but Keras' Adam or Adagrad update the whole tables or their slots on
    every step (seconds per step at 1M videos), as do `weight_decay`, `use_ema` or gradient
    accumulation; `evaluate`, `recommend` and the full-softmax loss are O(`num_videos`) by nature.

    On TensorFlow the model trains on several devices of one host under
    `tf.distribute.MirroredStrategy`: build and `compile` it in `strategy.scope()`, then `fit` as
    usual. Each replica takes its share of the global batch and divides its loss by the global
    batch's size (or weight sum), so the summed gradients are those of one device on the whole
    batch, and all replicas draw the same sampled negatives (with `sampler="in_batch"` each
    replica's negatives are the labels of its share only). Use one strategy per process: a second
    `MirroredStrategy` in the same process can fail in its all-reduces (TensorFlow issue 62790).

    Args:
        num_videos: size of the video vocabulary, including the padding id 0 (so real video ids
            are `1 .. num_videos - 1`).
        video_embedding_dim: width of the watch-history embeddings.
        max_history: length of the padded `watch_history` input: video ids oldest → newest,
            newest last, padded with 0 (on the left as `keras_yt.data` writes it; padding on the
            right or in between gives the same answer).
        recent_history: if set, the last `recent_history` real watches are also averaged on
            their own (with the same video embeddings) and concatenated: a second, recent bag
            next to the whole history's, so the tower sees what the user watched last. `None`
            leaves it out (the paper's single bag).
        search_num_bins: hash buckets for search tokens; `None` leaves search history out.
        search_embedding_dim: width of the search-token embeddings.
        max_queries: number of past queries in the `search_history` input.
        use_example_age: whether to feed the example age (training: its value; serving: 0).
        example_age_scale: the example age (in days, as `keras_yt.data` computes it) is divided
            by this, so that it is of order 1.
        categorical_features: `{name: {"input_dim": int, "output_dim": int}}`; id 0 of each is
            "unknown" and embeds to zeros.
        continuous_features: names of continuous features (float, about [0, 1]).
        hidden_units: widths of the ReLU tower; the last one is the user vector's width.
            Empty: no tower, the user vector is the concatenated inputs (with the
            `"attention"` encoder and no other feature, the encoder's state: the anchor's head
            in docs/sequential.md).
        history_encoder: `"bag"` (the paper's averaged watch history) or `"attention"` (a
            causal self-attention `HistoryEncoder` over the ordered history, sharing the
            watch-history video table; `recent_history` must be None).
        encoder_blocks: self-attention blocks of the `"attention"` encoder.
        encoder_heads: attention heads per block.
        encoder_dropout: dropout rate inside the `"attention"` encoder.
        user_vector_activation: activation of the tower's last layer: `"relu"` (the paper's
            user vector) or `"linear"` (u may point anywhere, which a tied softmax can need);
            unused with no tower (`hidden_units=()`).
        dropout: dropout rate after each tower layer (training only; none with no tower).
        num_sampled: sampled negatives per training step; `None` trains on the full softmax
            (exact, O(`num_videos`) per example); `"auto"` (default) is `None` up to
            10,000 videos and 4096 above.
        sampler: `"log_uniform"`, `"unigram"`, `"uniform"` or `"in_batch"` (see `SampledSoftmax`).
        class_counts: per-video counts for the `"unigram"` sampler.
        tie_output_embeddings: share the output video embeddings with the watch-history table
            (needs the user vector's width, `user_vector_dim`, to be `video_embedding_dim`).
        output_bias: whether the softmax has the biases b (scores u·W_j + b_j); `False` scores
            u·W_j alone (with tied embeddings, a video's score is its similarity to the user
            state, with no popularity term).
        seed: seed of the negative sampler.
        **kwargs: `keras.Model` arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> model = CandidateGenerator(num_videos=100, video_embedding_dim=8, max_history=5,
    ...                            hidden_units=(16, 8), num_sampled=10)
    >>> model.compile()
    >>> x = {"watch_history": np.array([[3, 4, 0, 0, 0], [5, 0, 0, 0, 0]]),
    ...      "example_age": np.array([1.0, 0.0])}
    >>> history = model.fit(x, np.array([7, 9]), verbose=0)
    >>> ids, scores = model.recommend(x, k=3)
    >>> ids.shape
    (2, 3)
    """

    def __init__(
        self,
        num_videos: int,
        video_embedding_dim: int = 256,
        max_history: int = 50,
        recent_history: int | None = None,
        search_num_bins: int | None = None,
        search_embedding_dim: int = 256,
        max_queries: int = 50,
        use_example_age: bool = True,
        example_age_scale: float = 30.0,
        categorical_features: dict | None = None,
        continuous_features: list | tuple | None = None,
        hidden_units: list | tuple = (1024, 512, 256),
        dropout: float = 0.0,
        num_sampled: int | str | None = "auto",
        sampler: str = "log_uniform",
        class_counts=None,
        tie_output_embeddings: bool = False,
        seed: int | None = None,
        history_encoder: str = "bag",
        encoder_blocks: int = 2,
        encoder_heads: int = 1,
        encoder_dropout: float = 0.2,
        user_vector_activation: str = "relu",
        output_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_units, categorical_features, continuous_features = _checks.feature_model_args(
            num_videos, video_embedding_dim, max_history, hidden_units, dropout,
            categorical_features, continuous_features, allow_no_tower=True)
        if recent_history is not None:
            _checks.positive_int("recent_history", recent_history)
            if recent_history > max_history:
                raise ValueError(
                    f"recent_history must be <= max_history ({max_history}), got {recent_history}"
                )
        _checks.positive_int("max_queries", max_queries)
        if not isinstance(output_bias, (bool, np.bool_)):
            raise ValueError(f"output_bias must be a bool, got {output_bias!r}")
        if search_num_bins is not None:
            _checks.positive_int("search_num_bins", search_num_bins, minimum=2)
            _checks.positive_int("search_embedding_dim", search_embedding_dim)
        user_vector_dim = hidden_units[-1] if hidden_units else sum((
            video_embedding_dim * (2 if recent_history is not None else 1),
            search_embedding_dim if search_num_bins is not None else 0,
            1 if use_example_age else 0,
            *(spec["output_dim"] for spec in categorical_features.values()),
            3 * len(continuous_features),
        ))
        if tie_output_embeddings and video_embedding_dim != user_vector_dim:
            raise ValueError(
                "tie_output_embeddings=True needs video_embedding_dim == the user vector's width "
                f"(hidden_units[-1], or with no tower the concatenated inputs' width), got "
                f"video_embedding_dim={video_embedding_dim} and a user vector of width "
                f"{user_vector_dim} (hidden_units={list(hidden_units)})"
            )
        if history_encoder not in HISTORY_ENCODERS:
            raise ValueError(
                f"history_encoder must be one of {HISTORY_ENCODERS}, got {history_encoder!r}"
            )
        if history_encoder == "attention" and recent_history is not None:
            raise ValueError(
                "recent_history must be None with history_encoder='attention' (the encoder "
                f"already sees the order of the watches), got {recent_history!r}"
            )
        encoder_blocks = _checks.positive_int("encoder_blocks", encoder_blocks, minimum=0)
        encoder_heads = _checks.positive_int("encoder_heads", encoder_heads)
        if video_embedding_dim % encoder_heads:
            raise ValueError(
                f"encoder_heads must divide video_embedding_dim ({video_embedding_dim}), got "
                f"{encoder_heads}"
            )
        encoder_dropout = _checks.rate("encoder_dropout", encoder_dropout)
        if user_vector_activation not in USER_VECTOR_ACTIVATIONS:
            raise ValueError(
                f"user_vector_activation must be one of {USER_VECTOR_ACTIVATIONS}, got "
                f"{user_vector_activation!r}"
            )

        self.num_videos = num_videos
        self.video_embedding_dim = video_embedding_dim
        self.max_history = max_history
        self.recent_history = recent_history
        self.search_num_bins = search_num_bins
        self.search_embedding_dim = search_embedding_dim
        self.max_queries = max_queries
        self.use_example_age = use_example_age
        self.example_age_scale = example_age_scale
        self.categorical_features = categorical_features
        self.continuous_features = continuous_features
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.num_sampled = num_sampled
        self.sampler = sampler
        self.class_counts = class_counts
        self.tie_output_embeddings = tie_output_embeddings
        self.seed = seed
        self.history_encoder = history_encoder
        self.encoder_blocks = encoder_blocks
        self.encoder_heads = encoder_heads
        self.encoder_dropout = encoder_dropout
        self.user_vector_activation = user_vector_activation
        self.output_bias = bool(output_bias)
        self.user_vector_dim = user_vector_dim

        policy = self.dtype_policy
        self.watch_embedding = EmbeddingBag(
            num_videos, video_embedding_dim, dtype=policy, name="watch_embedding"
        )
        self.encoder = None
        if history_encoder == "attention":
            self.encoder = HistoryEncoder(
                num_videos, video_embedding_dim, max_length=max_history,
                num_blocks=encoder_blocks, num_heads=encoder_heads, dropout=encoder_dropout,
                seed=seed, dtype=policy, name="history_encoder",
            )
            self.encoder.share_embeddings(self.watch_embedding)
        self.search_embedding = (
            TokenBag(search_num_bins, search_embedding_dim, dtype=policy, name="search_embedding")
            if search_num_bins is not None
            else None
        )
        self.example_age = (
            ExampleAge(scale=example_age_scale, dtype=policy, name="example_age")
            if use_example_age
            else None
        )
        self.categorical_embeddings = self._make_categorical_embeddings(categorical_features)
        self._make_relu_tower(hidden_units, dropout, seed, last_activation=user_vector_activation)
        if num_sampled == "auto":
            resolved = None if num_videos <= FULL_SOFTMAX_MAX_VIDEOS else AUTO_NUM_SAMPLED
        elif num_sampled is None or not isinstance(num_sampled, str):
            resolved = num_sampled
            if (isinstance(num_sampled, int) and not isinstance(num_sampled, bool)
                    and num_sampled >= num_videos and sampler != "in_batch"):
                raise ValueError(
                    f"num_sampled must be less than num_videos = {num_videos}, got {num_sampled} "
                    "(the catalogue is smaller than the sampled negatives): pass "
                    "num_sampled='auto' (full softmax up to "
                    f"{FULL_SOFTMAX_MAX_VIDEOS:,} videos) or None (full softmax)"
                )
        else:
            raise ValueError(
                f"num_sampled must be an integer in [1, num_videos), None (full softmax) or "
                f"'auto', got {num_sampled!r}"
            )
        self.softmax = SampledSoftmax(
            num_videos,
            num_sampled=resolved,
            sampler=sampler,
            class_counts=class_counts,
            use_bias=self.output_bias,
            seed=seed,
            dtype=policy,
            name="softmax",
        )
        if tie_output_embeddings:
            self.softmax.tie_weights(self.watch_embedding)
        self._loss_is_sampled = True
        object.__setattr__(self, "_retrieval_metrics", ())

    # ---------------------------------------------------------------- inputs and building

    def feature_specs(self) -> dict:
        """`{name: (shape_without_batch, dtype)}` of every input feature the model reads."""
        specs = {WATCH_HISTORY: ((self.max_history,), "int32")}
        if self.search_embedding is not None:
            specs[SEARCH_HISTORY] = TokenBag.query_feature_spec(self.max_queries)
        if self.example_age is not None:
            specs[EXAMPLE_AGE] = ((), "float32")
        for name in self.categorical_features:
            specs[name] = ((), "int32")
        for name in self.continuous_features:
            specs[name] = ((), "float32")
        return specs

    def serving_inputs(self) -> dict:
        """`keras.Input`s of the features the user tower needs at serving (no example age)."""
        return {
            name: keras.Input(shape=shape, dtype=dtype, name=name)
            for name, (shape, dtype) in self.feature_specs().items()
            if name != EXAMPLE_AGE
        }

    def _build_from_features(self, inputs):
        self.user_vector(inputs, training=False)
        self.softmax.build((None, self.user_vector_dim))

    # ---------------------------------------------------------------- forward pass

    def user_vector(self, features: dict, training: bool = False, all_positions: bool = False):
        """The user vector u (the paper's last ReLU output), `(batch, user_vector_dim)`.

        At serving (`training=False`) the example age is its serving value whatever is passed, and
        it may be left out of `features`. With the `"attention"` encoder and `all_positions=True`
        the result is the user vector after every watch, `(batch, max_history, user_vector_dim)`
        (the user's other features repeated at every position; `example_age` may be given per
        position, `(batch, max_history)`).
        """
        needed = [WATCH_HISTORY]  # every missing feature reported at once
        if self.search_embedding is not None:
            needed.append(SEARCH_HISTORY)
        needed += [*self.categorical_embeddings, *self.continuous_features]
        _checks.has_features(features, needed, "CandidateGenerator")
        history = features[WATCH_HISTORY]
        sequences = all_positions and self.encoder is not None
        if self.encoder is not None:
            parts = [self.encoder(history, training=training, return_sequences=sequences)]
        else:
            parts = [self.watch_embedding(history)]
        if self.recent_history is not None:
            # Newest last: the last real watches are the most recent, wherever the padding is.
            recent = left_pad(history)[:, -self.recent_history :]
            parts.append(self.watch_embedding(recent))
        if self.search_embedding is not None:
            parts.append(self.search_embedding(features[SEARCH_HISTORY]))
        if self.example_age is not None:
            age = features.get(EXAMPLE_AGE)
            if age is None:
                if training:
                    raise ValueError(
                        f"CandidateGenerator needs the '{EXAMPLE_AGE}' feature in training; "
                        f"got features {sorted(features)}"
                    )
                age = ops.zeros_like(ops.cast(history[:, 0], self.compute_dtype))
            age = ops.convert_to_tensor(age)
            if len(age.shape) == 2 and age.shape[1] != 1:  # one age per position
                value = self.example_age(ops.reshape(age, (-1,)), training=training)
                value = ops.reshape(value, (-1, ops.shape(age)[1], value.shape[-1]))
                if not sequences:  # the age of the last position
                    value = value[:, -1]
                parts.append(value)
            else:
                parts.append(self.example_age(age, training=training))
        for name, layer in self.categorical_embeddings.items():
            parts.append(layer(features[name]))
        for name in self.continuous_features:
            value = ops.reshape(ops.cast(features[name], self.compute_dtype), (-1, 1))
            value = ops.maximum(value, 0.0)
            parts.extend([value, ops.square(value), ops.sqrt(value)])
        if sequences:  # per-user features repeated at every position
            steps = ops.shape(history)[1]
            parts = [
                p if len(p.shape) == 3
                else ops.repeat(ops.expand_dims(p, 1), steps, axis=1)
                for p in parts
            ]
        x = ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        return self._apply_relu_tower(x, training=training)

    def call(self, inputs, training=False):
        # In training the attention encoder gives the user vector after every watch, for
        # all-position training (`compute_loss` picks the last one for one-label examples).
        return self.user_vector(inputs, training=training, all_positions=bool(training))

    # ---------------------------------------------------------------- training and evaluation

    def compile(self, optimizer=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`, with the defaults this model trains well with.

        The loss is fixed: a sampled softmax in training and the full-softmax cross-entropy in
        evaluation. `optimizer` defaults to `keras_yt.optimizers.SparseAdam(1e-3)` (Adam with
        row-wise updates of the embedding tables and of the output embeddings, so a step costs the
        same at 10k or 1M videos; Keras' Adam would update them densely); `metrics` default to
        Recall@10 and Recall@100 over the whole corpus, computed in evaluation only.
        """
        if "loss" in kwargs and kwargs["loss"] is not None:
            raise ValueError(
                "CandidateGenerator's loss is its sampled softmax; got "
                f"loss={kwargs['loss']!r}. Leave `loss` out of compile()."
            )
        kwargs.pop("loss", None)
        if optimizer is None:
            optimizer = SparseAdam(DEFAULT_LEARNING_RATE)
        if metrics is None:
            metrics = [
                keras.metrics.SparseTopKCategoricalAccuracy(k=k, name=f"recall_at_{k}")
                for k in (10, 100)
                if k < self.num_videos
            ]
        # Kept out of Keras' compiled metrics, which would expect an update in every train step:
        # these need the full logits and are updated in evaluation only.
        object.__setattr__(self, "_retrieval_metrics", tuple(metrics))
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        return [*super().metrics, *self._retrieval_metrics]

    _label_dtype = "int32"  # video ids

    def _check_targets(self, y) -> None:
        if self.encoder is not None and np.ndim(y) == 2 and np.shape(y)[1] != 1:
            _checks.int_array("y (the labels per position)", y, 0, self.num_videos,
                              what="video ids or 0 (no label)")
            return
        _checks.labels("y (the labels)", y, self.num_videos)

    def _check_features(self, x) -> None:
        if (self.encoder is not None and isinstance(x, dict) and EXAMPLE_AGE in x
                and np.ndim(x[EXAMPLE_AGE]) == 2 and np.shape(x[EXAMPLE_AGE])[1] != 1):
            age = x[EXAMPLE_AGE]  # one age per position
            if _checks.is_numpy_like(age):
                _checks.float_array(f"feature {EXAMPLE_AGE!r}", age)
            x = {k: v for k, v in x.items() if k != EXAMPLE_AGE}
        super()._check_features(x)

    def _loss_inputs(self, x, y, y_pred, sample_weight):
        """User vectors `(n, d)`, labels `(n,)` and weights `(n,)` (0 = no label) of a batch."""
        labels = ops.cast(y, "int32")
        if len(labels.shape) == 2 and labels.shape[1] == 1:
            labels = ops.reshape(labels, (-1,))
        per_position = len(labels.shape) == 2
        if len(y_pred.shape) == 3 and not per_position:  # one label: the last real watch's u
            history = ops.convert_to_tensor(x[WATCH_HISTORY])
            real = ops.logical_and(history > 0, history < self.num_videos)
            index = ops.expand_dims(ops.arange(ops.shape(history)[1]), 0)
            last = ops.argmax(ops.where(real, index, -1), axis=1)
            y_pred = ops.squeeze(
                ops.take_along_axis(y_pred, ops.reshape(last, (-1, 1, 1)), axis=1), 1)
        elif len(y_pred.shape) == 2 and per_position:  # the last position's label
            labels = labels[:, -1]
            per_position = False
        weight = None
        if per_position:
            weight = ops.cast(labels > 0, y_pred.dtype)
            if sample_weight is not None:
                weight = weight * ops.reshape(ops.cast(sample_weight, y_pred.dtype), (-1, 1))
            weight = ops.reshape(weight, (-1,))
            labels = ops.reshape(ops.where(labels > 0, labels, 1), (-1,))  # 0: masked out
            y_pred = ops.reshape(y_pred, (-1, y_pred.shape[-1]))
            # The softmax only at positions with a label where shapes may follow the data
            # (TensorFlow); elsewhere their zero weight leaves them out of the loss.
            y_pred, labels, weight = backend.rows_where(weight > 0, y_pred, labels, weight)
        elif sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, y_pred.dtype), (-1,))
        return y_pred, labels, weight

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self._loss_is_sampled = bool(training)
        y_pred, labels, weight = self._loss_inputs(x, y, y_pred, sample_weight)
        if training:
            per_example = self.softmax(y_pred, labels=labels, training=True)
        else:
            per_example = self.softmax.full_loss(y_pred, labels)
            _evaluation_logits.value = (self, self.softmax.logits(y_pred))
        # Divided by the global batch's count (or weight sum): under a tf.distribute strategy
        # each replica computes its share of the batch, and the replicas' gradients are summed
        # (`backend.replica_sum` is the count itself on one device).
        count = ops.cast(ops.shape(per_example)[0], per_example.dtype)
        if weight is not None:
            weight = ops.cast(weight, per_example.dtype)
            per_example = ops.where(weight > 0, per_example, ops.zeros_like(per_example))
            totals = backend.replica_sum(ops.stack([count, ops.sum(weight)]))
            total_count = totals[0]
            loss = ops.sum(per_example * weight) / ops.maximum(totals[1], 1e-12)
        else:
            total_count = backend.replica_sum(count)
            loss = ops.sum(per_example) / total_count
        share = count / ops.maximum(total_count, 1.0)  # of the extra losses, summing to 1
        for extra in self.losses:
            loss = loss + ops.cast(extra, loss.dtype) * share
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        model, logits = getattr(_evaluation_logits, "value", None) or (None, None)
        _evaluation_logits.value = None
        if model is not self:
            logits = None
        if y is not None and len(y.shape) == 2 and y.shape[1] != 1:
            y = y[:, -1]  # sequence windows: the label of the last position
        if self._loss_is_sampled:
            # Retrieval metrics need the full logits: computed in evaluation only.
            return {"loss": self._loss_tracker.result()} if self._loss_tracker else {}
        if logits is None:
            logits = self.softmax.logits(y_pred)
        # float32 whatever the compute dtype: TensorFlow's top-k metric kernels take no other.
        logits = ops.cast(logits, "float32")
        is_padding = ops.expand_dims(ops.arange(self.num_videos) == 0, 0)
        logits = ops.where(is_padding, -1e9, logits)
        for metric in self._retrieval_metrics:
            metric.update_state(y, logits, sample_weight)
        return super().compute_metrics(x, y, logits, sample_weight)

    # ---------------------------------------------------------------- serving

    def user_model(self) -> keras.Model:
        """A functional model from the serving features to the user vector (example age = 0).

        This is the model to export and serve: its output is the query of the nearest-neighbour
        search over the output video embeddings.
        """
        self.build()
        inputs = self.serving_inputs()
        return UserTower(inputs, self.user_vector(inputs, training=False), name="user_tower")

    def get_output_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The output video embeddings W `(num_videos, d)` and biases b `(num_videos,)`."""
        self.build()
        return self.softmax.get_output_embeddings()

    def video_scores(self, features: dict, batch_size: int = 1024) -> np.ndarray:
        """The score u·W_j + b_j of every video j for each user: the logits serving ranks.

        Args:
            features: a dict of feature arrays as for `predict` (example age is ignored).
            batch_size: users per batch.

        Returns:
            float32 numpy array `(batch, num_videos)`; column j is video id j (column 0, padding,
            is never recommended).
        """
        _checks.positive_int("batch_size", batch_size)
        self.build()
        user_vectors = self.predict(features, verbose=0, batch_size=batch_size)
        blocks = [
            ops.convert_to_numpy(self.softmax.logits(user_vectors[i : i + batch_size]))
            for i in range(0, len(user_vectors), batch_size)
        ]
        return np.concatenate(blocks or [np.zeros((0, self.num_videos))]).astype("float32")

    def recommend(
        self, features: dict, k: int = 10, exclude_watched: bool = True, exclude=None
    ):
        """Brute-force top-k videos (ids, scores) for each user; fine for small corpora.

        Args:
            features: a dict of feature arrays as for `predict` (example age is ignored).
            k: number of videos per user; at most `num_videos - 1`.
            exclude_watched: leave out the videos in each user's `watch_history` (only the last
                `max_history` watches: pass the whole history in `exclude`).
            exclude: None, or one list of video ids per user to leave out as well (ragged
                lists or a 0-padded 2-D array), e.g. everything the user watched.

        Returns:
            `(ids, scores)`, numpy arrays of shape `(batch, k)`, best first; scores are
            u·W_j + b_j. Slots that no eligible video can fill (k larger than the videos left
            after exclusions) get id -1 and score -inf.
        """
        _checks.positive_int("k", k)
        if k > self.num_videos - 1:
            raise ValueError(f"k must be at most num_videos - 1 = {self.num_videos - 1} (the "
                             f"real videos), got {k}")
        self.build()
        _checks.has_features(features, [WATCH_HISTORY], "CandidateGenerator")
        if len(features[WATCH_HISTORY]) <= 1024:  # one compiled step: no `predict()` set-up cost
            user_vectors = self.predict_on_batch(features)
        else:
            user_vectors = self.predict(features, verbose=0, batch_size=1024)
        lists = [[] for _ in range(len(user_vectors))]
        if exclude_watched:
            lists = [list(h) for h in np.asarray(features[WATCH_HISTORY])]
        if exclude is not None:
            if len(exclude) != len(lists):
                raise ValueError(f"exclude must hold one id list per user ({len(lists)}), got "
                                 f"{len(exclude)}")
            lists = [a + list(np.asarray(e).reshape(-1)) for a, e in zip(lists, exclude)]
        width = max((len(a) for a in lists), default=0)
        padded = None
        if width:
            padded = np.zeros((len(lists), width), np.int64)
            for row, ids in zip(padded, lists):
                row[: len(ids)] = ids
        scores, ids = self.softmax.top_k(user_vectors, k, exclude=padded)
        return ops.convert_to_numpy(ids), ops.convert_to_numpy(scores)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_videos": self.num_videos,
                "video_embedding_dim": self.video_embedding_dim,
                "max_history": self.max_history,
                "recent_history": self.recent_history,
                "search_num_bins": self.search_num_bins,
                "search_embedding_dim": self.search_embedding_dim,
                "max_queries": self.max_queries,
                "use_example_age": self.use_example_age,
                "example_age_scale": self.example_age_scale,
                "categorical_features": self.categorical_features,
                "continuous_features": list(self.continuous_features),
                "hidden_units": list(self.hidden_units),
                "dropout": self.dropout,
                "num_sampled": self.num_sampled,
                "sampler": self.sampler,
                "class_counts": _to_list(self.class_counts),
                "tie_output_embeddings": self.tie_output_embeddings,
                "seed": self.seed,
                "history_encoder": self.history_encoder,
                "encoder_blocks": self.encoder_blocks,
                "encoder_heads": self.encoder_heads,
                "encoder_dropout": self.encoder_dropout,
                "user_vector_activation": self.user_vector_activation,
                "output_bias": self.output_bias,
            }
        )
        return config


def _to_list(value):
    if value is None:
        return None
    return np.asarray(value).tolist()
