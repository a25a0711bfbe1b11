"""Tutorial: a candidate generator on MovieLens-100K (candidate-generator-movielens.md).

    bash ../shared/data/get-movielens-100k      # once: lays the files out in ~/.keras/datasets
    python docs/tutorials/candidate_generator_movielens.py

Prints every number quoted in the tutorial. About two minutes on 2 CPU cores (the first
CandidateIndex of a process also compiles PyNNDescent's search).
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_yt.data import candidate_examples  # noqa: E402
from keras_yt.datasets import movielens  # noqa: E402
from keras_yt.evaluation import LeaveLastOut, Popularity  # noqa: E402
from keras_yt.models import CandidateGenerator  # noqa: E402
from keras_yt.serving import CandidateIndex  # noqa: E402
from keras_yt.training import fit_candidate_generator  # noqa: E402


def main(seed: int = 0) -> dict:
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)

    # 1. Data: ratings as a watch log; each user's last rating is the test item, the last but
    #    one the validation item (early stopping); every movie is ranked for it.
    data = movielens.load_data()  # reads ~/.keras/datasets/ml-100k
    print(f"{len(data.watches):,} ratings, {data.num_users} users, {data.num_videos - 1} movies")
    split = LeaveLastOut(data.watches, max_history=50)

    # 2. Training examples: every rating is the label of one example whose inputs are the
    #    ratings strictly before it; plus the user features of the preset.
    examples = candidate_examples(split.fit_watches, max_history=50, max_examples_per_user=None)
    for part in (examples, split.validation, split.test):
        users = data.users[np.searchsorted(data.users["id"], part["user"])]
        part["gender"] = users["gender_id"].astype("int32")
        part["occupation"] = users["occupation_id"].astype("int32")
        part["user_age"] = (users["age"] / 100.0).astype("float32")
    print(f"{len(examples['label']):,} training examples, "
          f"{len(split.validation['label'])} validation and {len(split.test['label'])} test users")

    # 3. The model: averaged history (last 50) + recent history (last 5) + example age + user
    #    features -> ReLU tower 256 -> 64 = the user vector u -> softmax over the 1,683 ids.
    model = CandidateGenerator.from_preset("movielens_candidate", seed=seed)
    start = time.perf_counter()
    history = fit_candidate_generator(model, examples, validation=split.validation, verbose=0)
    print(f"trained {len(history['loss'])} epochs in {time.perf_counter() - start:.0f} s "
          f"(batch {history['batch_size']}); best validation loss "
          f"{min(history['val_loss']):.3f} at epoch {history['best_epoch']}")

    # 4. Evaluate: the rank of the held-out movie among all movies, against popularity.
    scores = model.video_scores(split.test)  # u·W_j + b_j for every movie j, shape (943, 1683)
    popularity = Popularity().fit(split.train_watches, split.num_items)
    result = {
        "model": split.evaluate(scores),
        "popularity": split.evaluate(popularity.score(split.test["user"])),
    }
    for name, r in result.items():
        print(f"{name:>10}: " + ", ".join(
            f"{k} {r['filtered'][k]:.3f}" for k in ("hr@10", "hr@50", "hr@100", "ndcg@10"))
            + f" (unfiltered hr@10 {r['unfiltered']['hr@10']:.3f})")

    # 5. Serve: an approximate index of the output embeddings [W_j, b_j], queried with u; the
    #    movies each user rated in training are excluded.
    u = model.user_model().predict({n: split.test[n] for n in model.user_model().input},
                                   verbose=0)
    start = time.perf_counter()
    index = CandidateIndex.from_model(model, random_state=seed)
    build = time.perf_counter() - start
    seen = split.seen()
    approx, approx_scores = index.query(u, k=100, exclude=seen)
    exact = np.argsort(-np.where(_mask(seen, split.num_items), -np.inf, scores), axis=1)[:, :100]
    overlap = np.mean([len(set(a) & set(e)) / 100 for a, e in zip(approx, exact)])
    how = "exhaustive search (a small corpus)" if index.exhaustive else "graph search"
    print(f"CandidateIndex over {len(index)} movies (d = {index.dim}), {how}: built in "
          f"{build:.1f} s, recall@100 vs exact search {overlap:.3f}")

    # 6. Recommend for one user: top 5 from the index, with titles.
    titles = dict(zip(data.videos["id"].tolist(), data.videos["title"].tolist()))
    row = 0
    print(f"user {split.test['user'][row]}: last rated "
          f"{[titles[v] for v in split.test['watch_history'][row][-3:]]}")
    print(f"  held-out next rating: {titles[split.test['label'][row]]}")
    for video, score in zip(approx[row][:5], approx_scores[row][:5]):
        print(f"  {score:6.2f}  {titles[video]}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return result


def _mask(seen: list, num_items: int) -> np.ndarray:
    """True where a user rated a movie in training, and on the padding column 0."""
    mask = np.zeros((len(seen), num_items), dtype=bool)
    for i, items in enumerate(seen):
        mask[i, items] = True
    mask[:, 0] = True
    return mask


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(seed=args.seed)
