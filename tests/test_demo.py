"""`keras_yt.demo.run_demo` on MovieLens-100K: the order-aware tower, end to end.

(The synthetic demo, the paper's bag tower with search queries and demographics, is run through
the command line in tests/test_cli.py.)
"""

import contextlib
import io
import json

import numpy as np

from keras_yt.demo import run_demo


def test_movielens_demo_trains_the_sequential_preset_and_serves_its_latest_watches(
    tmp_path, movielens_dir
):
    from keras_yt.datasets import movielens
    from keras_yt.run_folder import RunFolder
    from keras_yt.serving import Recommender

    out = tmp_path / "ml"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        metrics = run_demo("ml-100k", out=out, size="tiny", epochs=2, data_dir=str(movielens_dir),
                           ranker=False)
    assert "movielens_sequential: causal self-attention over the last 20 watches" in \
        printed.getvalue()
    assert metrics["history_encoder"] == "attention"
    assert json.loads((out / "metrics.json").read_text())["history_encoder"] == "attention"
    candidate = metrics["candidate_generator"]
    assert candidate["num_test_users"] == 943
    assert candidate["model"]["recall@100"] > candidate["popularity"]["recall@100"], candidate

    run = RunFolder(out)
    model = run.load_model()
    assert model.history_encoder == "attention" and model.max_history == 20  # the tiny width

    # One user, from the MovieLens file itself: the stored history is their last 20 ratings,
    # oldest first (ties in time keep the file's order), and the recommendation is the top 10
    # of u.W_j over the movies they did not rate, u the tower's state after the last one.
    ratings = movielens.load_data("ml-100k", data_dir=str(movielens_dir)).watches
    user = 13
    mine = ratings[ratings["user"] == user]
    mine = mine[np.argsort(mine["timestamp"], kind="stable")]
    latest = run.latest_features(run.user_rows([user]))["watch_history"][0]
    np.testing.assert_array_equal(run.videos.raw_ids(latest), mine["video"][-20:])
    # The held-out last rating reads the 20 before it, the one in its own second included.
    assert mine["timestamp"][-1] == mine["timestamp"][-2]
    test = run.test_examples()
    row = int(np.flatnonzero(test["user"] == run.user_rows([user])[0])[0])
    np.testing.assert_array_equal(run.videos.raw_ids(test["watch_history"][row]),
                                  mine["video"][-21:-1])
    assert run.videos.raw_ids([test["label"][row]])[0] == mine["video"][-1]
    user_vector = model.predict({"watch_history": latest[None]}, verbose=0)[0]
    table, _ = model.get_output_embeddings()  # tied to the history table, no output bias
    scores = table @ user_vector
    scores[0] = -np.inf
    scores[run.videos.lookup(mine["video"])] = -np.inf
    expected = run.videos.raw_ids(np.argsort(-scores, kind="stable")[:10])
    served = Recommender(out, warm=False).recommend(user=user, k=10)
    assert [int(item["id"]) for item in served] == [int(v) for v in expected]
