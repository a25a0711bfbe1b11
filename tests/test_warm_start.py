"""Warm start on a grown log: carried-over weights, new ids, errors, the old run left intact."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_yt.cli import main
from keras_yt.data import Vocabulary
from keras_yt.warm_start import AxisGrowth, carry_over_weights, cowatched_rows, warm_start

N_USERS, N_VIDEOS, STEPS = 40, 30, 8


def _rows(ids: str, users, videos_of, times_of) -> list[str]:
    out = []
    for user in users:
        for step, (video, t) in enumerate(zip(videos_of(user), times_of(user))):
            if ids == "string":
                out.append(f"u{user},v{video},{t}")
            else:
                out.append(f"{user},{2**40 + video},{t}")
    return out


def write_logs(folder: Path, ids: str = "string") -> tuple[Path, Path]:
    """An old log, and the grown log: more watches of old users, 5 new videos, 6 new users."""
    rng = np.random.default_rng(0)
    starts = rng.integers(0, N_VIDEOS, N_USERS + 6)
    old = _rows(ids, range(N_USERS), lambda u: [(starts[u] + s) % N_VIDEOS for s in range(STEPS)],
                lambda u: [1_000_000 + 1000 * u + s for s in range(STEPS)])
    # After the old log's end: old users watch 3 more (new videos among them), new users 5.
    def new_videos(u):
        return [N_VIDEOS + (u + s) % 5 if s % 2 == 0 else (starts[u] + s) % N_VIDEOS
                for s in range(3)]

    grown = old + _rows(ids, range(0, N_USERS, 2), new_videos,
                        lambda u: [2_000_000 + 1000 * u + s for s in range(3)])
    grown += _rows(ids, range(N_USERS, N_USERS + 6),
                   lambda u: [(starts[u] + s) % (N_VIDEOS + 5) for s in range(5)],
                   lambda u: [2_500_000 + 1000 * u + s for s in range(5)])
    header = "user,video,timestamp"
    old_path, grown_path = folder / "old.csv", folder / "grown.csv"
    old_path.write_text("\n".join([header, *old]) + "\n")
    grown_path.write_text("\n".join([header, *grown]) + "\n")
    return old_path, grown_path


def digest(folder: Path) -> dict:
    """Every file of a folder (recursively) with its size, mtime and sha256."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            out[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns,
                                                  hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def train(log: Path, out: Path) -> Path:
    assert main(["train", "--log", str(log), "--out", str(out), "--epochs", "2",
                 "--preset", "tiny_candidate", "--max-history", "50"]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    old_log, grown_log = write_logs(folder)
    old = train(old_log, folder / "old")
    before = digest(old)
    assert main(["train", "--log", str(grown_log), "--out", str(folder / "new"),
                 "--init-from", str(old), "--epochs", "2"]) == 0
    return {"folder": folder, "old": old, "new": folder / "new", "grown_log": grown_log,
            "old_log": old_log, "old_digest": before}


def test_vocabularies_grow_and_known_weights_are_carried_over_bit_identically(runs):
    from keras_yt.run_folder import RunFolder

    old, new = RunFolder(runs["old"]), RunFolder(runs["new"])
    n = old.videos.size
    assert new.videos.size == n + 5 and new.users.size == old.users.size + 6
    assert new.videos.ids[: n - 1].tolist() == old.videos.ids.tolist()
    assert new.users.ids[: old.users.size - 1].tolist() == old.users.ids.tolist()
    assert {str(v) for v in new.videos.ids[n - 1:]} == {f"v{N_VIDEOS + i}" for i in range(5)}
    # Weights straight after the carry-over (the saved run is trained on afterwards).
    from keras_yt.warm_start import grow_candidate_generator

    old_model = old.load_model()
    grown, report = grow_candidate_generator(old_model, new.videos.size, new_rows="random",
                                             optimizer_state="carry")
    assert report["optimizer"] == "carried"
    for old_var, new_var in zip(old_model.variables, grown.variables):
        a, b = np.asarray(old_var.numpy()), np.asarray(new_var.numpy())
        if a.shape == b.shape:
            assert np.array_equal(a, b), old_var.path
        else:  # the video axis: the first n rows identical
            assert a.shape[0] == n and b.shape[0] == n + 5, old_var.path
            assert np.array_equal(a, b[:n]), old_var.path
    grown_paths = {v.path for v in grown.variables if len(v.shape) and v.shape[0] == n + 5}
    assert len(grown_paths) == 3 and grown_paths <= set(report["grown"])  # table, W, b
    for old_var, new_var in zip(old_model.optimizer.variables, grown.optimizer.variables):
        a, b = np.asarray(old_var.numpy()), np.asarray(new_var.numpy())
        assert np.array_equal(a, b[: len(a)] if a.ndim else b), old_var.path
        if a.ndim and len(b) > len(a):
            assert not b[len(a):].any()  # moments of new rows start at zero


def test_new_videos_are_recommendable_and_new_users_are_served(runs):
    from keras_yt.run_folder import RunFolder
    from keras_yt.serving.recommender import Recommender

    new = RunFolder(runs["new"])
    info = json.loads((runs["new"] / "warm_start.json").read_text())
    assert info["new_videos"] == 5 and info["new_users"] == 6
    assert info["examples"] > 0 and info["optimizer"] == "reset"  # the default
    recommender = Recommender(new, warm=False)
    fresh = {f"v{N_VIDEOS + i}" for i in range(5)}
    items = recommender.recommend(user=f"u{N_USERS}", k=34, keep_watched=True)  # a new user
    assert len(items) == 34 and fresh <= {item["id"] for item in items}
    assert len(recommender.recommend(watch_history=["v30", "v31"], k=5)) == 5
    period = json.loads((runs["new"] / "log.json").read_text())
    assert period["last_timestamp"] == 2_500_000 + 1000 * (N_USERS + 5) + 4


def test_old_run_is_unchanged_after_a_warm_start(runs):
    assert digest(runs["old"]) == runs["old_digest"]


def test_example_age_is_measured_from_the_grown_log_and_training_is_on_new_labels(tmp_path):
    from keras_yt.data import read_raw_watch_log

    old_log, grown_log = write_logs(tmp_path)
    old = train(old_log, tmp_path / "old")
    raw = read_raw_watch_log(grown_log)
    seen = {}

    import keras_yt.pipeline as pipeline

    original = pipeline.train_candidate_generator

    def spy(model, examples, validation, *args):
        seen["examples"], seen["validation"] = examples, validation
        return original(model, examples, validation, *args)

    pipeline.train_candidate_generator = spy
    try:
        warm_start(raw, tmp_path / "new", old, epochs=1, verbose=False)
    finally:
        pipeline.train_candidate_generator = original
    examples = seen["examples"]
    old_end = 1_000_000 + 1000 * (N_USERS - 1) + STEPS - 1
    # Before the old log's end: only the old run's held-out watches (each user's last two) of
    # the users who came back (the others' are held out again).
    before = examples["timestamp"] <= old_end
    assert before.sum() == 2 * (N_USERS // 2)
    steps = (examples["timestamp"][before] - 1_000_000) % 1000
    assert set(steps.tolist()) == {STEPS - 2, STEPS - 1}
    end = raw["timestamp"].max()
    np.testing.assert_allclose(examples["example_age"],
                               (end - examples["timestamp"]) / 86400.0, rtol=1e-6)
    # Old users' examples see their old watches as history (full context).
    assert (examples["watch_history"] > 0).sum(axis=1).min() >= 1
    assert (examples["watch_history"] > 0).sum(axis=1).max() == STEPS  # all 8 old watches
    # 20 old users with 3 new watches (1 trains, with the 2 the old run held out), 6 new users
    # with 5 (the first has no history, the last two are held out: 2 train).
    assert len(examples["label"]) == 20 * 3 + 6 * 2


def test_replay_adds_a_sample_of_old_labels_to_the_new_ones(tmp_path):
    from keras_yt.data import read_raw_watch_log

    old_log, grown_log = write_logs(tmp_path)
    old = train(old_log, tmp_path / "old")
    raw = read_raw_watch_log(grown_log)
    seen = []

    import keras_yt.pipeline as pipeline

    original = pipeline.train_candidate_generator

    def spy(model, examples, validation, *args):
        seen.append(examples)
        return original(model, examples, validation, *args)

    pipeline.train_candidate_generator = spy
    try:
        warm_start(raw, tmp_path / "new", old, epochs=1, verbose=False)
        info = warm_start(raw, tmp_path / "replayed", old, epochs=1, verbose=False, replay=0.5)
    finally:
        pipeline.train_candidate_generator = original
    plain, replayed = seen
    num_new = len(plain["label"])  # 72 (see the test above)
    assert len(replayed["label"]) == info["examples"] == num_new + round(0.5 * num_new)
    assert info["replay"] == 0.5

    def keys(examples):
        return set(zip(examples["user"].tolist(), examples["timestamp"].tolist()))

    extra = keys(replayed) - keys(plain)
    assert keys(plain) <= keys(replayed) and len(extra) == round(0.5 * num_new)
    old_end = 1_000_000 + 1000 * (N_USERS - 1) + STEPS - 1
    assert all(timestamp <= old_end for _, timestamp in extra)  # old labels only
    with pytest.raises(ValueError, match="replay must be a number >= 0 .* got -1"):
        warm_start(raw, tmp_path / "bad", old, epochs=1, verbose=False, replay=-1)
    with pytest.raises(ValueError, match="learning_rate_scale must be a number > 0, got 0"):
        warm_start(raw, tmp_path / "bad", old, epochs=1, verbose=False, learning_rate_scale=0)


def test_learning_rate_scale_scales_the_warm_optimizer(runs, tmp_path):
    import keras

    old_model = keras.saving.load_model(Path(runs["old"]) / "candidate_generator.keras",
                                        compile=True)
    old_rate = float(old_model.optimizer.learning_rate)
    info = warm_start(runs["grown_log"], tmp_path / "new", runs["old"], epochs=1, verbose=False,
                      learning_rate_scale=0.25)
    new_model = keras.saving.load_model(tmp_path / "new" / "candidate_generator.keras",
                                        compile=True)
    assert info["learning_rate_scale"] == 0.25
    np.testing.assert_allclose(float(new_model.optimizer.learning_rate), 0.25 * old_rate,
                               rtol=1e-6)


def test_warm_epochs_take_the_batch_size_of_a_full_run_on_the_grown_log(tmp_path):
    """A grown log of ~24,000 examples with ~1,100 new ones: a full run takes batches of 64
    (`default_batch_size`), the new examples alone would take 32; the warm start takes 64, and
    an explicit `batch_size` wins."""
    from keras_yt.data import candidate_examples, read_raw_watch_log
    from keras_yt.evaluation import LeaveLastOut
    from keras_yt.training import default_batch_size
    from keras_yt.warm_start import full_run_batch_size

    users, steps = 400, 62
    rng = np.random.default_rng(1)
    rows = [f"u{u},v{int(v)},{1000 * u + s}" for u in range(users)
            for s, v in enumerate(rng.integers(0, 200, steps))]
    old_log, grown_log = tmp_path / "old.csv", tmp_path / "grown.csv"
    old_log.write_text("user,video,timestamp\n" + "\n".join(rows) + "\n")
    rows += [f"u{u},v{int(v)},{10**6 + 1000 * u + s}" for u in range(users)
             for s, v in enumerate(rng.integers(0, 200, 3))]
    grown_log.write_text("user,video,timestamp\n" + "\n".join(rows) + "\n")
    assert main(["train", "--log", str(old_log), "--out", str(tmp_path / "old"), "--epochs", "1",
                 "--preset", "tiny_candidate", "--max-history", "10"]) == 0

    import keras_yt.pipeline as pipeline

    seen = []
    original = pipeline.train_candidate_generator

    def spy(model, examples, validation, epochs, batch_size):
        seen.append((len(examples["label"]), batch_size))
        return original(model, examples, validation, epochs, batch_size)

    pipeline.train_candidate_generator = spy
    try:
        warm_start(grown_log, tmp_path / "new", tmp_path / "old", epochs=1, verbose=False)
        info = warm_start(grown_log, tmp_path / "new2", tmp_path / "old", epochs=1,
                          verbose=False, batch_size=48)
    finally:
        pipeline.train_candidate_generator = original
    # The grown log's examples, counted independently of warm_start's own code path.
    raw = read_raw_watch_log(grown_log)
    watches = np.zeros(len(raw["user"]), dtype=[("user", "i8"), ("video", "i8"),
                                                  ("timestamp", "f8"), ("watch_time", "f4")])
    watches["user"] = np.unique(raw["user"], return_inverse=True)[1] + 1
    watches["video"] = np.unique(raw["video"], return_inverse=True)[1] + 1
    watches["timestamp"] = raw["timestamp"]
    split = LeaveLastOut(watches, max_history=10, num_items=int(watches["video"].max()) + 1)
    num_all = len(candidate_examples(split.fit_watches, max_history=10)["label"])
    (num_new, batch), (_, explicit) = seen
    assert default_batch_size(num_new) == 32 and default_batch_size(num_all) == 64
    assert batch == full_run_batch_size(num_all) == 64
    assert explicit == 48 == info["history"]["batch_size"]


def test_sequence_replay_labels_old_positions_in_the_same_windows():
    from keras_yt.data.io import WATCH_DTYPE
    from keras_yt.warm_start import _fresh_sequence_examples

    watches = np.zeros(30, dtype=WATCH_DTYPE)
    watches["user"] = np.repeat([1, 2, 3], 10)
    watches["video"] = np.tile(np.arange(1, 11), 3)
    watches["timestamp"] = np.tile(np.arange(10), 3) + 100 * np.repeat([0, 1, 2], 10)
    # The old run ended at 207: users 1 and 2 are all old, user 3 has 2 new watches (208, 209).
    # Fresh labels: those 2 and the 6 the old run held out (each user's last two before 207);
    # 27 labelled positions in all (each watch but a user's first).
    rng = np.random.default_rng(0)
    plain = _fresh_sequence_examples(watches, watches, 207.0, 10, 209.0)
    assert (plain["label"] > 0).sum() == 8
    replayed = _fresh_sequence_examples(watches, watches, 207.0, 10, 209.0, 1.0, rng)
    labels = replayed["label"] > 0
    assert labels.sum() == 8 + 8
    assert (replayed["timestamp"][labels] > 207).sum() == 2  # the 8 replayed ones are old
    assert (replayed["example_age"][~labels] == 0).all()
    everything = _fresh_sequence_examples(watches, watches, 207.0, 10, 209.0, 3.0, rng)
    assert (everything["label"] > 0).sum() == 27  # capped: every old label once


@pytest.mark.parametrize("case", ["int_ids", "not_contained", "shifted", "same_folder",
                                  "inside_old", "demo_run", "nothing_new"])
def test_bad_input_is_one_clear_line_and_the_old_run_is_untouched(runs, tmp_path, case,
                                                                   capsys):
    old, grown_log = runs["old"], runs["grown_log"]
    out = tmp_path / "new"
    if case == "int_ids":
        grown_log = write_logs(tmp_path, ids="int")[1]
        expected = "are integers but --init-from"
    elif case == "not_contained":  # a log that lost the old run's first rows
        lines = grown_log.read_text().splitlines()
        grown_log = tmp_path / "cut.csv"
        grown_log.write_text("\n".join([lines[0], *lines[1 + STEPS:]]) + "\n")
        expected = "does not contain the --init-from run's period"
    elif case == "shifted":  # same period, other watches
        lines = grown_log.read_text().splitlines()
        grown_log = tmp_path / "other.csv"
        lines[1] = "u1," + lines[1].split(",", 1)[1]  # u0's first watch given to u1
        grown_log.write_text("\n".join(lines) + "\n")
        expected = "(user, video) watches up to"
    elif case == "same_folder":
        out = old
        expected = "is the --init-from run"
    elif case == "inside_old":
        out = old / "new"
        expected = "are inside one another"
    elif case == "demo_run":
        grown_log = runs["old_log"]
        old = tmp_path / "demo"
        old.mkdir()
        for name in ("candidate_generator.keras", "run.h5"):
            (old / name).write_bytes((runs["old"] / name).read_bytes())
        expected = "has no log.json"
    else:
        grown_log = runs["old_log"]
        expected = "nothing new to train on"
    before = digest(old)
    status = main(["train", "--log", str(grown_log), "--out", str(out), "--init-from", str(old)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and expected in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert digest(old) == before
    if case != "same_folder":
        assert not out.exists()


def test_a_run_of_another_model_kind_is_refused(runs, tmp_path, capsys):
    """A run whose model reads features a watch log lacks (e.g. a demo run) is refused."""
    import keras

    from keras_yt.models import CandidateGenerator

    old = tmp_path / "featured"
    old.mkdir()
    for name in ("run.h5", "log.json"):
        (old / name).write_bytes((runs["old"] / name).read_bytes())
    model = CandidateGenerator(num_videos=31, video_embedding_dim=4, max_history=5,
                               hidden_units=(8,), categorical_features={
                                   "geography": {"input_dim": 4, "output_dim": 2}})
    model.build()
    model.save(old / "candidate_generator.keras")
    before = digest(old)
    status = main(["train", "--log", str(runs["grown_log"]), "--out", str(tmp_path / "new"),
                   "--init-from", str(old)])
    err = capsys.readouterr().err
    assert status == 2 and "model of another kind" in err and "geography" in err, err
    assert digest(old) == before
    ranker = tmp_path / "ranker"
    ranker.mkdir()
    for name in ("run.h5", "log.json"):
        (ranker / name).write_bytes((runs["old"] / name).read_bytes())
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.save(ranker / "candidate_generator.keras")
    status = main(["train", "--log", str(runs["grown_log"]), "--out", str(tmp_path / "new"),
                   "--init-from", str(ranker)])
    err = capsys.readouterr().err
    assert status == 2 and "not a candidate generator" in err, err


def test_old_run_is_unchanged_after_a_sigkill_mid_way(runs, tmp_path):
    old, before = runs["old"], runs["old_digest"]
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_yt.cli", "train", "--log", str(runs["grown_log"]),
         "--out", str(out), "--init-from", str(old), "--epochs", "50", "--batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        for line in process.stdout:  # killed while it trains (each epoch prints a line)
            if "Epoch 2" in line or "val_loss" in line:
                break
            assert time.monotonic() < deadline, "training did not start within 120 s"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert digest(old) == before
    assert not out.exists()


def test_carry_over_by_path_grows_any_video_axis_and_refuses_other_changes():
    import keras

    def model(num_videos, width=3):
        inputs = keras.Input((2,), dtype="int32")
        x = keras.layers.Embedding(num_videos, width, name="table")(inputs)
        x = keras.layers.Flatten()(x)
        return keras.Model(inputs, keras.layers.Dense(num_videos, name="head")(x))

    old, new = model(4), model(6)
    mixing = np.array([[0, 1.0, 0, 0], [0, 0.5, 0.5, 0]])
    report = carry_over_weights(old, new, [AxisGrowth("video", 4, 6, mixing)])
    table_old = old.get_layer("table").embeddings.numpy()
    table_new = new.get_layer("table").embeddings.numpy()
    np.testing.assert_array_equal(table_new[:4], table_old)
    np.testing.assert_allclose(table_new[4], table_old[1], rtol=1e-6)
    np.testing.assert_allclose(table_new[5], (table_old[1] + table_old[2]) / 2, rtol=1e-6)
    kernel_old, kernel_new = old.get_layer("head").kernel.numpy(), new.get_layer("head").kernel
    np.testing.assert_array_equal(np.asarray(kernel_new.numpy())[:, :4], kernel_old)  # axis 1
    assert report["grown"]["head/kernel"] == [1]
    with pytest.raises(ValueError, match="no vocabulary axis"):
        carry_over_weights(model(4, width=3), model(6, width=5), [AxisGrowth("video", 4, 6)])


def test_carried_adam_moments_keep_their_values_when_a_table_grows_into_bfloat16_moments(
        monkeypatch):
    """A table that grows past `SparseAdam`'s size for bfloat16 moments ("auto") gets the old
    float32 moments rounded to bfloat16 (held as bits on JAX), not their bits cast as numbers."""
    import keras
    import ml_dtypes

    from keras_yt.models import CandidateGenerator
    from keras_yt.optimizers import sparse_adam

    monkeypatch.setattr(sparse_adam, "BFLOAT16_MOMENTS_MIN_SIZE", 1000)

    def model(num_videos):
        generator = CandidateGenerator(num_videos=num_videos, video_embedding_dim=8,
                                       max_history=4, hidden_units=(8,), num_sampled=16, seed=0)
        generator.build()
        generator.compile()  # SparseAdam, table_moment_dtype="auto"
        return generator

    old, new = model(100), model(150)  # watch tables of 800 and 1,200 elements
    rng = np.random.default_rng(0)
    x = {"watch_history": rng.integers(1, 100, (16, 4)).astype("int32"),
         "example_age": np.zeros(16, "float32")}
    old.fit(x, rng.integers(1, 100, 16), verbose=0)
    assert old.name != new.name  # slots are named after the model: matched without it
    carry_over_weights(old, new, [AxisGrowth("video", 100, 150)], optimizer_state="carry")

    def moments(generator):
        optimizer, table = generator.optimizer, generator.watch_embedding.embeddings
        index = optimizer._get_variable_index(table)
        return [optimizer._momentums[index], optimizer._velocities[index]]

    for before, after in zip(moments(old), moments(new)):
        assert before.dtype == "float32"
        assert after.dtype == ("uint16" if keras.backend.backend() == "jax" else "bfloat16")
        old_values = np.asarray(before.numpy())
        new_values = new.optimizer.variable_numbers(after)
        assert new_values.dtype == ml_dtypes.bfloat16 and np.any(old_values != 0)
        np.testing.assert_array_equal(new_values[:100].astype("float32"),
                                      old_values.astype(ml_dtypes.bfloat16).astype("float32"))
        assert not np.any(new_values[100:].astype("float32"))


def test_carry_over_matches_layers_of_the_same_shape_by_their_own_paths():
    import keras

    def model(num_videos):
        inputs = keras.Input((2,), dtype="int32")
        x = keras.layers.Flatten()(keras.layers.Embedding(num_videos, 3, name="table")(inputs))
        x = keras.layers.Dense(6, name="first")(x)
        return keras.Model(inputs, keras.layers.Dense(6, name="second")(x))

    old, new = model(4), model(6)
    carry_over_weights(old, new, [AxisGrowth("video", 4, 6)])
    for name in ("first", "second"):  # same shapes, different layers: each its own
        np.testing.assert_array_equal(np.asarray(new.get_layer(name).kernel.numpy()),
                                      np.asarray(old.get_layer(name).kernel.numpy()))


def test_carrying_the_optimizer_state_of_another_optimizer_is_refused():
    import keras

    from keras_yt.optimizers import SparseAdagrad, SparseAdam

    def model(num_videos, optimizer):
        inputs = keras.Input((2,), dtype="int32")
        x = keras.layers.Flatten()(keras.layers.Embedding(num_videos, 3, name="table")(inputs))
        built = keras.Model(inputs, keras.layers.Dense(1, name="head")(x))
        built.compile(optimizer=optimizer, loss="mse")
        built.optimizer.build(built.trainable_variables)
        return built

    old, new = model(4, SparseAdagrad(0.1)), model(6, SparseAdam())
    with pytest.raises(ValueError, match=r"optimizer variable .*momentum.* has no counterpart"):
        carry_over_weights(old, new, [AxisGrowth("video", 4, 6)], optimizer_state="carry")


def test_cowatched_rows_average_the_known_neighbours():
    log = {"user": [1, 1, 1, 1, 2, 2], "video": [1, 4, 2, 3, 5, 5],
           "timestamp": [0, 1, 2, 3, 0, 1]}
    rows = cowatched_rows(log, old_size=4, new_size=6, window=1)
    np.testing.assert_allclose(rows[0], [0, 0.5, 0.5, 0])  # video 4: between 1 and 2
    np.testing.assert_allclose(rows[1], [0, 1 / 3, 1 / 3, 1 / 3])  # video 5: no known neighbour


def test_vocabulary_grow_keeps_model_ids_and_refuses_the_other_id_kind():
    old = Vocabulary.from_ids([5, 5, 9, 2**40])
    grown = old.grow([9, 7, 7, 3, 5])
    assert grown.lookup([5, 9, 2**40, 7, 3]).tolist() == [1, 2, 3, 4, 5]
    assert grown.counts.tolist() == [1, 1, 0, 2, 1]
    with pytest.raises(ValueError, match="the video ids are strings"):
        old.grow(["a"])


def test_a_new_video_everyone_watches_next_is_recommended_to_new_users(tmp_path):
    """Every old user's first watch after the old run is the new video v30: warm-started, the
    model recommends it to the new users (who never watched it); the SavedModel export takes its
    raw id."""
    from keras_yt.run_folder import RunFolder
    from keras_yt.serving.recommender import Recommender

    old_log, _ = write_logs(tmp_path)
    starts = np.random.default_rng(0).integers(0, N_VIDEOS, N_USERS + 6)
    rows = old_log.read_text().splitlines()
    for u in range(N_USERS):
        videos = [N_VIDEOS] + [(starts[u] + STEPS + s) % N_VIDEOS for s in range(3)]
        rows += [f"u{u},v{v},{2_000_000 + 1000 * u + s}" for s, v in enumerate(videos)]
    for u in range(N_USERS, N_USERS + 6):
        rows += [f"u{u},v{(starts[u] + s) % N_VIDEOS},{2_500_000 + 1000 * u + s}"
                 for s in range(5)]
    grown = tmp_path / "grown.csv"
    grown.write_text("\n".join(rows) + "\n")
    old = train(old_log, tmp_path / "old")
    assert main(["train", "--log", str(grown), "--out", str(tmp_path / "new"),
                 "--init-from", str(old), "--epochs", "10"]) == 0
    recommender = Recommender(tmp_path / "new", warm=False)
    lists = recommender.recommend_users([f"u{u}" for u in range(N_USERS, N_USERS + 6)], k=5)
    assert sum("v30" in [item["id"] for item in items] for items in lists) >= 4, lists

    # The SavedModel of the new run takes the new video's raw id.
    import tensorflow as tf

    assert main(["export", "--run", str(tmp_path / "new")]) == 0
    run = RunFolder(tmp_path / "new")
    model = run.load_model()
    raw = np.full((2, model.max_history), "", dtype=object)
    raw[0, -2:] = ["v3", "v30"]
    raw[1, -1:] = ["v30"]
    served = tf.saved_model.load(str(run.user_tower_path)).signatures["user_vector"]
    out = served(watch_history=tf.constant(raw.astype(str)))["user_vector"].numpy()
    ids = run.videos.lookup(raw.astype(str)).astype("int32")
    assert ids[1, -1] == run.videos.size - 1  # v30: the one new video, appended last
    expected = model.user_model().predict({"watch_history": ids}, verbose=0)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_a_sequential_run_warm_starts_on_sequence_windows_labelled_with_the_new_watches(
        tmp_path):
    from keras_yt.data import read_raw_watch_log

    old_log, grown_log = write_logs(tmp_path)
    assert main(["train", "--log", str(old_log), "--out", str(tmp_path / "old"), "--epochs", "1",
                 "--preset", "movielens_sequential", "--max-history", "10"]) == 0
    raw = read_raw_watch_log(grown_log)
    seen = {}
    # A cap on next-watch examples has no meaning for sequence windows: refused, not ignored.
    with pytest.raises(ValueError, match="max_examples_per_user caps a bag model's"):
        warm_start(raw, tmp_path / "capped", tmp_path / "old", max_examples_per_user=3,
                   verbose=False)
    assert not (tmp_path / "capped").exists()

    import keras_yt.pipeline as pipeline

    original = pipeline.train_candidate_generator

    def spy(model, examples, validation, *args):
        seen["examples"] = examples
        return original(model, examples, validation, *args)

    pipeline.train_candidate_generator = spy
    try:
        info = warm_start(raw, tmp_path / "new", tmp_path / "old", epochs=1, verbose=False)
    finally:
        pipeline.train_candidate_generator = original
    examples = seen["examples"]
    labelled = examples["label"] > 0
    assert examples["label"].shape[1] == 10 and labelled.any(axis=1).all()
    # The same labels as the bag model's warm start (see the test above): the new watches and
    # the old run's held-out ones, each once; the old watches stay inputs (context).
    assert labelled.sum() == 20 * 3 + 6 * 2 == info["examples"]
    old_end = 1_000_000 + 1000 * (N_USERS - 1) + STEPS - 1
    before = examples["timestamp"][labelled] <= old_end
    assert before.sum() == 2 * (N_USERS // 2)
    assert set(((examples["timestamp"][labelled][before] - 1_000_000) % 1000).tolist()) == {
        STEPS - 2, STEPS - 1}
    assert (examples["watch_history"] > 0).sum(axis=1).max() >= STEPS
    assert np.all(examples["example_age"][~labelled] == 0)
