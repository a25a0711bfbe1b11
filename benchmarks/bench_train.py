"""Training step time and peak memory of `CandidateGenerator` versus the number of videos.

Three implementations of the same model (averaged watch-history bag + example age, a ReLU tower,
a softmax over all videos), each configuration in its own subprocess so that its peak RSS
(`VmHWM`) is its own:

* `ours`: `keras_yt.models.CandidateGenerator` trained with plain `model.fit` and its default
  optimizer (`SparseAdam`, row-wise "lazy" Adam updates of the embedding tables; their moments
  in bfloat16 from 2**24 elements, e.g. 100k × 256, float32 below) and sampled softmax;
  `ours_f32_moments`: the same with float32 moments at every size (the default until
  2026-12-07); `ours_adagrad`: the same with `SparseAdagrad` (one
  accumulator table per embedding table: the optimizer the TF peer uses); `ours_bf16`: `ours`
  under Keras' `mixed_bfloat16` dtype policy (float32 weights and optimizer, bfloat16 matmuls:
  2.3 x float32's throughput on a CPU with AVX512_BF16; the TF peer stays float32);
  `ours_bf16_moments`: `ours` with `SparseAdam(table_moment_dtype="bfloat16")` (both moments
  of the embedding tables in bfloat16 at every size: the optimizer state of Adagrad's size).
* `tf_peer`: the same model in plain TensorFlow, the way a TF-native trainer writes it:
  `tf.nn.embedding_lookup_sparse` (mean) for the bag, a ReLU tower, `tf.nn.sampled_softmax_loss`
  (log-uniform sampler) and `tf.compat.v1.train.AdagradOptimizer` (sparse row updates), one
  `tf.function` per step.
* `full_softmax`: `CandidateGenerator` with the full softmax cross-entropy over all N logits in
  training (same optimizer; the output embeddings then get dense gradients).
* `sequential`: `CandidateGenerator(history_encoder="attention")` trained on sequence windows
  (all-position training: every position of a batch of `seq_batch` sequences of `seq_length`
  watches is a next-watch example, the sampled negatives are shared by all positions), same
  optimizer; its rate is compared with `ours` in next-watch examples trained per second.
* `sequential_head`: the same with the head of the shipped `movielens_sequential` preset: the
  user vector is the encoder's state (no ReLU tower, no output bias), measured on MovieLens to
  train as well as with the tower (docs/sequential.md).
* `ours_jax` (`--backend jax`): `ours` with `KERAS_BACKEND=jax`: the same `model.fit`, whose
  JAX train step takes the gradients of the tables row by row (`keras_yt.backend.jax.train_step`)
  and updates only those rows; `ours_jax_bf16_moments`: the same with
  `SparseAdam(table_moment_dtype="bfloat16")` (held as bfloat16 bits on JAX).
* `jax_row_sparse` (`--backend jax`): the same model on JAX, trained by
  `keras_yt.backend.jax.RowSparseAdagrad`, a jitted step that takes the gradients with respect
  to the rows read (`capture_rows`) instead of the whole tables and applies Adagrad to those
  rows only (`.at[rows]` scatters into donated buffers): the route to row-sparse updates on JAX.

Step time = median over the timed steps (after warm-up) of the wall time of one step; with
`--repeats R` every configuration runs R times (interleaved) and the median of the R medians is
reported. Watch histories and labels are drawn from the Zipfian (log-uniform) distribution over
ids that the default sampler assumes (`--ids uniform` for uniform ids, the worst case for
row-sparse updates: more distinct rows per batch).

Default (a smoke run for CI, well under a minute): N = 1k and 10k, d = 32, batch 128, 256
sampled negatives, 2 + 5 steps (sequential: 8 sequences of 50); the timings mean little.
`--full`: N = 10k, 100k, 1M, d = 256, tower (1024, 512, 256), batch 1024, 50 watches, 4096
sampled negatives (sequential: N = 10k and 1M, batches of `--seq-batch` sequences of 200);
full softmax at 100k (batch 1024) and 1M (batch `--full-softmax-batch-1m`, default 256, since
a 1024 x 1M float32 logits matrix and its gradient alone need more than 8 GiB).

Prints a table and the ratios against the targets, writes JSON (`--out`, default
benchmarks/results/train.json).

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --full --repeats 3
    python benchmarks/bench_train.py --full --backend tensorflow jax --impls ours tf_peer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ("ours", "ours_f32_moments", "ours_bf16_moments", "ours_bf16", "ours_adagrad", "tf_peer",
         "full_softmax", "sequential", "sequential_head")
SEQUENTIAL_IMPLS = ("sequential", "sequential_head")
JAX_IMPLS = ("ours_jax", "ours_jax_bf16_moments", "jax_row_sparse")
# The impls that set SparseAdam's table_moment_dtype (the others keep the default, "auto").
MOMENT_DTYPES = {"ours_f32_moments": "float32", "ours_bf16_moments": "bfloat16",
                 "ours_jax_bf16_moments": "bfloat16"}

TARGETS = {  # issue 22 (step and memory against the TF peer, JAX against TensorFlow)
    "ours_vs_peer_at_largest_n": ("<=", 0.75),
    "ours_rss_vs_peer_at_largest_n": ("<=", 1.0),
    "ours_bf16_vs_peer_at_largest_n": ("<=", 0.75),
    "ours_bf16_moments_vs_peer_at_largest_n": ("<=", 0.75),
    "ours_bf16_moments_rss_vs_peer_at_largest_n": ("<=", 1.0),
    "ours_largest_vs_smallest_n": ("<=", 1.5),
    "full_vs_sampled_per_example_at_largest_n": (">=", 50.0),
    "ours_peak_rss_gib_at_largest_n": ("<=", 8.0),
    "jax_vs_tf_at_largest_n": ("<=", 1.25),
    "sequential_vs_ours_examples_per_s_at_largest_n": (">=", 1.0),  # issue 20, item 6
    "sequential_vs_ours_examples_per_s_at_smallest_n": (">=", 1.0),
    "sequential_head_vs_ours_examples_per_s_at_largest_n": (">=", 1.0),
    "sequential_head_vs_ours_examples_per_s_at_smallest_n": (">=", 1.0),
}


# ------------------------------------------------------------------------------------- worker


def _peak_rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _draw_ids(rng: np.random.Generator, n: int, shape, kind: str) -> np.ndarray:
    """Ids in [1, n): Zipfian (P(id <= k) = log(k + 1) / log(n)) or uniform."""
    if kind == "uniform":
        return rng.integers(1, n, shape).astype("int32")
    u = rng.random(shape)
    return np.clip(np.floor(np.exp(u * np.log(n))), 1, n - 1).astype("int32")


def _batches(cfg: dict):
    rng = np.random.default_rng(0)
    k = 4  # distinct batches, cycled
    n, b, length = cfg["num_videos"], cfg["batch"], cfg["history"]
    history = _draw_ids(rng, n, (k, b, length), cfg["ids"])
    if cfg["impl"] in SEQUENTIAL_IMPLS:  # one label and one age per position: the next watch
        age = (rng.random((k, b, length)) * 60.0).astype("float32")
        labels = np.concatenate([history[:, :, 1:], _draw_ids(rng, n, (k, b, 1), cfg["ids"])],
                                axis=2)
        return history, age, labels
    age = (rng.random((k, b)) * 60.0).astype("float32")
    labels = _draw_ids(rng, n, (k, b), cfg["ids"])
    return history, age, labels


def _examples_per_step(cfg: dict) -> int:
    """Next-watch examples trained per step (every position of a sequence is one)."""
    return cfg["batch"] * (cfg["history"] if cfg["impl"] in SEQUENTIAL_IMPLS else 1)


def _model(cfg: dict, cls):
    """The benchmarked candidate generator (or a subclass) for one configuration."""
    options = {"hidden_units": tuple(cfg["hidden"])}
    if cfg["impl"] in SEQUENTIAL_IMPLS:
        options["history_encoder"] = "attention"
    if cfg["impl"] == "sequential_head":  # movielens_sequential's head: u = the encoder state
        options.update(hidden_units=(), output_bias=False)
    if cfg["impl"] == "ours_bf16":  # the model's own policy: smoke runs share one process
        options["dtype"] = "mixed_bfloat16"
    return cls(
        num_videos=cfg["num_videos"],
        video_embedding_dim=cfg["dim"],
        max_history=cfg["history"],
        num_sampled=cfg["num_sampled"],
        seed=0,
        **options,
    )


def _run_keras(cfg: dict) -> dict:
    import keras

    from keras_yt import backend as yt_backend
    from keras_yt.models import CandidateGenerator

    # Record (at trace time) which variables take SparseAdagrad's row-wise path.
    row_wise = set()
    scatter_sub_rows = yt_backend.scatter_sub_rows

    def recording_scatter_sub_rows(variable, indices, rows):
        row_wise.add(f"{variable.name} {tuple(variable.shape)}")
        return scatter_sub_rows(variable, indices, rows)

    yt_backend.scatter_sub_rows = recording_scatter_sub_rows

    class FullSoftmaxCandidateGenerator(CandidateGenerator):
        """Trains on the full softmax cross-entropy over all videos."""

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training=False)
            self._loss_is_sampled = True  # no retrieval metrics in the timed step
            return loss

    cls = FullSoftmaxCandidateGenerator if cfg["impl"] == "full_softmax" else CandidateGenerator
    model = _model(cfg, cls)
    if cfg["impl"] == "ours_adagrad":
        from keras_yt.optimizers import SparseAdagrad

        model.compile(optimizer=SparseAdagrad(0.2))
    elif cfg["impl"] in MOMENT_DTYPES:
        from keras_yt.optimizers import SparseAdam

        model.compile(optimizer=SparseAdam(table_moment_dtype=MOMENT_DTYPES[cfg["impl"]]))
    else:
        model.compile()  # the default optimizer: SparseAdam
    history, age, labels = _batches(cfg)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(
        ({"watch_history": history, "example_age": age}, labels)
    ).repeat()

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if keras.backend.backend() == "jax":
                float(logs["loss"])  # wait for the (asynchronously dispatched) step to finish
            times.append(time.perf_counter() - self.start)

    steps = cfg["warmup"] + cfg["steps"]
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
    return {"step_times_ms": [1000 * t for t in times[cfg["warmup"] :]],
            "row_wise_variables": sorted(row_wise)}


def _run_jax_row_sparse(cfg: dict) -> dict:
    """`CandidateGenerator` on JAX, trained by `keras_yt.backend.jax.RowSparseAdagrad`."""
    import jax.numpy as jnp
    from keras import ops

    from keras_yt.backend.jax import RowSparseAdagrad
    from keras_yt.models import CandidateGenerator

    model = _model(cfg, CandidateGenerator)
    model.build()
    softmax = model.softmax
    tables = [model.watch_embedding.embeddings, softmax.output_embeddings, softmax.output_biases]

    def loss_fn(model, x, y):
        return ops.mean(model.softmax(model(x, training=True), labels=y, training=True))

    # SparseAdagrad(0.2), the default of CandidateGenerator.compile().
    trainer = RowSparseAdagrad(model, tables, loss_fn, learning_rate=0.2)
    state = trainer.initial_state()
    history, age, labels = _batches(cfg)
    batches = [({"watch_history": jnp.asarray(history[i]), "example_age": jnp.asarray(age[i])},
                jnp.asarray(labels[i])) for i in range(4)]
    times, losses = [], []
    for i in range(cfg["warmup"] + cfg["steps"]):
        start = time.perf_counter()
        loss, state = trainer.step(state, *batches[i % 4])
        losses.append(float(loss))  # waits for the step
        times.append(time.perf_counter() - start)
    return {"step_times_ms": [1000 * t for t in times[cfg["warmup"] :]],
            "row_wise_variables": [f"{v.name} {tuple(v.shape)}" for v in tables],
            "losses": losses}


def _run_tf_peer(cfg: dict) -> dict:
    import tensorflow as tf

    n, d = cfg["num_videos"], cfg["dim"]
    tf.random.set_seed(0)
    table = tf.Variable(tf.random.uniform((n, d), -0.05, 0.05), name="watch_embeddings")
    tower = []
    width = d + 1  # bag + example age
    for i, units in enumerate(cfg["hidden"]):
        limit = (6.0 / (width + units)) ** 0.5
        kernel = tf.Variable(tf.random.uniform((width, units), -limit, limit), name=f"k{i}")
        tower.append((kernel, tf.Variable(tf.zeros((units,)), name=f"b{i}")))
        width = units
    weights = tf.Variable(tf.random.uniform((n, width), -0.05, 0.05), name="output_embeddings")
    biases = tf.Variable(tf.zeros((n,)), name="output_biases")
    variables = [table, *[v for pair in tower for v in pair], weights, biases]
    optimizer = tf.compat.v1.train.AdagradOptimizer(0.2, initial_accumulator_value=0.1)
    gradient_types = []

    @tf.function
    def step(history, age, labels):
        with tf.GradientTape() as tape:
            ids = tf.sparse.from_dense(tf.cast(history, tf.int64))
            bag = tf.nn.embedding_lookup_sparse(table, ids, None, combiner="mean")
            x = tf.concat([bag, age[:, None] / 30.0], axis=1)
            for kernel, bias in tower:
                x = tf.nn.relu(tf.matmul(x, kernel) + bias)
            loss = tf.reduce_mean(
                tf.nn.sampled_softmax_loss(
                    weights, biases, tf.cast(labels[:, None], tf.int64), x,
                    num_sampled=cfg["num_sampled"], num_classes=n,
                )
            )
        grads = tape.gradient(loss, variables)
        gradient_types[:] = [type(g).__name__ for g in grads]  # recorded at trace time
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    history, age, labels = _batches(cfg)
    batches = [tuple(tf.constant(a[i]) for a in (history, age, labels)) for i in range(4)]
    times = []
    for i in range(cfg["warmup"] + cfg["steps"]):
        start = time.perf_counter()
        step(*batches[i % 4]).numpy()
        times.append(time.perf_counter() - start)
    sparse = [f"{v.name} {tuple(v.shape)}" for v, g in zip(variables, gradient_types)
              if g == "IndexedSlices"]
    return {"step_times_ms": [1000 * t for t in times[cfg["warmup"] :]],
            "row_wise_variables": sparse}


def _reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so that the next peak is per config."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def worker(cfg: dict) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    start = time.perf_counter()
    _reset_peak_rss()
    runners = {"tf_peer": _run_tf_peer, "jax_row_sparse": _run_jax_row_sparse}
    result = runners.get(cfg["impl"], _run_keras)(cfg)
    times = result["step_times_ms"]
    result.update(
        config=cfg,
        step_ms_median=statistics.median(times),
        step_ms_min=min(times),
        peak_rss_gib=_peak_rss_gib(),
        wall_s=time.perf_counter() - start,
    )
    return result

# ------------------------------------------------------------------------------------- driver


def _configs(args) -> list[dict]:
    if args.full:
        sizes, full_sizes = [10_000, 100_000, 1_000_000], [100_000, 1_000_000]
        base = {"dim": 256, "hidden": [1024, 512, 256], "batch": 1024, "history": 50,
                "num_sampled": 4096, "warmup": 5, "steps": 20}
    else:
        sizes, full_sizes = [1_000, 10_000], [10_000]
        base = {"dim": 32, "hidden": [64, 32], "batch": 128, "history": 50,
                "num_sampled": 256, "warmup": 2, "steps": 5}
    sizes = args.num_videos or sizes
    full_sizes = [n for n in (args.num_videos or full_sizes) if n in full_sizes or args.num_videos]
    if args.steps:
        base["steps"] = args.steps
    base["ids"] = args.ids
    impls = [i for i in args.impls if i not in JAX_IMPLS] if "tensorflow" in args.backend else []
    if "jax" in args.backend:
        impls += [i for i in args.impls if i in JAX_IMPLS] or list(JAX_IMPLS)
        if "tensorflow" not in args.backend:
            impls += [i for i in args.impls if i == "tf_peer"]  # the TF peer, for reference
    configs = []
    for impl in impls:
        impl_sizes = full_sizes if impl == "full_softmax" else sizes
        if impl in SEQUENTIAL_IMPLS and args.full and not args.num_videos:
            impl_sizes = [10_000, 1_000_000]  # the 1M run is heavy: once
        for n in impl_sizes:
            cfg = dict(base, impl=impl, num_videos=n)
            if impl in SEQUENTIAL_IMPLS:
                cfg["batch"] = args.seq_batch or (16 if args.full else 8)
                cfg["history"] = 200 if args.full else 50
            if impl == "full_softmax":
                cfg["warmup"], cfg["steps"] = (1, 3) if args.full else (1, 3)
                if args.full and n >= 1_000_000:
                    cfg["batch"] = args.full_softmax_batch_1m
            configs.append(cfg)
    return configs


def _backend(cfg: dict) -> str:
    return "jax" if cfg["impl"] in JAX_IMPLS else "tensorflow"


def _run_workers(configs: list[dict], timeout: float) -> list[dict]:
    """Runs `configs` one after the other in one subprocess; one result (or error) each."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(configs)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT + os.pathsep
               + os.environ.get("PYTHONPATH", ""), KERAS_BACKEND=_backend(configs[0]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return [{"config": cfg, "error": f"timed out after {timeout:.0f} s"} for cfg in configs]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    error = f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return results + [{"config": cfg, "error": error} for cfg in configs[len(results):]]


def _key(cfg: dict) -> tuple:
    return cfg["impl"], cfg["num_videos"]


def _summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"config": runs[0]["config"], "error": runs[0]["error"]}
    medians = [r["step_ms_median"] for r in ok]
    cfg = ok[0]["config"]
    step = statistics.median(medians)
    return {
        "impl": cfg["impl"],
        "backend": _backend(cfg),
        "num_videos": cfg["num_videos"],
        "batch": cfg["batch"],
        "step_ms": step,
        "ms_per_1024_examples": step * 1024 / _examples_per_step(cfg),
        "examples_per_s": _examples_per_step(cfg) / (step / 1000.0),
        "step_ms_per_repeat": medians,
        "peak_rss_gib": max(r["peak_rss_gib"] for r in ok),
        "peak_rss_gib_per_repeat": [r["peak_rss_gib"] for r in ok],
        "row_wise_variables": ok[0]["row_wise_variables"],
        "config": cfg,
        "errors": [r["error"] for r in runs if "error" in r],
    }


def _ratios(rows: dict) -> dict:
    """Ratios behind the targets, at the largest and smallest N measured."""
    ours = {n: r for (impl, n), r in rows.items() if impl == "ours" and "step_ms" in r}
    sequential = {n: r for (impl, n), r in rows.items() if impl == "sequential" and "step_ms" in r}
    head = {n: r for (impl, n), r in rows.items() if impl == "sequential_head" and "step_ms" in r}
    peer = {n: r for (impl, n), r in rows.items() if impl == "tf_peer" and "step_ms" in r}
    full = {n: r for (impl, n), r in rows.items() if impl == "full_softmax" and "step_ms" in r}
    out = {}
    if not ours:
        return out
    big, small = max(ours), min(ours)
    out["largest_n"], out["smallest_n"] = big, small
    if big in peer:
        out["ours_vs_peer_at_largest_n"] = ours[big]["step_ms"] / peer[big]["step_ms"]
        out["ours_rss_vs_peer_at_largest_n"] = (
            ours[big]["peak_rss_gib"] / peer[big]["peak_rss_gib"])
        for impl in ("ours_f32_moments", "ours_bf16", "ours_bf16_moments"):  # same model
            row = rows.get((impl, big), {})
            if "step_ms" in row:
                out[f"{impl}_vs_peer_at_largest_n"] = row["step_ms"] / peer[big]["step_ms"]
                out[f"{impl}_rss_vs_peer_at_largest_n"] = (
                    row["peak_rss_gib"] / peer[big]["peak_rss_gib"])
    if big != small:
        out["ours_largest_vs_smallest_n"] = ours[big]["step_ms"] / ours[small]["step_ms"]
    if big in full:
        out["full_vs_sampled_per_example_at_largest_n"] = (
            full[big]["ms_per_1024_examples"] / ours[big]["ms_per_1024_examples"]
        )
        # Lower bound that does not scale the full softmax's (smaller) batch up.
        out["full_vs_sampled_per_step_at_largest_n"] = full[big]["step_ms"] / ours[big]["step_ms"]
    out["ours_peak_rss_gib_at_largest_n"] = ours[big]["peak_rss_gib"]
    for name, rates in (("sequential", sequential), ("sequential_head", head)):
        for where, n in (("largest", big), ("smallest", small)):
            if n in rates:
                out[f"{name}_vs_ours_examples_per_s_at_{where}_n"] = (
                    rates[n]["examples_per_s"] / ours[n]["examples_per_s"])
        if big in rates:
            out[f"{name}_peak_rss_gib_at_largest_n"] = rates[big]["peak_rss_gib"]
    jax_best = {}
    for (impl, n), r in rows.items():
        if impl in JAX_IMPLS and impl != "ours_jax_bf16_moments" and "step_ms" in r:
            jax_best[n] = min(jax_best.get(n, float("inf")), r["step_ms"])
    if big in jax_best:
        out["jax_vs_tf_at_largest_n"] = jax_best[big] / ours[big]["step_ms"]
    fit_jax = rows.get(("ours_jax", big), {})
    if "step_ms" in fit_jax:  # model.fit on JAX (the row-sparse train step)
        out["jax_fit_vs_tf_at_largest_n"] = fit_jax["step_ms"] / ours[big]["step_ms"]
        out["jax_fit_rss_vs_tf_at_largest_n"] = (
            fit_jax["peak_rss_gib"] / ours[big]["peak_rss_gib"])
    fit_jax, fit_tf = rows.get(("ours_jax_bf16_moments", big), {}), rows.get(
        ("ours_bf16_moments", big), {})
    if "step_ms" in fit_jax and "step_ms" in fit_tf:  # the same opt-in on both backends
        out["jax_fit_bf16_moments_vs_tf_at_largest_n"] = fit_jax["step_ms"] / fit_tf["step_ms"]
        out["jax_fit_bf16_moments_rss_vs_tf_at_largest_n"] = (
            fit_jax["peak_rss_gib"] / fit_tf["peak_rss_gib"])
    return out


def _machine() -> dict:
    import importlib.metadata as md

    versions = {}
    for name in ("tensorflow", "jax", "keras", "numpy", "keras_yt"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        **versions,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="N = 10k, 100k, 1M at paper scale")
    p.add_argument("--num-videos", type=int, nargs="+", help="override the sizes")
    p.add_argument("--impls", nargs="+", choices=IMPLS + JAX_IMPLS, default=list(IMPLS))
    p.add_argument("--backend", nargs="+", choices=("tensorflow", "jax"), default=["tensorflow"],
                   help="Keras backends of `ours`; jax adds the JAX impls (all unless named)")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration (interleaved)")
    p.add_argument("--steps", type=int, help="timed steps per run")
    p.add_argument("--ids", choices=("zipf", "uniform"), default="zipf")
    p.add_argument("--full-softmax-batch-1m", type=int, default=256)
    p.add_argument("--seq-batch", type=int,
                   help="sequences per step of `sequential` and `sequential_head` (default: "
                        "16 full, 8 smoke)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    p.add_argument("--separate-processes", action="store_true",
                   help="one subprocess per configuration also without --full")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "train.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        for cfg in json.loads(args.worker):
            print(json.dumps(worker(cfg)), flush=True)
        return {}

    configs = _configs(args)
    machine = _machine()
    runs: dict[tuple, list] = {}
    # --full: one subprocess per configuration (its own peak RSS). Smoke runs: one subprocess
    # for all (TensorFlow's import alone takes ~8 s here), peak RSS reset before each config.
    separate = args.full or args.separate_processes
    by_backend = [[c for c in configs if _backend(c) == b] for b in ("tensorflow", "jax")]
    groups = [[cfg] for cfg in configs] if separate else [g for g in by_backend if g]
    for repeat in range(args.repeats):
        for group in groups:
            for result in _run_workers(group, args.timeout):
                cfg = result["config"]
                runs.setdefault(_key(cfg), []).append(result)
                status = result.get("error") or f"{result['step_ms_median']:.1f} ms/step"
                print(f"  [{repeat + 1}/{args.repeats}] {cfg['impl']:<17} "
                      f"N={cfg['num_videos']:<9,} {status[:300]}", file=sys.stderr, flush=True)
    rows = {key: _summarise(value) for key, value in runs.items()}
    ratios = _ratios(rows)
    targets = {}
    for name, (op, bound) in TARGETS.items():
        if name in ratios:
            value = ratios[name]
            met = value <= bound if op == "<=" else value >= bound
            targets[name] = {"value": value, "target": f"{op} {bound}", "met": bool(met)}

    print(f"\n{'impl':<22}{'N':>11}{'batch':>7}{'ms/step':>10}{'ms/1024 ex':>12}{'ex/s':>9}"
          f"{'peak RSS':>10}  per-repeat medians (ms)")
    for row in rows.values():
        if "error" in row:
            cfg = row["config"]
            print(f"{cfg['impl']:<22}{cfg['num_videos']:>11,}  ERROR {row['error'][:200]}")
            continue
        reps = ", ".join(f"{m:.0f}" for m in row["step_ms_per_repeat"])
        print(f"{row['impl']:<22}{row['num_videos']:>11,}{row['batch']:>7}{row['step_ms']:>10.1f}"
              f"{row['ms_per_1024_examples']:>12.1f}{row['examples_per_s']:>9.0f}"
              f"{row['peak_rss_gib']:>8.2f} G  {reps}")
    if ratios:
        note = "" if args.full else "; smoke sizes: the targets are meant for --full"
        print(f"\ntargets (largest N = {ratios['largest_n']:,}, "
              f"smallest N = {ratios['smallest_n']:,}{note}):")
        for name, t in targets.items():
            print(f"  {name:<44} {t['value']:8.2f}  target {t['target']:<7} "
                  f"{'met' if t['met'] else 'MISSED'}")
        for name in ("jax_fit_vs_tf_at_largest_n", "jax_fit_rss_vs_tf_at_largest_n",
                     "jax_fit_bf16_moments_vs_tf_at_largest_n",
                     "jax_fit_bf16_moments_rss_vs_tf_at_largest_n"):
            if name in ratios:
                print(f"  {name:<44} {ratios[name]:8.2f}")
        print(f"  load average at the end: {os.getloadavg()} (ratios are taken in one run; "
              "re-measure on a quiet machine)")
        if "full_vs_sampled_per_step_at_largest_n" in ratios:
            print(f"  {'full_vs_sampled_per_step_at_largest_n':<44} "
                  f"{ratios['full_vs_sampled_per_step_at_largest_n']:8.2f}  (no batch scaling)")

    report = {
        "benchmark": "train",
        "mode": "full" if args.full else "smoke",
        "machine": machine,
        "ids": args.ids,
        "repeats": args.repeats,
        "separate_processes": bool(separate),
        "results": list(rows.values()),
        "ratios": ratios,
        "targets": targets,
        "load_average_at_end": os.getloadavg(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
