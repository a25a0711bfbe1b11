import keras
import numpy as np
import pytest

from keras_yt.models import CandidateGenerator
from keras_yt.training import default_batch_size, fit_candidate_generator


def _examples(n, seed):
    # Next watch = previous watch + 1: learnable from the history alone.
    rng = np.random.default_rng(seed)
    last = rng.integers(1, 30, n)
    history = np.stack([np.maximum(last - 2, 0), np.maximum(last - 1, 0), last], axis=1)
    return {"watch_history": history.astype("int32"), "label": (last + 1).astype("int32")}


def test_early_stopping_restores_the_best_validation_weights():
    keras.utils.set_random_seed(0)
    model = CandidateGenerator(num_videos=32, video_embedding_dim=8, max_history=3,
                               hidden_units=(16,), use_example_age=False, seed=0)
    train, validation = _examples(512, 0), _examples(64, 1)
    # Labels shuffled in validation: its loss soon gets worse, so training must stop early.
    validation["label"] = np.random.default_rng(2).permutation(validation["label"])
    history = fit_candidate_generator(model, train, validation=validation, epochs=40,
                                      patience=2, verbose=0)
    assert len(history["loss"]) < 40
    assert history["best_epoch"] == int(np.argmin(history["val_loss"])) + 1
    restored = model.evaluate({"watch_history": validation["watch_history"]},
                              validation["label"], verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(min(history["val_loss"]), rel=1e-4)
    assert history["batch_size"] == default_batch_size(512) == 32


def test_without_validation_it_trains_every_epoch_and_learns():
    keras.utils.set_random_seed(0)
    model = CandidateGenerator(num_videos=32, video_embedding_dim=8, max_history=3,
                               hidden_units=(16,), use_example_age=False, seed=0)
    train = _examples(512, 0)
    history = fit_candidate_generator(model, train, epochs=15, verbose=0)
    assert len(history["loss"]) == 15 and history["loss"][-1] < history["loss"][0]
    ids, _ = model.recommend({"watch_history": train["watch_history"]}, k=1,
                             exclude_watched=False)
    # 29 equally likely labels: the most popular video is right 1 time in 29.
    assert np.mean(ids[:, 0] == train["label"]) > 0.3


def test_batch_size_scales_with_the_data():
    assert [default_batch_size(n) for n in (0, 5_000, 20_000, 50_000, 10**7)] == [
        32, 32, 64, 128, 256]


def test_bad_arguments():
    model = CandidateGenerator(num_videos=32, video_embedding_dim=4, max_history=3,
                               hidden_units=(8,), use_example_age=False)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        fit_candidate_generator(model, _examples(8, 0), epochs=0)
    with pytest.raises(ValueError, match="examples has no rows"):
        fit_candidate_generator(model, {"watch_history": np.zeros((0, 3), "int32"),
                                        "label": np.zeros(0, "int32")})
    with pytest.raises(ValueError, match=r"lack the feature\(s\) \['watch_history'\]"):
        fit_candidate_generator(model, {"label": np.ones(4, "int32")})
    with pytest.raises(ValueError, match="group_by_length must be a bool, got 'yes'"):
        fit_candidate_generator(model, _examples(8, 0), group_by_length="yes")
    with pytest.raises(ValueError, match="group_by_length=True needs sequence windows"):
        fit_candidate_generator(model, _examples(8, 0), group_by_length=True)


def test_sequence_windows_train_an_attention_model_on_every_position():
    from keras_yt.data import sequence_examples
    from keras_yt.evaluation import LeaveLastOut
    from keras_yt.training import DEFAULT_SEQUENCE_BATCH_SIZE, DEFAULT_SEQUENCE_LEARNING_RATE

    # Each user walks 1 -> 2 -> ... -> 11 -> 1 from a random start, for 4 to 9 watches: the next
    # watch is learnable from the order, and windows have several lengths.
    rng = np.random.default_rng(0)
    users, videos, times = [], [], []
    for user in range(1, 81):
        start = rng.integers(0, 11)
        for t in range(rng.integers(4, 10)):
            users.append(user), videos.append((start + t) % 11 + 1), times.append(float(t))
    log = {"user": np.array(users), "video": np.array(videos), "timestamp": np.array(times)}
    split = LeaveLastOut(log, max_history=6, num_items=12)
    examples = sequence_examples(split.fit_watches, max_history=6)
    assert examples["label"].shape == (80, 6)  # one window per user

    def model():
        return CandidateGenerator(num_videos=12, video_embedding_dim=8, max_history=6,
                                  history_encoder="attention", hidden_units=(8,),
                                  tie_output_embeddings=True, user_vector_activation="linear")

    # The sequence recipe's defaults: batches of 32 windows, SparseAdam(2e-3).
    trained = model()
    history = fit_candidate_generator(trained, examples, validation=split.validation, epochs=1,
                                      verbose=0)
    assert history["batch_size"] == DEFAULT_SEQUENCE_BATCH_SIZE == 32
    assert float(trained.optimizer.learning_rate) == pytest.approx(DEFAULT_SEQUENCE_LEARNING_RATE)
    # Length-grouped batches train on every position too: the order rule is learnt.
    from keras_yt.optimizers import SparseAdam

    trained = model()
    trained.compile(optimizer=SparseAdam(0.01))
    history = fit_candidate_generator(trained, examples, validation=split.validation, epochs=15,
                                      batch_size=8, verbose=0, group_by_length=True)
    assert len(history["val_loss"]) == 15
    assert history["val_loss"][-1] < 0.6 * history["val_loss"][0]
