"""Freshness: warm start on a grown log against training from scratch, on MovieLens-100K.

The log is cut in time: the *old* run is trained (`keras-yt train --preset movielens_candidate`: the
bag preset as the command line trains it) on the ratings of the first 90% of the timeline; then, on
the whole log, a *scratch* run is trained the same way and a *warm* run is started from the old one
(`keras_yt.warm_start.warm_start`, `keras-yt train --init-from`). Both are measured with
`keras_yt.evaluation.LeaveLastOut` on the whole log (each user's last rating held out, every movie
ranked, the user's training ratings removed): HR@10 and HR@50, the wall time of each (reading the
log to the written run folder), and how many movies first rated after the cut appear in the top-10 /
top-50 recommendations of the users (watched movies left out).

Targets (issue 23): warm HR@50 within 0.01 of scratch, warm wall time <= 0.6 x scratch, new
movies recommended > 0. The default is a smoke run for CI (1 seed, at most 2 epochs for every
run); `--full` is the measurement of docs/freshness.md (the recipe's early stopping, 3 seeds, and
the variants of the new rows' initialisation and of the optimizer state).

    python benchmarks/bench_freshness.py --out /tmp/freshness.json     # smoke
    python benchmarks/bench_freshness.py --full
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_SCRIPT = os.path.join(ROOT, "..", "shared", "data", "get-movielens-100k")
KS = (10, 50)
CUT = 0.9
VARIANTS = (("cowatched", "reset", 0.0), ("cowatched", "carry", 0.0), ("random", "carry", 0.0),
            ("mean", "carry", 0.0))  # (new_rows, optimizer_state, replay); the first: default


def _load_movielens(data_dir: str | None):
    from keras_yt.datasets import movielens

    try:
        return movielens.load_data(data_dir=data_dir)
    except FileNotFoundError:
        if data_dir is None and os.path.exists(SHARED_SCRIPT):
            subprocess.run(["bash", SHARED_SCRIPT], check=True, capture_output=True)
            return movielens.load_data()
        raise


def _write_csv(path: Path, watches: np.ndarray) -> None:
    rows = np.stack([watches["user"], watches["video"], watches["timestamp"].astype(np.int64)], 1)
    np.savetxt(path, rows, fmt="%d", delimiter=",", header="user,video,timestamp", comments="")


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def _evaluate(run_path: Path, all_watches: np.ndarray, old_videos: int | None) -> dict:
    """LeaveLastOut HR@k of a run on the whole log, and the new movies in its top-k lists."""
    from keras_yt.evaluation import LeaveLastOut
    from keras_yt.run_folder import RunFolder

    run = RunFolder(run_path)
    model = run.load_model()
    log = all_watches.copy()
    log["user"] = run.users.lookup(all_watches["user"])
    log["video"] = run.videos.lookup(all_watches["video"])
    split = LeaveLastOut(log, max_history=model.max_history, num_items=model.num_videos)
    test = {"watch_history": split.test["watch_history"]}
    result = split.evaluate(model.video_scores(test), ks=KS)["filtered"]
    out = {f"hr@{k}": result[f"hr@{k}"] for k in KS}
    # Recommendations for every user from the whole history, watched movies left out.
    rows = np.arange(1, run.users.size)
    scores = model.video_scores(run.latest_features(rows))
    scores[:, 0] = -np.inf
    for r, watched in enumerate(run.watched(rows)):
        scores[r, watched] = -np.inf
    # Movies first rated after the cut: the ones the old run did not know (by raw id).
    new_raw = set() if old_videos is None else set(
        np.asarray(all_watches["video"])[~np.isin(all_watches["video"], old_videos)].tolist())
    is_new = np.isin(run.videos.ids, list(new_raw)) if new_raw else np.zeros(len(run.videos),
                                                                              bool)
    for k in KS:
        top = np.argsort(-scores, axis=1)[:, :k]
        new_hits = is_new[top - 1]
        out[f"new_movies_in_top{k}"] = int(len(np.unique(top[new_hits])))
        out[f"users_with_new_in_top{k}"] = int(new_hits.any(axis=1).sum())
    out["new_movies"] = int(is_new.sum())
    return out


def run_seed(data, seed: int, epochs: int | None, variants, tmp: Path) -> dict:
    import keras

    from keras_yt.cli import main as cli
    from keras_yt.warm_start import warm_start

    watches = data.watches
    t0, t1 = float(watches["timestamp"].min()), float(watches["timestamp"].max())
    cut = t0 + CUT * (t1 - t0)
    old_log, all_log = tmp / "old.csv", tmp / "all.csv"
    _write_csv(old_log, watches[watches["timestamp"] <= cut])
    _write_csv(all_log, watches)
    epoch_args = ["--epochs", str(epochs)] if epochs else []
    common = ["--preset", "movielens_candidate", "--seed", str(seed), *epoch_args]
    result = {"seed": seed, "cut_timestamp": cut,
              "old_watches": int((watches["timestamp"] <= cut).sum()),
              "new_watches": int((watches["timestamp"] > cut).sum())}
    with _quiet():
        assert cli(["train", "--log", str(old_log), "--out", str(tmp / "old"), *common]) == 0
    old_videos = np.unique(watches["video"][watches["timestamp"] <= cut])
    keras.backend.clear_session()
    start = time.perf_counter()
    with _quiet():
        assert cli(["train", "--log", str(all_log), "--out", str(tmp / "scratch"), *common]) == 0
    result["scratch"] = {"seconds": time.perf_counter() - start,
                         **_evaluate(tmp / "scratch", watches, old_videos)}
    result["scratch"]["epochs"] = len(json.loads((tmp / "scratch/history.json").read_text())
                                      ["loss"])
    for new_rows, optimizer_state, replay in variants:
        name = f"warm_{new_rows}_{optimizer_state}" + (f"_replay{replay:g}" if replay else "")
        keras.backend.clear_session()
        start = time.perf_counter()
        with _quiet():
            info = warm_start(all_log, tmp / name, tmp / "old", epochs=epochs or 50,
                              new_rows=new_rows, optimizer_state=optimizer_state,
                              replay=replay, seed=seed)
        result[name] = {"seconds": time.perf_counter() - start,
                        **_evaluate(tmp / name, watches, old_videos),
                        "epochs": len(info["history"]["loss"]), "examples": info["examples"],
                        "new_users": info["new_users"]}
        result[name]["time_vs_scratch"] = result[name]["seconds"] / result["scratch"]["seconds"]
        result[name]["hr@50_minus_scratch"] = result[name]["hr@50"] - result["scratch"]["hr@50"]
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="3 seeds, early stopping, all variants")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    p.add_argument("--epochs", type=int, help="most epochs (default: the recipe's; smoke: 2)")
    p.add_argument("--replay", type=float, nargs="+", default=[],
                   help="also the default variant with these replay ratios (old examples per "
                        "new one)")
    p.add_argument("--default-only", action="store_true",
                   help="with --full: only the default variant (and --replay)")
    p.add_argument("--data-dir", help="folder holding u.data and u.user")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "freshness.json"))
    args = p.parse_args(argv)
    seeds = args.seeds or ((0, 1, 2) if args.full else (0,))
    epochs = args.epochs if args.epochs is not None else (None if args.full else 2)
    variants = VARIANTS if args.full and not args.default_only else VARIANTS[:1]
    variants = (*variants, *((*VARIANTS[0][:2], r) for r in args.replay if r > 0))
    data = _load_movielens(args.data_dir)
    results = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="bench_freshness_") as tmp:
            results.append(run_seed(data, seed, epochs, variants, Path(tmp)))
        print(json.dumps(results[-1], indent=1, sort_keys=True), flush=True)
    names = [k for k in results[0] if k == "scratch" or k.startswith("warm_")]
    summary = {}
    for name in names:
        keys = [k for k, v in results[0][name].items() if isinstance(v, (int, float))]
        summary[name] = {k: (float(np.mean([r[name][k] for r in results])),
                             float(np.std([r[name][k] for r in results]))) for k in keys}
    warm = summary["warm_{}_{}".format(*VARIANTS[0][:2])]
    targets = {
        "hr@50_within_0.01_of_scratch": warm["hr@50_minus_scratch"][0] >= -0.01,
        "time_at_most_0.6x_scratch": warm["time_vs_scratch"][0] <= 0.6,
        "new_movies_recommended": warm["new_movies_in_top50"][0] > 0,
    }
    print(f"\n{'run':<24} {'HR@10':>14} {'HR@50':>14} {'seconds':>10} {'new in top10/50':>16}")
    for name, s in summary.items():
        print(f"{name:<24} {s['hr@10'][0]:.4f}±{s['hr@10'][1]:.4f} "
              f"{s['hr@50'][0]:.4f}±{s['hr@50'][1]:.4f} {s['seconds'][0]:10.1f} "
              f"{s['new_movies_in_top10'][0]:7.1f}/{s['new_movies_in_top50'][0]:.1f}")
    print("targets:", targets)
    load = os.getloadavg()
    out = {"benchmark": "freshness", "full": args.full, "seeds": list(seeds), "epochs": epochs,
           "results": results, "summary": summary, "targets": targets,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "loadavg": load, "python": sys.version.split()[0]}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
