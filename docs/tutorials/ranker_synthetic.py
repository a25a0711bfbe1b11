"""Tutorial: the ranker on the synthetic impressions (docs/tutorials/ranker-synthetic.md).

    python docs/tutorials/ranker_synthetic.py [--epochs 4]

Prints every number quoted in the tutorial. About a minute on 2 CPU cores; no download.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_yt import metrics  # noqa: E402
from keras_yt.data import ranking_examples  # noqa: E402
from keras_yt.datasets import synthetic  # noqa: E402
from keras_yt.models import Ranker  # noqa: E402


def main(epochs: int = 4, seed: int = 0) -> dict:
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)

    # 1. Logs: the simulator's impressions (slates of 10, one clicked) and watches.
    logs = synthetic.watch_logs(num_users=2000, num_videos=5000, seed=seed)
    imp = logs.impressions
    print(f"{len(imp):,} impressions, click rate {imp['clicked'].mean():.3f}, mean watch time "
          f"of a click {imp['watch_time'][imp['clicked'] == 1].mean():.0f} s")

    # 2. Examples: causal features (history, time since last watch, previous impressions);
    #    the target is the watch time, 0 for impressions that were not clicked.
    ex = ranking_examples(imp, watches=logs.watches, max_history=50)
    ex["video_id"] = ex["video"]
    ex["previous_impressions"] = ex["previous_impressions"].astype("float32")
    train = ex["timestamp"] < 0.8 * logs.window_end  # first 48 of 60 days; test on the rest
    print(f"{train.sum():,} training and {(~train).sum():,} test impressions")

    # 3. The ranker of figure 7: shared video embedding for the impression and the history,
    #    categorical embeddings, quantile-normalised continuous features (x, x^2, sqrt x).
    categorical = {"language": logs.num_languages, "user_language": logs.num_languages,
                   "category": logs.num_topics + 1, "device": logs.num_devices}
    ranker = Ranker(
        num_videos=logs.num_videos,
        video_embedding_dim=16,
        max_history=50,
        categorical_features={n: {"input_dim": v, "output_dim": 4}
                              for n, v in categorical.items()},
        continuous_features=["time_since_last_watch", "previous_impressions"],
        num_quantiles=100,
        hidden_units=(256, 128, 64),
        seed=seed,
    )
    names = list(ranker.feature_specs())
    x_train = {n: ex[n][train] for n in names}
    x_test = {n: ex[n][~train] for n in names}
    ranker.adapt(x_train)  # quantiles of the continuous features, from training data only
    ranker.compile()  # SparseAdagrad(0.05) + WeightedLogisticLoss
    history = ranker.fit(x_train, ex["watch_time"][train], batch_size=512, epochs=epochs,
                         verbose=0)
    losses = history.history["loss"]
    print(f"weighted logistic loss: epoch 1 {losses[0]:.2f} -> epoch {epochs} {losses[-1]:.2f}")

    # 4. Evaluate on the last 12 days: AUC of clicks and the paper's weighted per-user loss.
    predicted = ranker.predict(x_test, verbose=0, batch_size=4096)[:, 0]  # exp(logit)
    users, clicked = ex["user"][~train], ex["clicked"][~train]
    watch_time = ex["watch_time"][~train]
    clicks_per_video = np.bincount(ex["video"][train][ex["clicked"][train] == 1],
                                   minlength=logs.num_videos)
    scorers = {
        "ranker (exp(logit))": predicted,
        "popularity (train clicks)": clicks_per_video[ex["video"][~train]].astype("float64"),
        "random": np.random.default_rng(seed).uniform(size=len(predicted)),
    }
    result = {}
    for name, score in scorers.items():
        result[name] = {
            "auc": metrics.auc(clicked, score),
            "weighted_per_user_loss": metrics.weighted_per_user_loss(
                users, clicked, watch_time, score),
        }
        print(f"{name:>26}: AUC {result[name]['auc']:.3f}, weighted per-user loss "
              f"{result[name]['weighted_per_user_loss']:.3f}")

    # 5. exp(logit) against watch time: the odds approximate the expected watch time of an
    #    impression, E[T] / (1 - P) with P the click rate (section 4.2).
    p = clicked.mean()
    print(f"mean exp(logit) {predicted.mean():.1f} s; mean watch time per impression "
          f"{watch_time.mean():.1f} s; E[T] / (1 - P) = {watch_time.mean() / (1 - p):.1f} s")
    deciles = np.quantile(predicted, np.linspace(0, 1, 11))
    bucket = np.clip(np.searchsorted(deciles, predicted, side="right") - 1, 0, 9)
    print("decile of exp(logit): mean exp(logit) / mean watch time (s)")
    for d in range(10):
        rows = bucket == d
        print(f"  {d + 1:>2}: {predicted[rows].mean():7.1f} / {watch_time[rows].mean():7.1f}")
    result["mean_exp_logit"] = float(predicted.mean())
    result["mean_watch_time"] = float(watch_time.mean())
    print(f"total {time.perf_counter() - started:.0f} s")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(epochs=args.epochs, seed=args.seed)
