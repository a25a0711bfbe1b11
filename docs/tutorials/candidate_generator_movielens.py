"""Tutorial: a candidate generator on MovieLens-100K (candidate-generator-movielens.md).

    bash ../shared/data/get-movielens-100k      # once: lays the files out in ~/.keras/datasets
    python docs/tutorials/candidate_generator_movielens.py [--epochs 20]

Prints every number quoted in the tutorial. About a minute and a half on 2 CPU cores (the first
CandidateIndex of a process also compiles PyNNDescent's search).
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_yt import metrics  # noqa: E402
from keras_yt.data import candidate_examples, leave_last_out_split  # noqa: E402
from keras_yt.datasets import movielens  # noqa: E402
from keras_yt.models import CandidateGenerator  # noqa: E402
from keras_yt.serving import CandidateIndex, ExactIndex  # noqa: E402


def main(epochs: int = 20, seed: int = 0) -> dict:
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)

    # 1. Data: ratings as a watch log, each user's last rating held out.
    data = movielens.load_data()  # reads ~/.keras/datasets/ml-100k
    print(f"{len(data.watches):,} ratings, {data.num_users} users, {data.num_videos - 1} movies")
    train_log, test = leave_last_out_split(data.watches, max_history=50)

    # 2. Ids by decreasing popularity (id 1 = most rated in training): the log-uniform sampler
    #    of the preset draws small ids most often, so this makes its negatives popular movies.
    counts = np.bincount(train_log["video"], minlength=data.num_videos)
    by_popularity = np.argsort(-counts[1:], kind="stable") + 1  # original ids, most rated first
    new_id = np.zeros(data.num_videos, dtype=np.int64)
    new_id[by_popularity] = np.arange(1, data.num_videos)
    old_id = np.concatenate([[0], by_popularity])  # new id -> original MovieLens id
    train_log["video"] = new_id[train_log["video"]]
    test["watch_history"] = new_id[test["watch_history"]].astype("int32")  # 0 stays 0
    test["label"] = new_id[test["label"]].astype("int32")
    counts = counts[old_id]
    counts[0] = 0

    # 3. Training examples: the next rating from the ratings strictly before it (at most 50
    #    examples per user), plus the user features of the preset.
    examples = candidate_examples(train_log, max_history=50, max_examples_per_user=50)
    users = data.users[np.searchsorted(data.users["id"], examples["user"])]
    test_users = data.users[np.searchsorted(data.users["id"], test["user"])]
    for part, rows in ((examples, users), (test, test_users)):
        part["gender"] = rows["gender_id"].astype("int32")
        part["occupation"] = rows["occupation_id"].astype("int32")
        part["user_age"] = (rows["age"] / 100.0).astype("float32")
    print(f"{len(examples['label']):,} training examples, {len(test['label'])} test users")

    # 4. The model: the preset's 256-128-64 ReLU tower on top of the averaged history, example
    #    age, gender, occupation and age; a sampled softmax (200 negatives) over 1,683 ids.
    model = CandidateGenerator.from_preset("movielens_candidate", seed=seed)
    names = list(model.feature_specs())  # watch_history, example_age, gender, occupation, ...
    model.compile()  # SparseAdagrad(0.2); evaluate() reports full-softmax loss and Recall@10/100
    history = model.fit(
        {n: examples[n] for n in names}, examples["label"],
        batch_size=256, epochs=epochs, shuffle=True, verbose=0,
    )
    losses = history.history["loss"]
    print(f"sampled-softmax training loss: epoch 1 {losses[0]:.3f} -> epoch {epochs} "
          f"{losses[-1]:.3f}")

    # 5. Evaluate: rank every movie the user has not rated yet, for the held-out last rating.
    serving_names = [n for n in names if n != "example_age"]
    x_test = {n: test[n] for n in serving_names}
    u = model.user_model().predict(x_test, verbose=0)  # user vectors, shape (943, 64)
    seen = np.split(train_log["video"], np.flatnonzero(np.diff(train_log["user"])) + 1)
    exclude = [seen[i] for i in np.searchsorted(np.unique(train_log["user"]), test["user"])]
    exact = ExactIndex.from_model(model)
    ranked, _ = exact.query(u, k=100, exclude=exclude)
    popularity = np.asarray(counts, "float64")
    popular = metrics.rank_top_k(np.tile(popularity, (len(u), 1)), k=100, exclude=exclude)
    result = {}
    for name, ids in (("model", ranked), ("popularity", popular)):
        result[name] = {
            "recall@10": metrics.recall_at_k(ids, test["label"], 10),
            "recall@100": metrics.recall_at_k(ids, test["label"], 100),
            "map@10": metrics.map_at_k(ids, test["label"], 10),
        }
        print(f"{name:>10}: " + ", ".join(f"{k} {v:.3f}" for k, v in result[name].items()))

    # 6. Serve: an approximate index of the output embeddings [W_j, b_j], queried with u.
    start = time.perf_counter()
    index = CandidateIndex.from_model(model, random_state=seed)
    build = time.perf_counter() - start
    approx, scores = index.query(u, k=100, exclude=exclude)
    overlap = np.mean([len(set(a) & set(e)) / 100 for a, e in zip(approx, ranked)])
    print(f"CandidateIndex over {len(index)} movies (d = {index.dim}): built in {build:.1f} s, "
          f"recall@100 vs exact search {overlap:.3f}")

    # 7. Recommend for one user: top 5 from the index, with titles.
    titles = dict(zip(data.videos["id"].tolist(), data.videos["title"].tolist()))
    row = 0
    print(f"user {test['user'][row]}: last rated "
          f"{[titles[old_id[v]] for v in test['watch_history'][row][-3:]]}")
    print(f"  held-out next rating: {titles[old_id[test['label'][row]]]}")
    for video, score in zip(approx[row][:5], scores[row][:5]):
        print(f"  {score:6.2f}  {titles[old_id[video]]}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(epochs=args.epochs, seed=args.seed)
