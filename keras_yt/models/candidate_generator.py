"""The candidate-generation model of Covington et al. (2016), figure 3."""

from __future__ import annotations

import threading

import keras
import numpy as np
from keras import ops

from keras_yt import _checks, backend
from keras_yt.layers.embedding_bag import EmbeddingBag
from keras_yt.layers.example_age import ExampleAge
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

# The full logits of an evaluation batch, from `compute_loss` to `compute_metrics` (on JAX the
# model's variables are not readable in `compute_metrics`). Per thread: under a tf.distribute
# strategy each replica traces its step in a thread of its own, and the threads take turns at the
# cross-replica sum in `compute_loss`.
_evaluation_logits = threading.local()


@keras.saving.register_keras_serializable(package="keras_yt")
class CandidateGenerator(StringFeaturesMixin, FeatureModelMixin, PresetMixin, keras.Model):
    """Candidate generator: user features → ReLU tower → user vector → softmax over all videos.

    Each input feature is embedded and the embeddings are concatenated: the averaged watch history
    (`EmbeddingBag`), the averaged search tokens (`TokenBag`, optional), the example age
    (`ExampleAge`), optional categorical features (geography, gender, device, ...) embedded with
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
        max_history: length of the padded `watch_history` input.
        recent_history: if set, the last `recent_history` watches are also averaged on their
            own (with the same video embeddings) and concatenated: a second, recent bag next to
            the whole history's, so the tower sees what the user watched last. `None` leaves it
            out (the paper's single bag).
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
        dropout: dropout rate after each tower layer (training only).
        num_sampled: sampled negatives per training step; `None` trains on the full softmax
            (exact, O(`num_videos`) per example); `"auto"` (default) is `None` up to
            10,000 videos and 4096 above.
        sampler: `"log_uniform"`, `"unigram"`, `"uniform"` or `"in_batch"` (see `SampledSoftmax`).
        class_counts: per-video counts for the `"unigram"` sampler.
        tie_output_embeddings: share the output video embeddings with the watch-history table
            (needs `video_embedding_dim == hidden_units[-1]`).
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_units, categorical_features, continuous_features = _checks.feature_model_args(
            num_videos, video_embedding_dim, max_history, hidden_units, dropout,
            categorical_features, continuous_features)
        if recent_history is not None:
            _checks.positive_int("recent_history", recent_history)
            if recent_history > max_history:
                raise ValueError(
                    f"recent_history must be <= max_history ({max_history}), got {recent_history}"
                )
        _checks.positive_int("max_queries", max_queries)
        if tie_output_embeddings and video_embedding_dim != hidden_units[-1]:
            raise ValueError(
                "tie_output_embeddings=True needs video_embedding_dim == hidden_units[-1] (the "
                f"user vector's width), got video_embedding_dim={video_embedding_dim} and "
                f"hidden_units[-1]={hidden_units[-1]}"
            )
        if search_num_bins is not None:
            _checks.positive_int("search_num_bins", search_num_bins, minimum=2)
            _checks.positive_int("search_embedding_dim", search_embedding_dim)

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

        policy = self.dtype_policy
        self.watch_embedding = EmbeddingBag(
            num_videos, video_embedding_dim, dtype=policy, name="watch_embedding"
        )
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
        self.categorical_embeddings = {
            name: EmbeddingBag(spec["input_dim"], spec["output_dim"], dtype=policy,
                               name=f"{name}_embedding")
            for name, spec in categorical_features.items()
        }
        self.tower = [
            keras.layers.Dense(units, activation="relu", dtype=policy, name=f"relu_{i}")
            for i, units in enumerate(hidden_units)
        ]
        self.dropout_layer = (
            keras.layers.Dropout(dropout, seed=seed, dtype=policy) if dropout > 0 else None
        )
        if num_sampled == "auto":
            resolved = None if num_videos <= FULL_SOFTMAX_MAX_VIDEOS else AUTO_NUM_SAMPLED
        elif num_sampled is None or not isinstance(num_sampled, str):
            resolved = num_sampled
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
        self.softmax.build((None, self.hidden_units[-1]))

    # ---------------------------------------------------------------- forward pass

    def user_vector(self, features: dict, training: bool = False):
        """The last ReLU layer's output u for a dict of features, shape `(batch, hidden_units[-1])`.

        At serving (`training=False`) the example age is its serving value whatever is passed, and
        it may be left out of `features`.
        """
        _checks.has_features(features, [WATCH_HISTORY], "CandidateGenerator")
        history = features[WATCH_HISTORY]
        parts = [self.watch_embedding(history)]
        if self.recent_history is not None:  # newest last: the last columns are the most recent
            parts.append(self.watch_embedding(history[:, -self.recent_history :]))
        if self.search_embedding is not None:
            _checks.has_features(features, [SEARCH_HISTORY], "CandidateGenerator")
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
            parts.append(self.example_age(age, training=training))
        for name, layer in self.categorical_embeddings.items():
            _checks.has_features(features, [name], "CandidateGenerator")
            parts.append(layer(features[name]))
        for name in self.continuous_features:
            _checks.has_features(features, [name], "CandidateGenerator")
            value = ops.reshape(ops.cast(features[name], self.compute_dtype), (-1, 1))
            value = ops.maximum(value, 0.0)
            parts.extend([value, ops.square(value), ops.sqrt(value)])
        x = ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        for dense in self.tower:
            x = dense(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def call(self, inputs, training=False):
        return self.user_vector(inputs, training=training)

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
        _checks.labels("y (the labels)", y, self.num_videos)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self._loss_is_sampled = bool(training)
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        if training:
            per_example = self.softmax(y_pred, labels=labels, training=True)
        else:
            per_example = self.softmax.full_loss(y_pred, labels)
            _evaluation_logits.value = (self, self.softmax.logits(y_pred))
        # Divided by the global batch's count (or weight sum): under a tf.distribute strategy
        # each replica computes its share of the batch, and the replicas' gradients are summed
        # (`backend.replica_sum` is the count itself on one device).
        count = ops.cast(ops.shape(per_example)[0], per_example.dtype)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, per_example.dtype), (-1,))
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
        if self._loss_is_sampled:
            # Retrieval metrics need the full logits: computed in evaluation only.
            return {"loss": self._loss_tracker.result()} if self._loss_tracker else {}
        if logits is None:
            logits = self.softmax.logits(y_pred)
        is_padding = ops.expand_dims(ops.arange(self.num_videos) == 0, 0)
        logits = ops.where(is_padding, ops.cast(-1e9, logits.dtype), logits)
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
            }
        )
        return config


def _to_list(value):
    if value is None:
        return None
    return np.asarray(value).tolist()
