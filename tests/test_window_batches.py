"""WindowBatches: length-grouped batches of sequence windows cut to their longest window."""

import keras
import numpy as np

from keras_yt._window_batches import WindowBatches
from keras_yt.data import sequence_examples
from keras_yt.models import CandidateGenerator

NUM_VIDEOS, LENGTH = 30, 12


def windows(users=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(u, rng.integers(1, NUM_VIDEOS), t) for u in range(1, users + 1)
            for t in range(rng.integers(2, LENGTH + 2))]
    log = {"user": [r[0] for r in rows], "video": [r[1] for r in rows],
           "timestamp": [float(r[2]) * 86400 for r in rows]}
    ex = sequence_examples(log, max_history=LENGTH, max_windows_per_user=None)
    ex["gender"] = (ex["user"] % 3).astype("int32")
    return ex


def features(ex):
    return {k: ex[k] for k in ("watch_history", "example_age", "gender")}


def test_every_window_once_per_epoch_cut_only_where_it_is_padding():
    ex = windows()
    data = WindowBatches(features(ex), ex["label"], batch_size=8, seed=3, width_step=2)
    lengths = (ex["watch_history"] > 0).sum(1)
    epochs = []
    for _ in range(2):
        seen, sizes, widths = [], [], []
        for i in range(len(data)):
            x, y = data[i]
            rows = np.sort(data.batches[i])
            width = y.shape[1]
            assert width == min(LENGTH, 2 * -(-lengths[rows].max() // 2))  # longest, rounded up
            # What was cut is padding; what is kept is the original's last columns.
            assert not ex["watch_history"][rows, :-width].any()
            assert not ex["label"][rows, :-width].any()
            np.testing.assert_array_equal(x["watch_history"], ex["watch_history"][rows, -width:])
            np.testing.assert_array_equal(x["example_age"], ex["example_age"][rows, -width:])
            np.testing.assert_array_equal(y, ex["label"][rows, -width:])
            np.testing.assert_array_equal(x["gender"], ex["gender"][rows])
            seen.extend(rows.tolist())
            sizes.append(len(rows)), widths.append(width)
        assert sorted(seen) == list(range(len(ex["label"])))
        # Keras reads the input signature from the first two batches: they span every shape.
        assert widths[0] == max(widths) and widths[1] == min(widths)
        assert sizes[0] == max(sizes) and sizes[1] == min(sizes)
        epochs.append([b.tolist() for b in data.batches])
        data.on_epoch_end()
    assert epochs[0] != epochs[1]  # reshuffled
    assert max(widths) > min(widths)  # the test data has several widths


def test_a_cut_batch_has_the_loss_of_the_full_width_batch():
    ex = windows()
    model = CandidateGenerator(num_videos=NUM_VIDEOS, video_embedding_dim=8, max_history=LENGTH,
                               history_encoder="attention", hidden_units=(8,), num_sampled=None,
                               categorical_features={"gender": {"input_dim": 3, "output_dim": 2}},
                               seed=0)
    model.build()
    data = WindowBatches(features(ex), ex["label"], batch_size=8, seed=0, width_step=2)
    for i in range(3):  # the widest, the shortest and one more
        x, y = data[i]
        rows = np.sort(data.batches[i])
        assert y.shape[1] < LENGTH or i == 0
        full = {k: v[rows] for k, v in features(ex).items()}
        u_cut = model.user_vector(x, all_positions=True)
        u_full = model.user_vector(full, all_positions=True)
        cut = model.compute_loss(x, y, u_cut, training=False)
        whole = model.compute_loss(full, ex["label"][rows], u_full, training=False)
        np.testing.assert_allclose(float(cut), float(whole), rtol=1e-5)


def test_fit_takes_batches_of_every_width():
    from keras_yt.optimizers import SparseAdam

    ex = windows(seed=1)
    model = CandidateGenerator(num_videos=NUM_VIDEOS, video_embedding_dim=8, max_history=LENGTH,
                               history_encoder="attention", hidden_units=(8,), num_sampled=None,
                               categorical_features={"gender": {"input_dim": 3, "output_dim": 2}},
                               seed=0)
    model.compile(optimizer=SparseAdam(0.01))
    data = WindowBatches(features(ex), ex["label"], batch_size=8, seed=0, width_step=4)
    widths = {data[i][1].shape[1] for i in range(len(data))}
    assert widths == {4, 8, 12}
    history = model.fit(data, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert keras.ops.convert_to_numpy(model.predict(features(ex), verbose=0)).shape[1] == 8
