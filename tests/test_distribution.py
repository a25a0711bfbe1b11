"""keras_yt.distribution: keras.distribution data and model parallelism on JAX (4 CPU devices).

tests/conftest.py gives JAX 4 logical CPU devices (`JAX_NUM_CPU_DEVICES=4`, read when jax is
imported), so these tests run in the pytest process, like keras' own distribution tests; the
10M-row table and the two-process run use subprocesses (memory returned; one JAX runtime per
process). On TensorFlow only the backend-neutral ones run (errors, layout keys).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_yt import distribution as dist_lib
from keras_yt.models import CandidateGenerator, Ranker

JAX = keras.backend.backend() == "jax"
REPO = Path(__file__).resolve().parents[1]
jax_only = pytest.mark.skipif(not JAX, reason="keras.distribution runs on the JAX backend")
# Single- vs multi-device float32 training: see test_training_matches_single_device.
ATOL = 1e-6


def _devices() -> int:
    if not JAX:
        return 0
    import jax

    return jax.device_count()


needs_4 = pytest.mark.skipif(_devices() < 4, reason="needs KERAS_BACKEND=jax and 4 devices "
                                                    "(JAX_NUM_CPU_DEVICES=4, tests/conftest.py)")


@pytest.fixture(autouse=True)
def no_distribution():
    """Every test starts and ends without a global distribution."""
    if JAX:
        keras.distribution.set_distribution(None)
    yield
    if JAX:
        keras.distribution.set_distribution(None)


def _mesh(shape, names=("batch", "model")):
    n = int(np.prod(shape))
    return keras.distribution.DeviceMesh(shape, names, [f"cpu:{i}" for i in range(n)])


def _generator(**kwargs) -> CandidateGenerator:
    config = dict(num_videos=48, video_embedding_dim=8, max_history=6, recent_history=2,
                  search_num_bins=32, search_embedding_dim=4, max_queries=2,
                  hidden_units=(16, 8), num_sampled=None, seed=3)
    config.update(kwargs)
    return CandidateGenerator(**config)


def _examples(n: int, num_videos: int = 48, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = np.array(["", "cat", "dog videos", "funny cat", "news", "music live"])
    x = {
        "watch_history": rng.integers(0, num_videos, (n, 6)).astype("int32"),
        "search_history": words[rng.integers(0, len(words), (n, 2))],
        "example_age": rng.random(n).astype("float32"),
    }
    return x, rng.integers(1, num_videos, n).astype("int32")


def _table_paths(model) -> dict[str, str]:
    """`{variable path: role}` of the tables layout_map shards, from the built model."""
    roles = {}
    if isinstance(model, Ranker):
        roles[model.video_embedding.embeddings.path] = "video table"
        return roles
    roles[model.watch_embedding.embeddings.path] = "watch table"
    if model.search_embedding is not None:
        roles[model.search_embedding.embeddings.path] = "search table"
    if not model.tie_output_embeddings:
        roles[model.softmax.output_embeddings.path] = "W"
    roles[model.softmax.output_biases.path] = "b"
    return roles


# ------------------------------------------------------------------ backend-neutral


def test_padded_rows():
    assert dist_lib.padded_rows(1682, 4) == 1684
    assert dist_lib.padded_rows(1684, 4) == 1684
    assert dist_lib.padded_rows(0, 8) == 0
    assert dist_lib.padded_rows(10_000_001, 8) == 10_000_008
    for bad in ((-1, 4), (10, 0), (10.0, 2), (10, True)):
        with pytest.raises(ValueError, match="must be an integer"):
            dist_lib.padded_rows(*bad)


def test_trim_padded_videos_keeps_every_real_video_s_scores():
    # Training pads the video tables to a multiple of the shards; the trimmed model must score
    # every real video exactly as the trained one, and have no padding rows left to recommend.
    padded = CandidateGenerator(num_videos=32, video_embedding_dim=8, max_history=5,
                                recent_history=2, hidden_units=(16, 8), seed=0)
    padded.compile()
    x = {"watch_history": np.array([[3, 4, 0, 0, 30], [5, 0, 0, 1, 2]]),
         "example_age": np.zeros(2, "float32")}
    padded.fit(x, np.array([7, 30]), verbose=0, epochs=2)
    trimmed = dist_lib.trim_padded_videos(padded, 31)
    assert trimmed.num_videos == 31 and trimmed.get_config()["recent_history"] == 2
    W, b = trimmed.get_output_embeddings()
    W_padded, b_padded = padded.get_output_embeddings()
    np.testing.assert_array_equal(W, W_padded[:31])
    np.testing.assert_array_equal(b, b_padded[:31])
    np.testing.assert_allclose(trimmed.video_scores(x), padded.video_scores(x)[:, :31],
                               rtol=1e-6, atol=1e-6)
    ids, _ = trimmed.recommend(x, k=30)
    assert ids.max() <= 30
    for bad in (33, 1, 31.0):
        with pytest.raises(ValueError, match=r"num_videos must be an integer in \[2, 32\]"):
            dist_lib.trim_padded_videos(padded, bad)


def test_trim_padded_videos_of_a_ranker():
    padded = Ranker(num_videos=12, video_embedding_dim=4, max_history=3, hidden_units=(8,))
    padded.build()
    trimmed = dist_lib.trim_padded_videos(padded, 10)
    np.testing.assert_array_equal(np.asarray(trimmed.video_embedding.embeddings),
                                  np.asarray(padded.video_embedding.embeddings)[:10])
    assert type(trimmed) is Ranker and trimmed.num_videos == 10


@pytest.mark.parametrize("kind", ["search", "tied", "ranker", "no_search"])
def test_layout_map_keys_match_exactly_the_tables(kind):
    """Each key matches one variable path of the built model; every other variable replicated."""
    if kind == "ranker":
        model = Ranker(num_videos=48, video_embedding_dim=8, max_history=6, hidden_units=(8,),
                       categorical_features={"geo": {"input_dim": 6, "output_dim": 2}})
    elif kind == "tied":
        model = _generator(search_num_bins=None, tie_output_embeddings=True,
                           hidden_units=(16, 8))
    elif kind == "no_search":
        model = _generator(search_num_bins=None,
                           categorical_features={"geo": {"input_dim": 6, "output_dim": 2}})
    else:
        model = _generator()
    layouts = dist_lib.layout_map(model, _mesh((2, 2)))  # unbuilt model
    model.build()
    expected = _table_paths(model)
    sharded = {v.path for v in model.variables if layouts[v.path] is not None}
    assert sharded == set(expected)
    assert len(layouts) == len(expected)  # no key left unmatched
    for path in expected:
        assert tuple(layouts[path].axes)[0] == "model"
        assert all(a is None for a in tuple(layouts[path].axes)[1:])


def test_layout_map_indivisible_rows():
    with pytest.raises(ValueError, match=r"num_videos must be a multiple of 4 .* got 1682: use "
                                         r"num_videos=1684"):
        dist_lib.layout_map(_generator(num_videos=1682), _mesh((1, 4)))
    with pytest.raises(ValueError, match=r"search_num_bins must be a multiple of 4 .*'search_"
                                         r"embedding/embedding_bag/embeddings'.* got 30: use "
                                         r"search_num_bins=32"):
        dist_lib.layout_map(_generator(search_num_bins=30), _mesh((1, 4)))
    with pytest.raises(ValueError, match=r"multiple of 2 .*'video_embedding/embeddings'.* got "
                                         r"1681: use num_videos=1682"):
        dist_lib.layout_map(Ranker(num_videos=1681, video_embedding_dim=8, max_history=6),
                            _mesh((2, 2)))
    with pytest.raises(ValueError, match="the mesh has no axis 'model'"):
        dist_lib.layout_map(_generator(), _mesh((4,), ("batch",)))
    with pytest.raises(TypeError, match="CandidateGenerator or Ranker"):
        dist_lib.layout_map(keras.Sequential([keras.layers.Dense(2)]), _mesh((2, 2)))


@pytest.mark.skipif(JAX, reason="the error of the other backends")
def test_wrong_backend_error():
    message = (r"keras.distribution data/model parallelism needs KERAS_BACKEND=jax, the backend "
               rf"is {keras.backend.backend()}; on TensorFlow use tf.distribute.MirroredStrategy")
    with pytest.raises(ValueError, match=message):
        dist_lib.data_parallel()
    with pytest.raises(ValueError, match=message):
        dist_lib.model_parallel(_generator(), 2)


# ------------------------------------------------------------------ JAX, 4 devices


@needs_4
def test_model_parallel_errors():
    model = _generator()
    with pytest.raises(ValueError, match=r"model_parallel=3 must divide the number of devices "
                                         r"\(4\)"):
        dist_lib.model_parallel(model, 3)
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(ValueError, match="model_parallel must be an integer >= 1"):
            dist_lib.model_parallel(model, bad)
    with pytest.raises(ValueError, match="num_videos must be a multiple of 4"):
        dist_lib.model_parallel(_generator(num_videos=50), 4)
    assert dist_lib.model_parallel(model, 4).device_mesh.shape == (1, 4)
    assert dist_lib.model_parallel(model, 1).device_mesh.shape == (4, 1)
    assert dist_lib.data_parallel().device_mesh.shape == (4,)
    # the helpers never set the global distribution
    assert keras.distribution.distribution() is None


def _distribution(kind: str, model):
    if kind == "data4":
        return dist_lib.data_parallel()
    return dist_lib.model_parallel(model, {"model2x2": 2, "model1x4": 4}[kind])


def _train(model, x, y, initial, steps_per_epoch_batch=8, epochs=2):
    model.build()
    model.set_weights(initial)
    model.compile()
    history = model.fit(x, y, batch_size=steps_per_epoch_batch, epochs=epochs, shuffle=False,
                        verbose=0)
    return [np.asarray(w) for w in model.get_weights()], history.history["loss"]


@needs_4
@pytest.mark.parametrize("kind", ["data4", "model2x2", "model1x4", "model2x2-sampled"])
def test_training_matches_single_device(kind):
    """k = 6 Adam steps (3 batches x 2 epochs; the last batch has 2 rows, padded to the batch
    axis on `data4`) on 4 devices give the single-device weights.

    Full softmax (or the same sampled negatives), no dropout, the same initial weights and
    batches: the only difference is the order of float32 sums (gradients summed per device,
    then across devices). Measured max |difference| over all weights, over several runs: 1.5e-8
    to 5.0e-8 (3.0e-8 typical, every kind): a few float32 ulps of the weights (~0.05).
    ATOL = 1e-6 is 20x the largest and 1/1000 of one Adam step (lr = 1e-3): a wrong gradient
    (a shard missing, a batch counted twice) moves weights by about a step.
    """
    x, y = _examples(18)
    # "-sampled": 8 sampled negatives a step, the same on one and on 4 devices (the sampler's
    # seed state is replicated and the step is one global computation).
    config = {"num_sampled": 8} if kind.endswith("-sampled") else {}
    reference = _generator(**config)
    reference.build()
    initial = [np.asarray(w) for w in reference.get_weights()]
    expected, _ = _train(reference, x, y, initial)

    model = _generator(**config)
    keras.distribution.set_distribution(_distribution(kind.removesuffix("-sampled"), model))
    actual, _ = _train(model, x, y, initial)
    if not kind.startswith("data"):  # the layout was applied (else: two unsharded runs)
        assert model.softmax.output_embeddings.value.sharding.shard_shape((48, 8))[0] < 48
    diffs = [float(np.max(np.abs(a - e))) for a, e in zip(actual, expected)]
    moved = max(float(np.max(np.abs(e - i))) for e, i in zip(expected, initial))
    print(f"{kind}: max |multi - single| = {max(diffs):.3g} (weights moved up to {moved:.3g})")
    assert moved > 100 * ATOL  # training changed the weights: the comparison means something
    assert max(diffs) < ATOL, dict(zip([v.path for v in model.weights], diffs))


def _shard_rows(variable) -> set[tuple]:
    """Shapes of the shards this process holds of `variable` (one per device)."""
    return {tuple(s.data.shape) for s in variable.value.addressable_shards}


@needs_4
@pytest.mark.parametrize("model_parallel", [1, 2, 4])
def test_each_device_holds_its_rows(model_parallel):
    model = _generator(num_videos=48, search_num_bins=32)
    keras.distribution.set_distribution(dist_lib.model_parallel(model, model_parallel))
    model.build()
    model.compile()
    model.optimizer.build(model.trainable_variables)
    slots = {v.path: v for v in model.optimizer.variables}
    m = model_parallel
    for variable in (model.watch_embedding.embeddings, model.search_embedding.embeddings,
                     model.softmax.output_embeddings, model.softmax.output_biases):
        rows = variable.shape[0]
        shard = (rows // m, *variable.shape[1:])
        assert variable.value.sharding.shard_shape(variable.shape) == shard, variable.path
        assert len(variable.value.addressable_shards) == 4
        assert _shard_rows(variable) == {shard}, variable.path
        # the optimizer's slots (SparseAdam's momentum and velocity) are split the same way
        name = variable.path.replace("/", "_")
        own = [v for p, v in slots.items() if name in p]
        assert len(own) == 2, (variable.path, sorted(slots))
        for slot in own:
            assert _shard_rows(slot) == {shard}, slot.path
    dense = model.tower[0].kernel
    assert _shard_rows(dense) == {tuple(dense.shape)}  # replicated


@needs_4
def test_ranker_video_table_sharded():
    model = Ranker(num_videos=48, video_embedding_dim=8, max_history=6, hidden_units=(8,))
    keras.distribution.set_distribution(dist_lib.model_parallel(model, 4))
    model.build()
    assert _shard_rows(model.video_embedding.embeddings) == {(12, 8)}


def _trained_reference():
    x, y = _examples(32)
    model = _generator(num_videos=48)
    model.compile()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model, x, y


@needs_4
@pytest.mark.parametrize("kind", ["data4", "model1x4", "model2x2"])
def test_serving_on_sharded_model(kind):
    """predict / evaluate / recommend / get_output_embeddings / the indexes of a sharded model
    give what the same weights give unsharded (11 users: not a multiple of the devices)."""
    from keras_yt.serving import CandidateIndex, ExactIndex

    reference, x, y = _trained_reference()
    weights = reference.get_weights()
    users = {k: v[:11] for k, v in x.items() if k != "example_age"}
    queries = reference.predict(users, verbose=0)
    expected = {
        "embeddings": reference.get_output_embeddings(),
        "predict": queries,
        "evaluate": reference.evaluate(x, y, batch_size=8, verbose=0, return_dict=True),
        "recommend": reference.recommend(users, k=5),
        "candidate_index": CandidateIndex.from_model(reference).query(queries, k=5),
        "exact_index": ExactIndex.from_model(reference).query(queries, k=5),
    }

    model = _generator(num_videos=48)
    keras.distribution.set_distribution(_distribution(kind, model))
    model.build()
    model.set_weights(weights)
    model.compile()
    if kind != "data4":
        assert _shard_rows(model.softmax.output_embeddings) == {
            (48 // (4 if kind == "model1x4" else 2), 8)}
    actual = {
        "embeddings": model.get_output_embeddings(),
        "predict": model.predict(users, batch_size=4, verbose=0),
        "evaluate": model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True),
        "recommend": model.recommend(users, k=5),
        "candidate_index": CandidateIndex.from_model(model).query(queries, k=5),
        "exact_index": ExactIndex.from_model(model).query(queries, k=5),
    }
    np.testing.assert_array_equal(actual["embeddings"][0], expected["embeddings"][0])
    np.testing.assert_array_equal(actual["embeddings"][1], expected["embeddings"][1])
    np.testing.assert_allclose(actual["predict"], expected["predict"], atol=1e-6)
    for name, value in expected["evaluate"].items():
        assert actual["evaluate"][name] == pytest.approx(value, abs=1e-5), name
    for name in ("recommend", "candidate_index", "exact_index"):
        np.testing.assert_array_equal(actual[name][0], expected[name][0], err_msg=name)
        np.testing.assert_allclose(actual[name][1], expected[name][1], atol=1e-5, err_msg=name)


@needs_4
def test_fit_candidate_generator_under_model_parallel():
    """The training recipe runs sharded: numpy queries tokenised, 30 examples (not a multiple
    of the batch), validation, early stopping's restored weights keep their layout."""
    from keras_yt.training import fit_candidate_generator

    x, y = _examples(30)
    model = _generator(num_sampled=8)  # the sampled softmax: the seed generator is placed too
    keras.distribution.set_distribution(dist_lib.model_parallel(model, 2))
    examples = {**x, "label": y}
    history = fit_candidate_generator(model, examples, validation=examples, epochs=3, verbose=0)
    assert history["batch_size"] == 32 and np.isfinite(history["loss"]).all()
    assert _shard_rows(model.watch_embedding.embeddings) == {(24, 8)}
    assert model.softmax.seed_generator.state.value.sharding.mesh.size == 4
    with pytest.raises(ValueError, match="batch_size must be a multiple of 2"):
        model.fit(x, y, batch_size=7, verbose=0)


# ------------------------------------------------------------------ subprocesses

WORKER = REPO / "tests" / "distribution_worker.py"


def _worker_env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "JAX_"))}
    env.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_4
@pytest.mark.parametrize("mode", ["data", "model"])
def test_two_processes_train_one_model(tmp_path, mode):  # ~10 s each
    """Two processes (2 CPU devices each, `keras.distribution.initialize` on localhost, gloo
    CPU collectives) train one model over the 4 global devices, with DataParallel or with
    ModelParallel on a (2, 2) mesh (each process's 2 devices split the tables; the batch axis
    spans the processes), each feeding half of every global batch of 8: both end with the same
    weights, which are those of 4 steps on one device with the same global batches."""
    config = dict(num_videos=48, video_embedding_dim=8, max_history=6, hidden_units=(16, 8),
                  use_example_age=False, num_sampled=None, seed=3)
    x, y = _examples(16)
    reference = CandidateGenerator(**config)
    reference.build()
    initial = [np.asarray(w) for w in reference.get_weights()]
    reference.compile()
    reference.fit({"watch_history": x["watch_history"]}, y, batch_size=8, epochs=2,
                  shuffle=False, verbose=0)
    expected = reference.get_weights()
    data = tmp_path / "data.npz"
    np.savez(data, config=json.dumps(config), global_batch=8, epochs=2,
             watch_history=x["watch_history"], label=y, num_weights=len(initial),
             **{f"w{i}": w for i, w in enumerate(initial)})

    port = _free_port()
    outs = [tmp_path / f"out{i}.npz" for i in range(2)]
    logs = [open(tmp_path / f"log{i}.txt", "w+") for i in range(2)]
    command = [sys.executable, str(WORKER), "train", mode]
    procs = [subprocess.Popen([*command, str(i), "2", str(port), str(data), str(outs[i])],
                              env=_worker_env(2), cwd=tmp_path, stdout=logs[i],
                              stderr=subprocess.STDOUT) for i in range(2)]
    deadline = time.monotonic() + 300
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read()[-3000:])
        log.close()
    assert [p.returncode for p in procs] == [0, 0], "\n---\n".join(texts)

    results = [np.load(out) for out in outs]
    for r in results:
        assert int(r["process_count"]) == 2 and int(r["device_count"]) == 4
    for i in range(len(initial)):
        np.testing.assert_array_equal(results[0][f"w{i}"], results[1][f"w{i}"])
        np.testing.assert_allclose(results[0][f"w{i}"], expected[i], atol=ATOL, rtol=0)
    moved = max(float(np.max(np.abs(e - w))) for e, w in zip(expected, initial))
    diff = max(float(np.max(np.abs(results[0][f"w{i}"] - e))) for i, e in enumerate(expected))
    print(f"two processes ({mode}): max |multi - single| = {diff:.3g} "
          f"(weights moved up to {moved:.3g})")
    assert moved > 100 * ATOL


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@needs_4
@pytest.mark.slow
def test_10m_video_table_holds_a_quarter_per_device(tmp_path):
    """A 10M x 256 float32 video table (10.24 GB) row-sharded over 4 devices: each device holds
    (2.5M, 256), 2.56 GB, and the process never holds a full-size copy besides the 4 shards.

    Built in a subprocess (memory returned), the table only (no training). Zeros are the
    initialiser: with the layer's own (uniform), XLA's random bits need 3x the shard in
    temporaries per device (the compiled initialiser's memory analysis, checked below), i.e. a
    peak of ~4x the table on one host with 4 logical devices (41 GB here). Skipped when the
    machine lacks the memory.
    """
    rows, dim, table_bytes = 10_000_000, 256, 10_000_000 * 256 * 4
    if _mem_available() < table_bytes + (4 << 30):
        pytest.skip(f"needs {(table_bytes >> 30) + 4} GiB available, "
                    f"{_mem_available() >> 30} GiB are")
    out = tmp_path / "table.json"
    result = subprocess.run([sys.executable, str(WORKER), "table", str(rows), str(dim), "4",
                             "zeros", str(out)], env=_worker_env(4), cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    r = json.loads(out.read_text())
    print(f"10M x 256 over 4 devices: {r}")
    assert r["shape"] == [rows, dim]
    assert r["shard_shapes"] == [[rows // 4, dim]] * 4
    assert r["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    assert r["bytes_per_device"] == [table_bytes // 4] * 4
    assert r["init_output_bytes_per_device"] == table_bytes // 4
    assert r["init_temp_bytes_per_device"] <= 3 * table_bytes // 4 + (1 << 20)
    grown = (r["peak_rss_mib"] - r["rss_before_mib"]) * 2**20
    assert grown < 1.1 * table_bytes  # the 4 shards, no full-size staging copy


@needs_4
def test_fit_unbuilt_model_then_save_and_load_sharded(tmp_path):
    """`model.fit` builds a model constructed before the distribution (its sampler's seed state
    laid out on the mesh, else the jitted step refuses single-device state), and a `.keras` file
    loads back sharded under the same distribution."""
    x, y = _examples(10)
    model = _generator(num_sampled=8, search_num_bins=None)
    keras.distribution.set_distribution(dist_lib.model_parallel(model, 4))
    model.compile()
    features = {"watch_history": x["watch_history"], "example_age": x["example_age"]}
    model.fit(features, y, batch_size=4, epochs=1, verbose=0)
    assert model.softmax.seed_generator.state.value.sharding.mesh.size == 4
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert _shard_rows(restored.softmax.output_embeddings) == {(12, 8)}
    np.testing.assert_allclose(restored.predict(features, verbose=0),
                               model.predict(features, verbose=0), atol=1e-6)
    restored.fit(features, y, batch_size=4, epochs=1, verbose=0)
