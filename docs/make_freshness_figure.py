"""Draws docs/figures/example_age.png: the paper's figure 4 on the synthetic simulator.

    python docs/make_freshness_figure.py            # measures and plots (a few minutes on 2 cores)
    python docs/make_freshness_figure.py --replot   # redraw from docs/figures/example_age.json

Covington et al. (2016), figure 4: trained without the example age, a candidate generator gives a
freshly uploaded video about its probability averaged over the training window (the baseline is
flat in the video's age); trained with it (and served with the age at 0, "the end of the
window"), it follows the empirical, recent distribution. Here the simulator
(`keras_yt.datasets.synthetic.watch_logs`: users prefer videos uploaded in the last days) makes
the log, two `CandidateGenerator`s differ only in `use_example_age`, and at the end of the window
every user's predicted probability is summed per bin of the videos' upload age
(`keras_yt.evaluation.upload_age.probability_by_upload_age`). The empirical curve is the share of
the watches of the window's last `RECENT_DAYS` days per age of the watched video at the watch
(`watches_by_upload_age`). The numbers are written to `example_age.json` next to the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

FIGURES = Path(__file__).resolve().parent / "figures"
RECENT_DAYS = 3.0
BIN_DAYS = 2.0
MAX_DAYS = 40.0


def measure(num_users: int = 3000, num_videos: int = 2000, days: float = 40.0,
            epochs: int = 6, seed: int = 0, max_history: int = 30) -> dict:
    """Trains the two models on one simulated log; returns the three curves per age bin."""
    import keras

    from keras_yt import pipeline
    from keras_yt.data import candidate_examples
    from keras_yt.datasets.synthetic import SECONDS_PER_DAY, watch_logs
    from keras_yt.evaluation.upload_age import probability_by_upload_age, watches_by_upload_age
    from keras_yt.models import CandidateGenerator
    from keras_yt.training import fit_candidate_generator

    logs = watch_logs(num_users=num_users, num_videos=num_videos, days=days, seed=seed,
                      query_probability=0.0, impression_probability=0.0)
    end = logs.window_end
    upload = np.concatenate([[end], logs.videos["upload_time"]])  # row = video id
    examples = candidate_examples(logs.watches, max_history=max_history,
                                  max_examples_per_user=None, example_age_reference=end)
    features = pipeline.latest_features(logs.watches, num_users + 1, max_history)
    features = {"watch_history": features["watch_history"][1:]}
    bins = np.arange(0.0, min(MAX_DAYS, days) + BIN_DAYS / 2, BIN_DAYS)
    ages = (end - upload) / SECONDS_PER_DAY
    recent = logs.watches[logs.watches["timestamp"] >= end - RECENT_DAYS * SECONDS_PER_DAY]
    out = {"bins_days": bins.tolist(), "num_watches": int(len(logs.watches)),
           "num_examples": int(len(examples["label"])),
           "empirical": watches_by_upload_age(recent["timestamp"], upload[recent["video"]],
                                              bins).tolist()}
    for name, use_age in (("with_example_age", True), ("without_example_age", False)):
        keras.utils.set_random_seed(seed)
        model = CandidateGenerator(num_videos=logs.num_videos, video_embedding_dim=32,
                                   max_history=max_history, hidden_units=(128, 64),
                                   use_example_age=use_age, example_age_scale=days,
                                   num_sampled=None, seed=seed)
        fit_candidate_generator(model, examples, epochs=epochs, verbose=0)
        scores = model.video_scores(features)
        out[name] = probability_by_upload_age(scores, ages, bins).tolist()
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.asarray(result["bins_days"])
    centers = (bins[:-1] + bins[1:]) / 2
    fig, ax = plt.subplots(figsize=(6, 3.6))
    styles = {"empirical": ("empirical (watches of the last days)", "0.2", "-"),
              "with_example_age": ("with example age", "tab:blue", "-"),
              "without_example_age": ("without example age (baseline)", "tab:orange", "--")}
    for key, (label, color, line) in styles.items():
        ax.plot(centers, result[key], line, color=color, marker="o", markersize=3, label=label)
    ax.set_xlabel("days since upload (at the end of the window)")
    ax.set_ylabel("probability mass per 2-day bin")
    ax.set_title("Example age and fresh videos (Covington et al. 2016, fig. 4)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--replot", action="store_true")
    args = parser.parse_args()
    FIGURES.mkdir(exist_ok=True)
    data = FIGURES / "example_age.json"
    if args.replot:
        result = json.loads(data.read_text())
    else:
        result = measure()
        result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "loadavg": os.getloadavg()}
        data.write_text(json.dumps(result, indent=1))
    plot(result, FIGURES / "example_age.png")
    print(f"wrote {FIGURES / 'example_age.png'}")


if __name__ == "__main__":
    main()
