"""An offline, deterministic simulator of YouTube-like watch, search and impression logs.

`watch_logs` is the package's embedded default data set: it needs no download, takes a couple of
seconds at the default size and is identical for a given seed. The generative story:

* **Topics and videos.** Each of ``num_topics`` topics has a centroid in a latent space and a
  vocabulary of words. Each video has a topic, a latent factor near its topic's centroid, a
  power-law (Zipf) popularity weight, an upload time in ``[-days, days)`` (half the catalogue
  predates the log window ``[0, days)``), a duration, a *quality* (raises the fraction watched),
  an *appeal* ("clickbait": raises clicks but lowers the fraction watched), a language and a
  title made of its topic's words. **Video ids are ordered by decreasing popularity weight**
  (id 1 is the most popular), which suits a log-uniform (Zipfian) candidate sampler.
* **Users** have a geography, gender, device, age and language (from the geography). Their topic
  preferences depend on geography, gender and age, so demographics carry signal.
* **Watches.** Each user watches a heavy-tailed number of videos at times spread over the window.
  The topic of the next watch repeats the previous one with probability ``topic_continuity``
  (so the watch history predicts the next watch), otherwise it is drawn from the user's topic
  preferences. Within the topic, the video is drawn with probability ∝ exp(affinity +
  log popularity + log freshness + appeal + language match), among videos already uploaded;
  freshness decays with the video's age at watch time (users prefer recent uploads, which is
  what the example-age feature lets a model learn). Watch time = duration × a completion
  fraction driven by affinity and quality (and lowered by appeal).
* **Searches** precede some watches by a few minutes; their words come from the watched video's
  title and topic vocabulary (plus a few generic words).
* **Impressions.** Some watches are the click on a slate of ``slate_size`` shown videos (the
  other shown videos, drawn by popularity and freshness, half of them from the same topic, are
  not clicked). Features per impression: time since the user's last watch, number of previous
  impressions of the video to the user (both causal), video language, user language, category
  (topic), device and slate position.

Categorical codes (geography, gender, device, language, topic) start at 1; 0 means unknown, and
the ``num_*`` sizes in `SyntheticLogs` count 0. Timestamps are seconds since the start of the
window; `SyntheticLogs.window_end` (= ``days · 86400``) is the end of the training window, the
reference for example age.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from keras_yt.data.io import WATCH_DTYPE

SECONDS_PER_DAY = 86400.0

QUERY_DTYPE = np.dtype([("user", "<i8"), ("timestamp", "<f8"), ("text", object)])
USER_DTYPE = np.dtype(
    [("id", "<i8"), ("geography", "<i4"), ("gender", "<i4"), ("device", "<i4"), ("age", "<i4"),
     ("language", "<i4")]
)
VIDEO_DTYPE = np.dtype(
    [("id", "<i8"), ("upload_time", "<f8"), ("topic", "<i4"), ("language", "<i4"),
     ("duration", "<f4"), ("popularity", "<f8"), ("title", object)]
)
IMPRESSION_DTYPE = np.dtype(
    [("user", "<i8"), ("video", "<i8"), ("timestamp", "<f8"), ("clicked", "i1"),
     ("watch_time", "<f4"), ("time_since_last_watch", "<f4"), ("previous_impressions", "<i4"),
     ("language", "<i4"), ("user_language", "<i4"), ("category", "<i4"), ("device", "<i4"),
     ("position", "<i4")]
)

_GENERIC_WORDS = ["how", "to", "best", "new", "top", "video", "official", "live", "full", "guide"]


@dataclass
class SyntheticLogs:
    """Logs made by `watch_logs` (all numpy structured arrays, ids start at 1).

    Attributes:
        watches: `keras_yt.data.WATCH_DTYPE` (user, video, timestamp, watch_time), sorted by
            user then timestamp.
        queries: (user, timestamp, text) search queries, sorted by user then timestamp.
        users: (id, geography, gender, device, age, language), one row per user, ids 1..num_users.
        videos: (id, upload_time, topic, language, duration, popularity, title), one row per
            video, ids 1..num_videos - 1 (row i is id i + 1).
        impressions: (user, video, timestamp, clicked, watch_time, time_since_last_watch,
            previous_impressions, language, user_language, category, device, position), sorted
            by user, timestamp, position; ``watch_time`` is 0 for non-clicks.
        num_users: number of users (ids 1..num_users).
        num_videos: size of the video id space including padding 0 (ids in [1, num_videos)).
        num_topics, num_geographies, num_genders, num_devices, num_languages: vocabulary sizes
            of the categorical codes, counting the unknown code 0.
        vocabulary: the words used in titles and queries.
        window_end: end of the training window in seconds (reference for example age).
        user_factors: (num_users + 1, dim) latent user factors (row = user id, row 0 zero).
        video_factors: (num_videos, dim) latent video factors (row = video id, row 0 zero).
    """

    watches: np.ndarray
    queries: np.ndarray
    users: np.ndarray
    videos: np.ndarray
    impressions: np.ndarray
    num_users: int
    num_videos: int
    num_topics: int
    num_geographies: int
    num_genders: int
    num_devices: int
    num_languages: int
    vocabulary: list[str] = field(default_factory=list)
    window_end: float = 0.0
    user_factors: np.ndarray | None = None
    video_factors: np.ndarray | None = None


def _make_words(count: int) -> list[str]:
    """`count` distinct pronounceable words (fixed, independent of the seed)."""
    rng = np.random.default_rng(12345)
    consonants = list("bdfgklmnprstvz")
    vowels = list("aeiou")
    words: list[str] = []
    seen = set(_GENERIC_WORDS)
    while len(words) < count:
        syllables = rng.integers(2, 4)
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _check(name: str, value, minimum) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def watch_logs(
    num_users: int = 2000,
    num_videos: int = 5000,
    seed: int = 0,
    num_topics: int = 20,
    days: float = 60.0,
    dim: int = 16,
    mean_watches_per_user: float = 25.0,
    max_watches_per_user: int = 500,
    topic_continuity: float = 0.6,
    freshness_days: float = 7.0,
    query_probability: float = 0.3,
    impression_probability: float = 0.3,
    slate_size: int = 10,
    words_per_topic: int = 30,
    num_geographies: int = 5,
    num_languages: int = 4,
    verbose: bool = False,
) -> SyntheticLogs:
    """Simulates watch, search and impression logs (see the module docstring for the model).

    Args:
        num_users: number of users (ids 1..num_users).
        num_videos: size of the video id space including padding 0; videos are
            1..num_videos - 1. Must exceed `num_topics`.
        seed: random seed; the same seed gives identical arrays.
        num_topics: number of topics (video categories).
        days: length of the log window in days.
        dim: dimension of the latent user / video factors.
        mean_watches_per_user: mean of the heavy-tailed number of watches per user.
        max_watches_per_user: cap on watches per user.
        topic_continuity: probability that a watch stays in the previous watch's topic.
        freshness_days: decay time of the preference for recent uploads.
        query_probability: probability that a watch is preceded by a search query.
        impression_probability: probability that a watch is the click on a logged slate.
        slate_size: videos per slate (1 clicked + slate_size - 1 not clicked).
        words_per_topic: size of each topic's vocabulary.
        num_geographies: number of geographies (codes 1..num_geographies).
        num_languages: number of languages (codes 1..num_languages).
        verbose: show a progress bar.

    Returns:
        A `SyntheticLogs`.

    Example:
    >>> logs = watch_logs(num_users=50, num_videos=200, seed=1)
    >>> int(logs.watches["video"].min()) >= 1, int(logs.watches["video"].max()) < logs.num_videos
    (True, True)
    >>> sorted(logs.watches.dtype.names)
    ['timestamp', 'user', 'video', 'watch_time']
    """
    _check("num_users", num_users, 1)
    _check("num_topics", num_topics, 1)
    _check("num_videos", num_videos, num_topics + 1)
    _check("days", days, 1e-6)
    _check("dim", dim, 1)
    _check("mean_watches_per_user", mean_watches_per_user, 1)
    _check("max_watches_per_user", max_watches_per_user, 1)
    _check("slate_size", slate_size, 1)
    _check("words_per_topic", words_per_topic, 1)
    _check("num_geographies", num_geographies, 1)
    _check("num_languages", num_languages, 1)
    _check("freshness_days", freshness_days, 1e-6)
    for name, p in (("topic_continuity", topic_continuity),
                    ("query_probability", query_probability),
                    ("impression_probability", impression_probability)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p!r}")
    rng = np.random.default_rng(seed)
    progress = tqdm(total=5, disable=not verbose, desc="synthetic logs")
    window = float(days) * SECONDS_PER_DAY
    T, V, U = int(num_topics), int(num_videos) - 1, int(num_users)

    # --- topics, vocabulary, videos --------------------------------------------------------------
    centroids = rng.normal(size=(T, dim)) / np.sqrt(dim) * 2.0
    words = _make_words(T * words_per_topic)
    topic_words = np.array(words, dtype=object).reshape(T, words_per_topic)
    ids = np.arange(1, V + 1)
    popularity = ids.astype(np.float64) ** -0.9
    popularity /= popularity.sum()
    topic = rng.integers(0, T, size=V)
    topic[-T:] = rng.permutation(T)  # every topic has a video
    factors = centroids[topic] + rng.normal(size=(V, dim)) / np.sqrt(dim) * 0.8
    upload = rng.uniform(-window, window, size=V)
    least_popular = V - 1 - np.unique(topic[::-1], return_index=True)[1]
    upload[least_popular] = -window  # each topic always has an available video
    language_p = np.r_[0.55, np.full(num_languages - 1, 0.45 / max(num_languages - 1, 1))]
    language_p = language_p[:num_languages] / language_p[:num_languages].sum()
    video_language = rng.choice(num_languages, size=V, p=language_p) + 1
    duration = np.exp(rng.normal(np.log(240.0), 0.6, size=V)).astype(np.float32)
    quality = rng.normal(size=V)
    appeal = rng.normal(size=V)
    title_len = rng.integers(3, 6, size=V)
    title_idx = rng.integers(0, words_per_topic, size=(V, 5))
    titles = np.array(
        [" ".join(topic_words[topic[v], title_idx[v, : title_len[v]]]) for v in range(V)],
        dtype=object,
    )
    progress.update()

    # --- users -----------------------------------------------------------------------------------
    geo_p = rng.dirichlet(np.full(num_geographies, 2.0))
    geography = rng.choice(num_geographies, size=U, p=geo_p)
    gender = rng.integers(0, 2, size=U)
    device = rng.choice(3, size=U, p=[0.6, 0.3, 0.1])
    age = np.clip(rng.normal(32, 12, size=U), 13, 80).astype(np.int32)
    age_bucket = np.digitize(age, [25, 40, 55])
    geo_language = (np.arange(num_geographies) % num_languages) + 1
    user_language = geo_language[geography]
    geo_pref = rng.dirichlet(np.full(T, 0.3), size=num_geographies)
    tilt = rng.normal(size=(2, T)) * 0.7
    age_tilt = rng.normal(size=(4, T)) * 0.7
    concentration = 0.1 + 4.0 * geo_pref[geography]
    theta = rng.gamma(concentration)
    theta *= np.exp(tilt[gender] + age_tilt[age_bucket])
    theta /= theta.sum(axis=1, keepdims=True)
    user_factors = theta @ centroids + rng.normal(size=(U, dim)) / np.sqrt(dim) * 0.5
    progress.update()

    # --- watch sequences -------------------------------------------------------------------------
    counts = np.exp(rng.normal(np.log(mean_watches_per_user) - 0.5, 1.0, size=U))
    counts = np.clip(np.round(counts), 2, max_watches_per_user).astype(np.int64)
    n = int(counts.sum())
    w_user = np.repeat(np.arange(U), counts)
    w_time = rng.uniform(0, window, size=n)
    order = np.lexsort((w_time, w_user))
    w_time = w_time[order]
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    first_row = np.zeros(n, dtype=bool)
    first_row[starts] = True
    cum = np.cumsum(theta, axis=1)
    draw = (cum[w_user] < rng.uniform(size=(n, 1)) * cum[w_user, -1:]).sum(axis=1)
    draw = np.minimum(draw, T - 1)
    stay = (rng.uniform(size=n) < topic_continuity) & ~first_row
    source = np.maximum.accumulate(np.where(stay, 0, np.arange(n)))
    w_topic = draw[source]
    w_video = np.zeros(n, dtype=np.int64)
    w_affinity = np.zeros(n)
    videos_by_topic = [np.flatnonzero(topic == k) for k in range(T)]
    # Choice weight of video v for a watch at time t by user u (factorised for speed):
    # exp(1.5 affinity) · popularity · exp(0.5 appeal + language match) · freshness(t - upload),
    # freshness(a) = exp(-a / freshness_days) + 0.05 for uploaded videos (a >= 0), else 0.
    tau = freshness_days * SECONDS_PER_DAY
    fresh_t = np.exp(np.minimum((window - w_time) / tau, 80.0)).astype(np.float32)
    fresh_v = np.exp((upload - window) / tau).astype(np.float32)
    base = (popularity * np.exp(0.5 * appeal)).astype(np.float32)
    match = np.exp(1.0 * (video_language[None, :] == np.arange(1, num_languages + 1)[:, None]))
    match = match.astype(np.float32)
    user_f32, video_f32 = user_factors.astype(np.float32), factors.astype(np.float32)
    uniform = rng.uniform(size=n)
    for k in tqdm(range(T), disable=not verbose, desc="watches by topic", leave=False):
        rows = np.flatnonzero(w_topic == k)
        vids = videos_by_topic[k]
        if rows.size == 0:
            continue
        aff = user_f32[w_user[rows]] @ video_f32[vids].T
        weight = np.exp(np.float32(1.5) * aff)
        if window / tau <= 80.0:
            weight *= np.outer(fresh_t[rows], fresh_v[vids]) + np.float32(0.05)
        else:  # the factorised form would overflow: compute the ages directly
            ages = np.maximum(w_time[rows, None] - upload[None, vids], 0.0) / tau
            weight *= (np.exp(-ages) + 0.05).astype(np.float32)
        weight *= upload[None, vids] <= w_time[rows, None]
        weight *= base[vids][None, :] * match[:, vids][user_language[w_user[rows]] - 1]
        cdf = np.cumsum(weight, axis=1)
        choice = (cdf < uniform[rows, None] * cdf[:, -1:]).sum(axis=1)
        choice = np.minimum(choice, vids.size - 1)
        w_video[rows] = vids[choice]
        w_affinity[rows] = aff[np.arange(rows.size), choice]
    z = (w_affinity - w_affinity.mean()) / (w_affinity.std() + 1e-9)
    completion = 1.0 / (1.0 + np.exp(-(1.0 * z + 0.7 * quality[w_video] - 0.6 * appeal[w_video]
                                       + rng.normal(scale=0.5, size=n))))
    w_watch_time = (duration[w_video] * completion).astype(np.float32)
    watches = np.empty(n, dtype=WATCH_DTYPE)
    watches["user"] = w_user + 1
    watches["video"] = w_video + 1
    watches["timestamp"] = w_time
    watches["watch_time"] = w_watch_time
    progress.update()

    # --- search queries --------------------------------------------------------------------------
    q_rows = np.flatnonzero(rng.uniform(size=n) < query_probability)
    q_time = w_time[q_rows] - rng.uniform(10.0, 300.0, size=q_rows.size)
    q_len = rng.integers(1, 4, size=q_rows.size)
    from_title = rng.uniform(size=(q_rows.size, 3)) < 0.6
    title_pick = rng.integers(0, 5, size=(q_rows.size, 3))
    topic_pick = rng.integers(0, words_per_topic, size=(q_rows.size, 3))
    generic = rng.uniform(size=q_rows.size) < 0.3
    generic_pick = rng.integers(0, len(_GENERIC_WORDS), size=q_rows.size)
    texts = []
    for i, row in enumerate(q_rows):
        v = w_video[row]
        tokens = []
        for j in range(q_len[i]):
            if from_title[i, j]:
                tokens.append(topic_words[topic[v], title_idx[v, title_pick[i, j] % title_len[v]]])
            else:
                tokens.append(topic_words[topic[v], topic_pick[i, j]])
        if generic[i]:
            tokens.insert(0, _GENERIC_WORDS[generic_pick[i]])
        texts.append(" ".join(tokens))
    queries = np.empty(q_rows.size, dtype=QUERY_DTYPE)
    queries["user"] = w_user[q_rows] + 1
    queries["timestamp"] = q_time
    queries["text"] = np.array(texts, dtype=object)
    queries = queries[np.lexsort((queries["timestamp"], queries["user"]))]
    progress.update()

    # --- impressions -----------------------------------------------------------------------------
    s_rows = np.flatnonzero(rng.uniform(size=n) < impression_probability)
    m = s_rows.size
    s_time = w_time[s_rows] - rng.uniform(1.0, 60.0, size=m)
    n_cand = 4 * slate_size
    half = n_cand // 2
    cand = np.empty((m, n_cand), dtype=np.int64)
    cand[:, :half] = rng.choice(V, size=(m, half), p=popularity)
    pick = rng.uniform(size=(m, n_cand - half))
    for k in range(T):
        rows = np.flatnonzero(w_topic[s_rows] == k)
        vids = videos_by_topic[k]
        cand[rows, half:] = vids[(pick[rows] * vids.size).astype(np.int64)]
    age_days = (s_time[:, None] - upload[cand]) / SECONDS_PER_DAY
    with np.errstate(divide="ignore"):
        cand_score = np.where(
            age_days >= 0,
            np.log(np.exp(-np.maximum(age_days, 0) / freshness_days) + 0.05),
            -np.inf,
        ) + rng.gumbel(size=cand.shape)
    cand_score[cand == w_video[s_rows, None]] = -np.inf
    sorted_cand = np.sort(cand, axis=1)
    dup = np.zeros_like(cand, dtype=bool)
    dup_sorted = np.zeros_like(cand, dtype=bool)
    dup_sorted[:, 1:] = sorted_cand[:, 1:] == sorted_cand[:, :-1]
    arg = np.argsort(cand, axis=1, kind="stable")
    np.put_along_axis(dup, arg, dup_sorted, axis=1)
    cand_score[dup] = -np.inf
    top = np.argsort(-cand_score, axis=1, kind="stable")[:, : slate_size - 1]
    shown = np.take_along_axis(cand, top, axis=1)
    valid = np.isfinite(np.take_along_axis(cand_score, top, axis=1))
    slate = np.concatenate([w_video[s_rows, None], shown], axis=1)
    slate_valid = np.concatenate([np.ones((m, 1), bool), valid], axis=1)
    position = np.argsort(rng.uniform(size=slate.shape), axis=1) + 1
    i_slate = np.repeat(np.arange(m), slate.shape[1]).reshape(slate.shape)[slate_valid]
    i_video = slate[slate_valid]
    i_clicked = np.zeros(slate.shape, dtype=np.int8)
    i_clicked[:, 0] = 1
    i_clicked = i_clicked[slate_valid]
    imp = np.zeros(i_video.size, dtype=IMPRESSION_DTYPE)
    imp["user"] = w_user[s_rows][i_slate] + 1
    imp["video"] = i_video + 1
    imp["timestamp"] = s_time[i_slate]
    imp["clicked"] = i_clicked
    imp["watch_time"] = np.where(i_clicked == 1, w_watch_time[s_rows][i_slate], 0.0)
    imp["language"] = video_language[i_video]
    imp["user_language"] = user_language[w_user[s_rows][i_slate]]
    imp["category"] = topic[i_video] + 1
    imp["device"] = device[w_user[s_rows][i_slate]] + 1
    imp["position"] = position[slate_valid]
    imp = imp[np.lexsort((imp["position"], imp["timestamp"], imp["user"]))]
    # Causal features. Time since the user's last watch strictly before the impression.
    key_w = watches["user"] * (4.0 * window + 1.0) + watches["timestamp"]  # sorted (user, time)
    key_i = imp["user"] * (4.0 * window + 1.0) + imp["timestamp"]
    pos = np.searchsorted(key_w, key_i, side="left") - 1
    has = (pos >= 0) & (watches["user"][np.maximum(pos, 0)] == imp["user"])
    imp["time_since_last_watch"] = np.where(
        has, imp["timestamp"] - watches["timestamp"][np.maximum(pos, 0)], -1.0
    )
    # Number of earlier impressions of the same video to the same user.
    o = np.lexsort((imp["timestamp"], imp["video"], imp["user"]))
    u_s, v_s, t_s = imp["user"][o], imp["video"][o], imp["timestamp"][o]
    new_pair = np.r_[True, (u_s[1:] != u_s[:-1]) | (v_s[1:] != v_s[:-1])]
    new_time = new_pair | np.r_[True, t_s[1:] != t_s[:-1]]
    idx = np.arange(len(o))
    prev = np.empty(len(o), dtype=np.int32)
    prev[o] = np.maximum.accumulate(np.where(new_time, idx, 0)) - np.maximum.accumulate(
        np.where(new_pair, idx, 0)
    )
    imp["previous_impressions"] = prev
    progress.update()
    progress.close()

    users = np.empty(U, dtype=USER_DTYPE)
    users["id"] = np.arange(1, U + 1)
    users["geography"] = geography + 1
    users["gender"] = gender + 1
    users["device"] = device + 1
    users["age"] = age
    users["language"] = user_language
    videos = np.empty(V, dtype=VIDEO_DTYPE)
    videos["id"] = ids
    videos["upload_time"] = upload
    videos["topic"] = topic + 1
    videos["language"] = video_language
    videos["duration"] = duration
    videos["popularity"] = popularity
    videos["title"] = titles
    return SyntheticLogs(
        watches=watches,
        queries=queries,
        users=users,
        videos=videos,
        impressions=imp,
        num_users=U,
        num_videos=V + 1,
        num_topics=T + 1,
        num_geographies=num_geographies + 1,
        num_genders=3,
        num_devices=4,
        num_languages=num_languages + 1,
        vocabulary=list(_GENERIC_WORDS) + words,
        window_end=window,
        user_factors=np.vstack([np.zeros((1, dim)), user_factors]).astype(np.float32),
        video_factors=np.vstack([np.zeros((1, dim)), factors]).astype(np.float32),
    )
