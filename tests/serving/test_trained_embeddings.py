"""The PyNNDescent index on output embeddings of a model trained on real data (MovieLens-100K).

Trained softmax weights differ from synthetic ones: the user vectors are much longer than the
output embeddings and many scores are negative. Recall against exact search must still hold.
"""

import keras
import numpy as np
import pytest

from keras_yt import data as yt_data
from keras_yt import pipeline
from keras_yt.datasets import movielens
from keras_yt.models import CandidateGenerator
from keras_yt.serving import CandidateIndex, ExactIndex
from tests.serving.conftest import recall


@pytest.mark.slow  # trains on MovieLens-100K and builds two indexes: about a minute
def test_recall_on_embeddings_trained_on_movielens(movielens_dir):
    keras.utils.set_random_seed(0)
    ml = movielens.load_data("ml-100k", data_dir=str(movielens_dir))
    vocabulary = pipeline.build_vocabulary(ml.watches)
    watches = pipeline.remap_watches(ml.watches, vocabulary)
    train_log, test = yt_data.leave_last_out_split(watches, max_history=20)
    examples = yt_data.candidate_examples(train_log, max_history=20)
    model = CandidateGenerator(
        num_videos=vocabulary.size, video_embedding_dim=32, max_history=20,
        hidden_units=(64, 32), num_sampled=100, example_age_scale=30.0, seed=0,
    )
    model.compile()
    model.fit({"watch_history": examples["watch_history"], "example_age": examples["example_age"]},
              examples["label"], batch_size=512, epochs=3, verbose=0)

    user_vectors = model.predict({"watch_history": test["watch_history"]}, verbose=0)
    W, b = model.get_output_embeddings()
    ratio = np.median(np.linalg.norm(user_vectors, axis=1)) / np.median(np.linalg.norm(W, axis=1))
    assert not 0.5 < ratio < 2  # the regime where an unscaled query misleads the graph search
    exact = ExactIndex.from_model(model)
    index = CandidateIndex.from_model(model, random_state=0, exhaustive_below=0)
    for exclude in (None, test["watch_history"]):
        ref, _ = exact.query(user_vectors, k=100, exclude=exclude)
        ids, scores = index.query(user_vectors, k=100, exclude=exclude)
        assert recall(ids, ref, 10) >= 0.95 and recall(ids, ref, 100) >= 0.95
        np.testing.assert_allclose(
            scores[:, 0], np.einsum("nd,nd->n", W[ids[:, 0]], user_vectors) + b[ids[:, 0]],
            rtol=1e-4, atol=1e-4,
        )
