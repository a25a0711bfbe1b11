"""ExampleShards: every training example exactly once per epoch, shuffled, from bounded memory;
tf.data and the numpy generator agree; per-pipeline shards partition the examples."""

import keras
import numpy as np
import pytest

from keras_yt.data import ExampleShards, prepare_examples
from tests.data.test_prepare import random_log, write_csv


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    path = write_csv(tmp / "log.csv", random_log(7, n=4000))
    prepare_examples(path, tmp / "ex", max_history=6, rows_per_shard=700)
    return ExampleShards(tmp / "ex")


def rows(x, y):
    return sorted(zip(map(tuple, np.asarray(x["watch_history"]).tolist()),
                      np.asarray(x["user"]).tolist(), np.asarray(y).tolist()))


def all_examples(shards):
    parts = list(shards.batches(10**6, ("watch_history", "user"), shuffle_buffer=1,
                                repeat=False))
    x = {k: np.concatenate([p[0][k] for p in parts]) for k in ("watch_history", "user")}
    return rows(x, np.concatenate([p[1] for p in parts]))


def test_each_epoch_yields_every_example_once_in_a_new_order(shards):
    expected = all_examples(shards)
    assert len(expected) == shards.num_examples and len(shards.train_files) > 3
    stream = shards.batches(128, ("watch_history", "user"), shuffle_buffer=500, seed=3)
    steps = shards.steps_per_epoch(128)
    epochs = []
    for _ in range(2):
        batches = [next(stream) for _ in range(steps)]
        assert all(len(b[1]) == 128 for b in batches[:-1])
        x = {k: np.concatenate([b[0][k] for b in batches]) for k in ("watch_history", "user")}
        y = np.concatenate([b[1] for b in batches])
        assert rows(x, y) == expected
        epochs.append(y)
    assert not np.array_equal(epochs[0], epochs[1])
    halves = [all_examples_shard(shards, i) for i in range(2)]
    assert sorted(halves[0] + halves[1]) == expected and halves[0] and halves[1]


def all_examples_shard(shards, index):
    parts = list(shards.batches(10**6, ("watch_history", "user"), repeat=False,
                                shard=(index, 2)))
    x = {k: np.concatenate([p[0][k] for p in parts]) for k in ("watch_history", "user")}
    return rows(x, np.concatenate([p[1] for p in parts]))


@pytest.mark.tf_only
def test_tf_dataset_yields_every_example_once(shards):
    import tensorflow as tf

    ds = shards.dataset(100, ("watch_history", "user", "example_age"), shuffle_buffer=300)
    assert int(ds.cardinality()) == shards.steps_per_epoch(100)
    batches = list(ds.as_numpy_iterator())
    x = {k: np.concatenate([b[0][k] for b in batches]) for k in ("watch_history", "user")}
    assert rows(x, np.concatenate([b[1] for b in batches])) == all_examples(shards)
    assert batches[0][0]["watch_history"].dtype == np.int32

    class Context:  # what tf.distribute gives each of 2 input pipelines
        num_input_pipelines, num_replicas_in_sync = 2, 2

        def __init__(self, i):
            self.input_pipeline_id = i

        def get_per_replica_batch_size(self, batch_size):
            return batch_size // 2

    parts = []
    for i in range(2):
        for x, y in shards.dataset(100, ("watch_history", "user"), input_context=Context(i)):
            assert len(y) <= 50
            parts.extend(rows({k: v.numpy() for k, v in x.items()}, y.numpy()))
    assert sorted(parts) == all_examples(shards)
    del tf


def test_streamed_fit_follows_the_recipe(shards):
    from keras_yt.models import CandidateGenerator
    from keras_yt.streaming import fit_candidate_generator_streaming

    keras.utils.set_random_seed(0)
    model = CandidateGenerator(num_videos=shards.videos.size, video_embedding_dim=8,
                               max_history=shards.max_history, hidden_units=(16,))
    validation = shards.held_out("validation")
    history = fit_candidate_generator_streaming(model, shards, validation, epochs=3, verbose=0)
    assert len(history["loss"]) == 3 and history["batch_size"] == 32
    assert history["loss"][-1] < history["loss"][0]
    assert history["best_epoch"] == int(np.argmin(history["val_loss"])) + 1
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        fit_candidate_generator_streaming(model, shards, epochs=0)


@pytest.mark.slow
@pytest.mark.tf_only
def test_streamed_fit_under_mirrored_strategy(shards):
    import tensorflow as tf

    from keras_yt.models import CandidateGenerator
    from keras_yt.streaming import fit_candidate_generator_streaming

    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices (tests/conftest.py)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    with strategy.scope():
        model = CandidateGenerator(num_videos=shards.videos.size, video_embedding_dim=8,
                                   max_history=shards.max_history, hidden_units=(16,))
        history = fit_candidate_generator_streaming(
            model, shards, shards.held_out("validation"), epochs=2, batch_size=64, verbose=0)
    assert len(history["loss"]) == 2 and np.isfinite(history["val_loss"]).all()


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    from keras_yt.data import prepare_sequences

    tmp = tmp_path_factory.mktemp("windows")
    path = write_csv(tmp / "log.csv", random_log(8, n=1500, users=40))
    prepare_sequences(path, tmp / "seq", max_history=8, rows_per_shard=20)
    return ExampleShards(tmp / "seq")


def window_rows(x, y):
    return sorted(zip(np.asarray(x["user"]).tolist(),
                      map(tuple, np.asarray(x["watch_history"]).tolist()),
                      map(tuple, np.asarray(y).tolist())))


@pytest.mark.tf_only
def test_tf_dataset_yields_every_sequence_window_once(windows):
    from keras_yt.data._prepared_folder import read_sequences

    ref = read_sequences(windows.path, 8)
    assert windows.sequences and windows.num_examples == len(ref["user"]) > 40
    ds = windows.dataset(16, ("watch_history", "user", "example_age"), shuffle_buffer=30)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == windows.steps_per_epoch(16) == -(-windows.num_examples // 16)
    x = {k: np.concatenate([b[0][k] for b in batches]) for k in ("watch_history", "user")}
    y = np.concatenate([b[1] for b in batches])
    assert window_rows(x, y) == window_rows(ref, ref["label"])
    assert y.shape[1:] == (8,) and batches[0][0]["example_age"].shape[1:] == (8,)
    assert batches[0][0]["watch_history"].dtype == np.int32


def test_streamed_sequence_fit_takes_the_in_memory_step(windows):
    """One epoch of one batch holding every window: the streamed fit and the in-memory
    `fit_candidate_generator` leave the same weights (row order within a batch aside)."""
    from keras_yt.data._prepared_folder import read_sequences
    from keras_yt.models import CandidateGenerator
    from keras_yt.streaming import fit_candidate_generator_streaming
    from keras_yt.training import fit_candidate_generator

    ref = read_sequences(windows.path, 8)
    streamed = CandidateGenerator(num_videos=windows.videos.size, video_embedding_dim=8,
                                  max_history=8, history_encoder="attention",
                                  encoder_dropout=0.0, hidden_units=(), output_bias=False,
                                  use_example_age=False, seed=5)
    in_memory = CandidateGenerator.from_config(streamed.get_config())
    for model in (streamed, in_memory):
        model({"watch_history": ref["watch_history"][:2]})  # built, then the same weights
    in_memory.set_weights(streamed.get_weights())
    initial = [keras.ops.convert_to_numpy(w) for w in streamed.weights]

    n = windows.num_examples
    history = fit_candidate_generator_streaming(streamed, windows, epochs=1, batch_size=n,
                                                verbose=0)
    assert history["batch_size"] == n and history["best_epoch"] == 1
    assert float(streamed.optimizer.learning_rate) == pytest.approx(2e-3)  # the sequence recipe
    fit_candidate_generator(in_memory, ref, epochs=1, batch_size=n, verbose=0)
    for a, b, before in zip(streamed.weights, in_memory.weights, initial):
        a = keras.ops.convert_to_numpy(a)
        np.testing.assert_allclose(a, keras.ops.convert_to_numpy(b), atol=1e-5, err_msg=b.path)
        if "output_embeddings" in b.path:  # Adam's first step moves a trained row by ~lr
            assert np.abs(a - before).max() > 1e-3


def test_a_model_that_does_not_train_on_the_folder_is_refused(shards, windows):
    from keras_yt.models import CandidateGenerator
    from keras_yt.streaming import fit_candidate_generator_streaming

    bag = CandidateGenerator(num_videos=windows.videos.size, video_embedding_dim=4,
                             max_history=8, hidden_units=(4,))
    with pytest.raises(ValueError, match="holds sequence windows.*prepare --sequences"):
        fit_candidate_generator_streaming(bag, windows, epochs=1)
    attention = CandidateGenerator(num_videos=shards.videos.size, video_embedding_dim=4,
                                   max_history=6, history_encoder="attention")
    with pytest.raises(ValueError, match="holds next-watch examples"):
        fit_candidate_generator_streaming(attention, shards, epochs=1)
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['history_length'\]"):
        next(windows.batches(4, ("watch_history", "history_length")))


def test_row_groups_are_read_a_slice_at_a_time(shards, windows, monkeypatch):
    """A row group of windows padded to 200 can hold gigabytes: the readers convert slices of
    rows (here 64), and the stream is still every row once."""
    from keras_yt.data import _prepared_folder
    from keras_yt.data import example_shards as module

    expected = all_examples(shards)
    expected_windows = sorted(map(tuple, _prepared_folder.read_sequences(
        windows.path, 8)["label"].tolist()))
    converted = []

    def recording(convert):
        def wrapper(table, *args):
            converted.append(table.num_rows)
            return convert(table, *args)
        return wrapper

    monkeypatch.setattr(module, "_SLICE_IDS", 1)  # slices of 64 rows (the floor)
    monkeypatch.setattr(module, "_to_numpy", recording(module._to_numpy))
    monkeypatch.setattr(_prepared_folder, "windows_to_numpy",
                        recording(_prepared_folder.windows_to_numpy))
    assert all_examples(shards) == expected
    assert max(converted) == 64 and sum(converted) == shards.num_examples
    converted.clear()
    labels = np.concatenate([y for _, y in windows.batches(16, ("watch_history",),
                                                            repeat=False)])
    assert sorted(map(tuple, labels.tolist())) == expected_windows
    assert max(converted) <= 64 and sum(converted) == windows.num_examples
