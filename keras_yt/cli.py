"""The `keras-yt` command line: the end-to-end demo and the same steps on your own watch log."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `keras-yt` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        args.run_command(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"keras-yt {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-yt",
        description="The YouTube two-stage recommender (Covington et al., 2016) in Keras.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="end-to-end demo on the embedded synthetic data")
    demo.add_argument("--dataset", choices=("synthetic", "ml-100k"), default="synthetic")
    demo.add_argument("--data-dir", help="folder holding the MovieLens files")
    demo.add_argument("--out", default="runs/demo",
                      help="run folder to write (default: %(default)s)")
    demo.add_argument("--size", choices=("tiny", "default"), default="default",
                      help="'tiny' is a seconds-long smoke run")
    demo.add_argument("--epochs", type=int, help="training epochs (default: by size)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run_command=_demo)

    train = commands.add_parser("train", help="train a candidate generator on a watch log")
    train.add_argument("--log", required=True,
                       help="CSV or Parquet with columns user,video,timestamp[,watch_time]")
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--preset", default="movielens_candidate",
                       help="model preset or JSON file (default: %(default)s)")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--max-history", type=int, default=50)
    train.add_argument("--max-examples-per-user", type=int, default=50)
    train.set_defaults(run_command=_train)

    evaluate = commands.add_parser("evaluate", help="Recall/MAP/NDCG@k vs popularity")
    evaluate.add_argument("--run", required=True)
    evaluate.set_defaults(run_command=_evaluate)

    export = commands.add_parser("export", help="SavedModel of the user tower")
    export.add_argument("--run", required=True)
    export.set_defaults(run_command=_export)

    index = commands.add_parser("index", help="PyNNDescent index of the output embeddings")
    index.add_argument("--run", required=True)
    index.set_defaults(run_command=_index)

    recommend = commands.add_parser("recommend", help="top-k videos for a user")
    recommend.add_argument("--run", required=True)
    recommend.add_argument("--user", required=True, type=int, action="append",
                           help="user id (repeat for several)")
    recommend.add_argument("--k", type=int, default=10)
    recommend.set_defaults(run_command=_recommend)

    warm_up = commands.add_parser(
        "warm-up", help="compile PyNNDescent's numba code once for this installation"
    )
    warm_up.set_defaults(run_command=_warm_up)
    return parser


def _step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.perf_counter()


def _done(start: float) -> None:
    print(f"    done in {time.perf_counter() - start:.1f} s", flush=True)


# ------------------------------------------------------------------ commands


def _demo(args) -> None:
    from keras_yt.demo import run_demo

    run_demo(
        dataset=args.dataset,
        out=Path(args.out),
        size=args.size,
        epochs=args.epochs,
        seed=args.seed,
        data_dir=args.data_dir,
    )


def _train(args) -> None:
    from keras_yt import data as yt_data
    from keras_yt import pipeline
    from keras_yt.models import CandidateGenerator

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = _step(f"reading {args.log}")
    watches = yt_data.read_watch_log(args.log)
    if len(watches) == 0:
        raise ValueError(f"the watch log {args.log!r} has no rows")
    vocabulary = pipeline.build_vocabulary(watches)
    watches = pipeline.remap_watches(watches, vocabulary)
    print(f"    {len(watches):,} watches, {len(np.unique(watches['user'])):,} users, "
          f"{len(vocabulary['videos']) - 1:,} videos")
    _done(start)

    start = _step("building training examples (next watch from the watches before it)")
    train_log, test = yt_data.leave_last_out_split(watches, max_history=args.max_history)
    examples = yt_data.candidate_examples(
        train_log, max_history=args.max_history,
        max_examples_per_user=args.max_examples_per_user, verbose=True,
    )
    if len(examples["label"]) == 0:
        raise ValueError("no training examples: every user needs at least 3 watches")
    vocabulary["counts"] = np.bincount(train_log["video"], minlength=len(vocabulary["videos"]))
    print(f"    {len(examples['label']):,} training examples, {len(test['label']):,} test users")
    _done(start)

    start = _step("training the candidate generator")
    num_videos = len(vocabulary["videos"])
    model = CandidateGenerator.from_preset(
        args.preset,
        num_videos=num_videos,
        max_history=args.max_history,
        categorical_features=None,
        continuous_features=None,
        search_num_bins=None,
        num_sampled=min(200, num_videos - 2),
    )
    history = pipeline.train_candidate_generator(model, examples, args.epochs, args.batch_size)
    _done(start)

    model.save(out / pipeline.MODEL_FILE)
    np.savez(out / "vocabulary.npz", **vocabulary)
    np.savez(out / "test.npz", **{k: test[k] for k in ("watch_history", "label", "user")})
    np.savez(out / "histories.npz", **pipeline.latest_histories(watches, args.max_history))
    pipeline.save_json(out / "history.json", history)
    print(f"\nwrote {out}/")


def _evaluate(args) -> None:
    from keras_yt import pipeline

    run = Path(args.run)
    model, vocabulary = pipeline.load_run(run)
    start = _step("evaluating on the held-out last watch of each user")
    test = dict(np.load(run / "test.npz", allow_pickle=False))
    metrics = pipeline.evaluate_candidate_generator(model, test, vocabulary["counts"])
    pipeline.save_json(run / "metrics.json", {"candidate_generator": metrics})
    for name in ("model", "popularity"):
        shown = {k: round(v, 4) for k, v in metrics[name].items() if k.startswith("recall")}
        print(f"    {name:>10}: {shown}")
    _done(start)


def _export(args) -> None:
    from keras_yt import pipeline
    from keras_yt.serving import export_saved_model

    run = Path(args.run)
    model, _ = pipeline.load_run(run)
    start = _step("exporting the user tower as a SavedModel")
    path = export_saved_model(model, run / "user_tower")
    print(f"    wrote {path}")
    _done(start)


def _index(args) -> None:
    from keras_yt import pipeline
    from keras_yt.serving import CandidateIndex

    run = Path(args.run)
    model, _ = pipeline.load_run(run)
    start = _step("building the PyNNDescent index of the output embeddings")
    index = CandidateIndex.from_model(model, verbose=True)
    index.save(run / "index.h5")
    print(f"    wrote {run / 'index.h5'}")
    _done(start)


def _recommend(args) -> None:
    from keras_yt import pipeline
    from keras_yt.serving import CandidateIndex, ExactIndex

    run = Path(args.run)
    model, vocabulary = pipeline.load_run(run)
    histories = dict(np.load(run / "histories.npz", allow_pickle=False))
    rows = []
    for user in args.user:
        match = np.flatnonzero(histories["user"] == user)
        if len(match) == 0:
            raise ValueError(
                f"unknown user {user}: the run's watch log has no watches for it "
                f"(user ids range {histories['user'].min()}..{histories['user'].max()})"
            )
        rows.append(match[0])
    history = histories["watch_history"][rows]
    user_tower = model.user_model()
    features = {name: histories[name][rows] for name in user_tower.input}
    user_vectors = user_tower.predict(features, verbose=0)
    if (run / "index.h5").is_file():
        index = CandidateIndex.load(run / "index.h5", model=model)
    else:
        print("    (no index.h5 in the run folder: brute-force search; see `keras-yt index`)")
        index = ExactIndex.from_model(model)
    ids, scores = index.query(user_vectors, k=args.k, exclude=history)
    titles = vocabulary.get("titles")
    for user, user_ids, user_scores in zip(args.user, ids, scores):
        print(f"\nuser {user}: top {args.k}")
        for rank, (video, score) in enumerate(zip(user_ids, user_scores), start=1):
            original = vocabulary["videos"][video]
            title = f"  {titles[video]}" if titles is not None else ""
            print(f"  {rank:>3}. video {original:<8} score {score:8.3f}{title}")


def _warm_up(args) -> None:
    from keras_yt.serving import warm_up

    start = _step("compiling PyNNDescent (numba) into the persistent cache")
    warm_up(verbose=True)
    _done(start)


if __name__ == "__main__":
    sys.exit(main())
