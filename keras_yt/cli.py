"""The `keras-yt` command line: the end-to-end demo and the same steps on your own watch log.

Importing this module loads neither TensorFlow nor Keras: each command loads what it needs
(quietly, see `keras_yt._quiet`), so `keras-yt --help` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from keras_yt._progress import done as _done
from keras_yt._progress import step as _step
from keras_yt._quiet import load_tensorflow, quiet_environment, show_progress

quiet_environment()

# `keras-yt train`'s model: the order-aware tower, the best on the quality benchmark
# (docs/quality.md), on a log or on sequence windows (`keras-yt prepare --sequences`); prepared
# next-watch examples (`keras-yt prepare`) train the bag.
DEFAULT_PRESET = "movielens_sequential"
EXAMPLES_PRESET = "movielens_candidate"
EXAMPLES_MAX_HISTORY = 50  # `keras-yt prepare`'s default width (--sequences: the preset's)

DISTRIBUTE_CHOICES = ("none", "mirrored", "data", "model")
# The Keras backend each --distribute choice runs on.
DISTRIBUTE_BACKENDS = {"mirrored": "tensorflow", "data": "jax", "model": "jax"}

LOG_HELP = (
    "CSV (header user,video,timestamp[,watch_time]) or Parquet (needs keras-yt[parquet]). Ids: "
    "the log's own, integers of any size (0 included) or strings. timestamp: Unix seconds "
    "(int/float) or ISO-8601 (2016-09-15T10:30:00Z; no zone = UTC)"
)

IMPRESSIONS_HELP = (
    "CSV (header user,video,timestamp,clicked,watch_time[,features...]) or Parquet. Ids, "
    "timestamps: as in a watch log; clicked 0/1; watch_time seconds, finite, >= 0 (0 when not "
    "clicked); extra columns are features (see --categorical)"
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `keras-yt` console script; returns the exit status.

    Errors are reported as one line on standard error, `keras-yt COMMAND: error: ...`, with exit
    status 2 (set `KERAS_YT_DEBUG=1` for the traceback).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "verbose", False):
        from keras_yt._quiet import verbose_environment

        verbose_environment()
    if argv is None:  # the console script: SIGTERM cleans up temporary files as Ctrl-C does
        from keras_yt._files import terminate_as_interrupt

        terminate_as_interrupt()
    try:
        args.run_command(args)
    except KeyboardInterrupt:
        print(f"keras-yt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure is one line, never a traceback
        if os.environ.get("KERAS_YT_DEBUG"):
            raise
        print(f"keras-yt {args.command}: error: {_message(error)}", file=sys.stderr)
        return 2
    return 0


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    else:
        text = str(error)
    text = " ".join(text.split())
    if not isinstance(error, (ValueError, FileNotFoundError, KeyError, ImportError)):
        text = f"{type(error).__name__}: {text}"
    return text or type(error).__name__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(t) for t in text.split(","))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"must be integers >= 1, comma separated, got {text!r}")
    return units


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (`keras-yt train: error: ...`), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keras-yt",
        description="The YouTube two-stage recommender (Covington et al., 2016) in Keras.",
        epilog="Errors: one line on standard error, exit status 2. Watch logs: " + LOG_HELP,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser("demo", help="end-to-end demo on the embedded synthetic data")
    demo.add_argument("--dataset", choices=("synthetic", "ml-100k"), default="synthetic")
    demo.add_argument("--data-dir", help="folder holding the MovieLens files")
    demo.add_argument("--out", default="runs/demo",
                      help="run folder to write (default: %(default)s)")
    demo.add_argument("--size", choices=("tiny", "default"), default="default",
                      help="'tiny' is a seconds-long smoke run")
    demo.add_argument("--epochs", type=_positive_int,
                      help="most training epochs (default: by size; early stopping decides)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run_command=_demo)

    train = commands.add_parser(
        "train", help="train a candidate generator on a watch log",
        description="Train a candidate generator on a watch log and write a run folder. The "
        "folder is staged and swapped in at the end: a failed or interrupted train leaves the "
        "previous run intact. Watch log: " + LOG_HELP,
    )
    train.add_argument("--log", help=LOG_HELP)
    train.add_argument("--examples", metavar="EXAMPLES",
                       help="train on a folder written by `keras-yt prepare [--sequences]` "
                            "instead of --log, streamed from disk (memory does not grow with "
                            "the log)")
    train.add_argument("--out", required=True, help="run folder to write (replaced if it is one)")
    train.add_argument("--preset",
                       help=f"model preset or JSON file (default: {DEFAULT_PRESET}, the "
                            "order-aware tower trained on every position of each user's "
                            f"sequence; with --examples, {DEFAULT_PRESET} on sequence windows "
                            f"(prepare --sequences), {EXAMPLES_PRESET} on next-watch examples)")
    train.add_argument("--epochs", type=_positive_int,
                       help="most epochs; training stops earlier when the loss on each user's "
                            "last-but-one watch stops improving (default: 50; 200 for an "
                            "attention preset, which trains on sequence windows)")
    train.add_argument("--batch-size", type=_positive_int,
                       help="default: scaled to the number of examples (32 to 256); with "
                            "--init-from, a full run's on the grown log")
    train.add_argument("--max-history", type=_positive_int,
                       help="watches per history (default: the preset's max_history)")
    train.add_argument("--max-examples-per-user", type=_positive_int,
                       help="cap on training examples per user (default: every next watch)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--distribute", choices=DISTRIBUTE_CHOICES, default="none",
        help="none (default): one device; mirrored: tf.distribute.MirroredStrategy over this "
        "host's devices (TensorFlow backend); data: keras.distribution.DataParallel; model: "
        "keras.distribution.ModelParallel, video tables row-sharded (data and model need "
        "KERAS_BACKEND=jax). See docs/distributed.md",
    )
    train.add_argument(
        "--model-parallel", type=_positive_int, metavar="M",
        help="with --distribute model: devices that share each video table (default: all); "
        "the other axis of the device mesh splits the batch",
    )
    train.add_argument(
        "--init-from", metavar="OLD_RUN",
        help="warm start from an earlier run on a grown log: its videos and users keep their "
        "ids, new ones are appended, its weights and optimizer state are carried over, and "
        "training is on the watches after its last one (its preset and --max-history are "
        "used; OLD_RUN is only read). See docs/freshness.md",
    )
    train.add_argument("--new-rows", choices=("cowatched", "mean", "random"),
                       default="cowatched",
                       help="with --init-from: how new videos' rows start (default: "
                            "%(default)s, the mean of the known videos watched next to them)")
    train.add_argument("--optimizer-state", choices=("reset", "carry"), default="reset",
                       help="with --init-from: a fresh optimizer (default) or the old run's "
                            "Adam moments and step, carried over")
    train.add_argument("--replay", type=float, default=0.0, metavar="R",
                       help="with --init-from: also train on a sample of R old examples per new "
                            "one (default: %(default)s, the new examples only)")
    train.add_argument("--learning-rate-scale", type=float, default=1.0, metavar="S",
                       help="with --init-from: the warm epochs' learning rate, S times the old "
                            "run's (default: %(default)s)")
    train.set_defaults(run_command=_train)

    prepare = commands.add_parser(
        "prepare", help="watch log -> Parquet shards of training examples (DuckDB or Spark)",
        description="Build the training examples of a watch log of any size out of core, "
        "with DuckDB (default) or Spark, into Parquet shards for `keras-yt train --examples`. "
        "The folder is staged and renamed at the end. See docs/large-logs.md. Watch log: "
        + LOG_HELP + "; a folder of shards or a glob (quoted) also works",
    )
    prepare.add_argument("--log", required=True, help="CSV / Parquet file, folder or glob")
    prepare.add_argument("--out", required=True, help="examples folder to write")
    prepare.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    prepare.add_argument("--sequences", action="store_true",
                         help=f"per-user sequence windows for the order-aware tower (the "
                              f"default model of train, {DEFAULT_PRESET}) instead of the bag's "
                              "next-watch examples")
    prepare.add_argument("--max-history", type=_positive_int,
                         help=f"history width (default: {EXAMPLES_MAX_HISTORY}; with "
                              f"--sequences, {DEFAULT_PRESET}'s window)")
    prepare.add_argument("--max-examples-per-user", type=_positive_int,
                         help="cap on training examples per user (default: every next watch; "
                              "not with --sequences)")
    prepare.add_argument("--memory-limit", default="1GB",
                         help="DuckDB memory limit; it spills to disk beyond (default: "
                              "%(default)s)")
    prepare.add_argument("--temp-dir", help="spill folder (default: inside the output's "
                                            "staging folder)")
    prepare.add_argument("--threads", type=_positive_int, help="DuckDB threads (default: all)")
    prepare.set_defaults(run_command=_prepare)

    ranker = commands.add_parser(
        "train-ranker", help="train a ranker on an impressions log (AUC, weighted per-user loss)",
        description="Train the ranker (paper's section 4: weighted logistic regression on watch "
        "time) on an impressions log, evaluate it on the latest impressions held out by time "
        "and write a folder: ranker.keras, videos.h5 (raw video id -> model id), "
        "vocabularies/NAME.h5 for categorical features, ranker.json (inputs, split, metrics). "
        "The folder is staged and renamed at the end. Impressions log: " + IMPRESSIONS_HELP,
    )
    ranker.add_argument("--log", required=True, help=IMPRESSIONS_HELP)
    ranker.add_argument("--out", required=True, help="folder to write (replaced if it is one "
                                                     "written by train-ranker)")
    ranker.add_argument("--categorical", action="append", default=[], metavar="NAMES",
                        help="feature columns holding ids (comma separated, repeatable); every "
                             "other extra column is a continuous feature")
    ranker.add_argument("--epochs", type=_positive_int, default=5,
                        help="default: %(default)s")
    ranker.add_argument("--batch-size", type=_positive_int, default=512,
                        help="default: %(default)s")
    ranker.add_argument("--max-history", type=_positive_int, default=50,
                        help="clicked videos per watch_history (default: %(default)s)")
    ranker.add_argument("--embedding-dim", type=_positive_int, default=32,
                        help="width of the video and feature embeddings (default: %(default)s)")
    ranker.add_argument("--hidden-units", type=_units, default=(256, 128, 64),
                        help="widths of the ReLU tower, comma separated (default: 256,128,64)")
    ranker.add_argument("--test-fraction", type=_fraction, default=0.2,
                        help="latest share of the impressions held out for AUC and the weighted "
                             "per-user loss (default: %(default)s)")
    ranker.add_argument("--seed", type=int, default=0)
    ranker.set_defaults(run_command=_train_ranker)

    run_help = "run folder written by keras-yt train or keras-yt demo"
    evaluate = commands.add_parser(
        "evaluate", help="Recall/MAP/NDCG@k vs popularity",
        description="Ranks every video for each test user (the last watch of each user, held "
        "out by train) and reports Recall@10/50/100, MAP and NDCG@10 of the model and of the "
        "popularity baseline; the videos each user watched in training are left out. Prints "
        "the figures and writes them to RUN/metrics.json.",
    )
    evaluate.add_argument("--run", required=True, help=run_help)
    evaluate.set_defaults(run_command=_evaluate)

    export = commands.add_parser(
        "export", help="SavedModel of the user tower (takes raw video ids)",
        description="Writes RUN/user_tower, a TensorFlow SavedModel of the user tower for "
        "TensorFlow Serving or tf.saved_model.load: input watch_history, the raw video ids of "
        "the log, oldest first, padded with -1 (integer ids) or \"\" (string ids); output the "
        "user vector u. Replaces an earlier export atomically.",
    )
    export.add_argument("--run", required=True, help=run_help)
    export.set_defaults(run_command=_export)

    index = commands.add_parser(
        "index", help="PyNNDescent index of the output embeddings",
        description="Builds RUN/index.h5, an approximate nearest-neighbour index (PyNNDescent, "
        "inner product u·W_j + b_j) of the model's output embeddings, used by serve (--search "
        "index, or auto above 200,000 videos) and recommend --search index. The file is "
        "checksummed and "
        "replaced atomically: a failed write (full disk) keeps the previous index.",
    )
    index.add_argument("--run", required=True, help=run_help)
    index.set_defaults(run_command=_index)

    recommend = commands.add_parser(
        "recommend", help="top-k videos for a user (raw ids)",
        description="Top-k videos for users of the run, by raw user id; prints raw video ids. "
        "Every video the user watched is left out (--keep-watched keeps them); fewer than k are "
        "printed when fewer are eligible.",
    )
    recommend.add_argument("--run", required=True)
    recommend.add_argument("--user", required=True, action="append",
                           help="raw user id, as in the watch log (repeat for several)")
    recommend.add_argument("--k", type=_positive_int, default=10)
    recommend.add_argument("--keep-watched", action="store_true",
                           help="do not leave out the videos the user watched")
    recommend.add_argument(
        "--search", choices=("auto", "exact", "index"), default="auto",
        help="exact: brute force; index: the run's index.h5 (PyNNDescent); auto (default): "
        "exact, W read from the run's files a block at a time (for a one-off query it is faster "
        "than loading W, or loading and compiling the index)",
    )
    recommend.set_defaults(run_command=_recommend)

    serve = commands.add_parser(
        "serve", help="HTTP recommendation service (needs keras-yt[serve])",
        description="POST /recommend {\"user\": ID, \"k\": 10} or {\"watch_history\": [IDS], "
        "\"k\": 10, \"exclude\": [IDS]}; GET /health. See docs/serving.md.",
    )
    serve.add_argument("--run", required=True)
    serve.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    serve.add_argument("--port", type=_port, default=8000, help="default: %(default)s")
    serve.add_argument("--search", choices=("auto", "exact", "index"), default="auto")
    serve.set_defaults(run_command=_serve)

    warm_up = commands.add_parser(
        "warm-up", help="fill numba's on-disk cache for PyNNDescent (see README: what it caches)",
        description="Compiles PyNNDescent's cacheable numba functions once into numba's on-disk "
        "cache (NUMBA_CACHE_DIR, default $KERAS_HOME/keras_yt/numba_cache), so that the first "
        "keras-yt index, recommend --search index or serve of a session starts faster. Run it "
        "once after installing; it needs no run folder.",
    )
    warm_up.set_defaults(run_command=_warm_up)
    for command in commands.choices.values():
        command.add_argument(
            "--verbose", action="store_true",
            help="keep TensorFlow's log lines and show progress bars (also when the output is "
            "not a terminal); same as KERAS_YT_VERBOSE=1",
        )
    return parser


# ------------------------------------------------------------------ commands


def _demo(args) -> None:
    load_tensorflow()
    from keras_yt.demo import run_demo

    run_demo(
        dataset=args.dataset,
        out=Path(args.out),
        size=args.size,
        epochs=args.epochs,
        seed=args.seed,
        data_dir=args.data_dir,
    )


def _prepare(args) -> None:
    from keras_yt.data.prepare import prepare_examples, prepare_sequences

    options = {"engine": args.engine, "memory_limit": args.memory_limit,
               "temp_directory": args.temp_dir, "threads": args.threads, "verbose": True}
    if args.sequences:
        if args.max_examples_per_user is not None:
            raise ValueError("--max-examples-per-user caps next-watch examples; --sequences "
                             "writes every position of each user's sequence: leave one out")
        from keras_yt.models.presets import load_preset

        width = args.max_history or load_preset(DEFAULT_PRESET)["config"]["max_history"]
        start = _step(f"preparing sequence windows of {args.log} ({args.engine})")
        prepare_sequences(args.log, args.out, max_history=width, **options)
    else:
        start = _step(f"preparing training examples of {args.log} ({args.engine})")
        prepare_examples(args.log, args.out, max_history=args.max_history or
                         EXAMPLES_MAX_HISTORY, max_examples_per_user=args.max_examples_per_user,
                         **options)
    _done(start)
    print(f"\nwrote {args.out}/ (train on it: keras-yt train --examples {args.out} --out RUN)")


def _train(args) -> None:
    from keras_yt.run_folder import RunFolder

    if (args.log is None) == (args.examples is None):
        raise ValueError("give exactly one of --log LOG and --examples EXAMPLES")
    RunFolder.check_target(args.out)  # fail before training, not after
    if args.examples is not None and args.init_from is not None:
        raise ValueError("--init-from warm-starts on a watch log (--log), not on --examples")
    if args.preset is None and args.init_from is None:  # --init-from: the old run's model
        from keras_yt.data.prepare import SEQUENCES, prepared_content

        # A bad --examples folder trains nothing: ExampleShards names what is wrong with it.
        args.preset = (EXAMPLES_PRESET if args.examples is not None
                       and prepared_content(args.examples) != SEQUENCES else DEFAULT_PRESET)
    with RunFolder.lock(args.out):  # a second train into the same --out fails at once
        _train_locked(args)


def _train_locked(args) -> None:
    from keras_yt.run_folder import RunFolder

    if args.examples is not None:
        return _train_examples(args)
    if args.init_from is not None:
        return _warm_start(args)
    _check_preset(args.preset)
    _check_distribute(args)
    import numpy as np

    from keras_yt import data as yt_data
    from keras_yt import pipeline

    # The log is read and checked before TensorFlow loads: a bad log fails in about a second.
    start = _step(f"reading {args.log}")
    raw = yt_data.read_raw_watch_log(args.log)
    if len(raw["user"]) == 0:
        raise ValueError(f"the watch log {args.log!r} has no rows")
    watches, videos, users = pipeline.index_watch_log(raw)
    kinds = "string" if videos.is_string else "integer"
    print(f"    {len(watches):,} watches, {len(users):,} users, {len(videos):,} videos "
          f"({kinds} ids)")
    from keras_yt.data.summary import summary_lines, watch_log_summary

    for line in summary_lines(watch_log_summary(raw))[1:]:  # what is dropped, and why
        print(f"    {line}")
    _done(start)

    load_tensorflow()

    from keras_yt.data.vocabulary import Vocabulary
    from keras_yt.evaluation import LeaveLastOut
    from keras_yt.models.presets import load_preset

    start = _step("building training examples (next watch from the watches before it)")
    preset_config = load_preset(args.preset)["config"]
    sequences = preset_config.get("history_encoder") == "attention"
    if sequences and args.max_examples_per_user is not None:
        raise ValueError(f"--max-examples-per-user caps the next-watch examples of a bag preset; "
                         f"the attention preset {args.preset!r} trains on every position of each "
                         f"user's sequence: leave it out, or pass --preset {EXAMPLES_PRESET}")
    args.max_history = args.max_history or preset_config.get("max_history", 50)
    # Each user's last watch is held out for `evaluate`, the last but one for early stopping;
    # a sequence model reads them after every earlier watch, as its sequences (same second too).
    split = LeaveLastOut(watches, max_history=args.max_history, num_items=videos.size,
                         same_time_history=sequences)
    test = split.test
    if sequences:  # every position of a sequence
        examples = yt_data.sequence_examples(
            split.fit_watches, max_history=args.max_history, max_windows_per_user=None,
            verbose=show_progress(),
        )
    else:
        examples = yt_data.candidate_examples(
            split.fit_watches, max_history=args.max_history,
            max_examples_per_user=args.max_examples_per_user, verbose=show_progress(),
        )
    if len(examples["label"]) == 0:
        raise ValueError("no training examples: every user needs at least 3 watches")
    counts = np.bincount(split.train_watches["video"], minlength=videos.size)
    print(f"    {len(examples['label']):,} training examples, "
          f"{len(split.validation['label']):,} validation and {len(test['label']):,} test users")
    _done(start)

    start = _step("training the candidate generator (early stopping on the last-but-one watch)")
    model, history = _train_preset_model(
        args, args.max_history, videos.size,
        lambda model: pipeline.train_candidate_generator(
            model, examples, split.validation, args.epochs, args.batch_size
        ),
    )
    _done(start)

    with RunFolder.create(args.out) as run:
        model.save(run.model_path)
        run.save_data(
            videos=Vocabulary(videos.ids, counts[1:], videos.titles, name="video"),
            users=users,
            watched=(raw["user"], raw["video"]),
            latest=pipeline.latest_features(watches, users.size, args.max_history),
            test={k: test[k] for k in ("watch_history", "label", "user")},
            max_history=args.max_history,
            model=model,
        )
        run.write_json("history.json", history)
        from keras_yt.warm_start import LOG_FILE, log_period

        run.write_json(LOG_FILE, log_period(raw))  # what --init-from checks a grown log against
    print(f"\nwrote {args.out}/")


def _train_examples(args) -> None:
    """`keras-yt train --examples`: the recipe of `_train`, examples streamed from shards."""
    from keras_yt.data.example_shards import ExampleShards
    from keras_yt.run_folder import RunFolder

    shards = ExampleShards(args.examples)  # a bad folder fails before TensorFlow loads
    _check_preset(args.preset)
    _check_distribute(args)
    if args.max_examples_per_user is not None:
        raise ValueError("--max-examples-per-user is an option of `keras-yt prepare` (the "
                         "examples are already built)")
    from keras_yt.models.presets import load_preset

    attention = load_preset(args.preset)["config"].get("history_encoder") == "attention"
    if attention != shards.sequences:
        held, other = (("sequence windows", f"leave out --preset (or pass {DEFAULT_PRESET})")
                       if shards.sequences else
                       ("next-watch examples", "prepare the log with --sequences"))
        raise ValueError(f"--preset {args.preset} is {'an attention' if attention else 'a bag'} "
                         f"model and {args.examples!r} holds {held}: {other}")
    load_tensorflow()

    from keras_yt.streaming import fit_candidate_generator_streaming

    max_history = shards.max_history
    videos, users = shards.videos, shards.users
    start = _step(f"reading {args.examples}")
    validation = shards.held_out("validation")
    test = shards.held_out("test")
    kinds = "string" if videos.is_string else "integer"
    rows = "sequence windows" if shards.sequences else "training examples"
    print(f"    {shards.num_examples:,} {rows}, {len(validation['label']):,} "
          f"validation and {len(test['label']):,} test users; {len(users):,} users, "
          f"{len(videos):,} videos ({kinds} ids), max_history {max_history}")
    _done(start)

    start = _step("training the candidate generator on streamed examples (early stopping on "
                  "the last-but-one watch)")
    from keras_yt.pipeline import progress_verbosity

    model, history = _train_preset_model(
        args, max_history, videos.size,
        lambda model: fit_candidate_generator_streaming(
            model, shards, validation, epochs=args.epochs, batch_size=args.batch_size,
            verbose=progress_verbosity(), seed=args.seed,
        ),
    )
    _done(start)

    with RunFolder.create(args.out) as run:
        model.save(run.model_path)
        run.save_data(
            videos=videos, users=users, watched=shards.watched(),
            latest={"watch_history": shards.latest()},
            test={k: test[k] for k in ("watch_history", "label", "user")},
            max_history=max_history, model=model,
        )
        run.write_json("history.json", history)
    print(f"\nwrote {args.out}/")


def _train_preset_model(args, max_history: int, num_videos: int, fit):
    """The `--preset` candidate generator (the log's side features left out), trained by
    `fit(model)` under `--distribute`, with padded video rows trimmed: `(model, history)`."""
    import keras

    from keras_yt.models import CandidateGenerator
    from keras_yt.models.presets import load_preset

    keras.utils.set_random_seed(args.seed)
    overrides = {"categorical_features": None, "continuous_features": None,
                 "search_num_bins": None, "seed": args.seed}
    recent = load_preset(args.preset)["config"].get("recent_history")
    if recent is not None and recent > max_history:
        overrides["recent_history"] = max_history

    def make_model(size: int) -> CandidateGenerator:
        return CandidateGenerator.from_preset(
            args.preset, num_videos=size, max_history=max_history, **overrides
        )

    scope, padded_size = _distribution(args, num_videos, make_model)
    with scope():
        model = make_model(padded_size)
        history = fit(model)
    if model.num_videos != num_videos:
        from keras_yt.distribution import trim_padded_videos

        model = trim_padded_videos(model, num_videos)
    print(f"    best epoch {history['best_epoch']} of {len(history['loss'])} "
          f"(batch size {history['batch_size']})")
    return model, history


def _warm_start(args) -> None:
    """`train --init-from OLD_RUN`: `keras_yt.warm_start.warm_start` (checks before reading)."""
    if args.distribute != "none":
        raise ValueError("--init-from trains on one device: leave out --distribute")
    for flag, value in (("--preset", args.preset), ("--max-history", args.max_history)):
        if value is not None:
            raise ValueError(f"--init-from keeps the old run's model and history width: leave "
                             f"out {flag} (got {value!r})")
    from keras_yt.warm_start import warm_start

    start = _step(f"warm start from {args.init_from} on {args.log}")
    info = warm_start(args.log, args.out, args.init_from, epochs=args.epochs,
                      batch_size=args.batch_size,
                      max_examples_per_user=args.max_examples_per_user,
                      new_rows=args.new_rows, optimizer_state=args.optimizer_state,
                      replay=args.replay, learning_rate_scale=args.learning_rate_scale,
                      seed=args.seed)
    _done(start)
    print(f"\nwrote {args.out}/ ({info['new_videos']:,} new videos, {info['new_users']:,} new "
          f"users, {info['examples']:,} new examples, {info['seconds']['total']:.1f} s)")


def _check_distribute(args) -> None:
    """Bad --distribute / --model-parallel combinations fail before any data is read."""
    if args.model_parallel is not None and args.distribute != "model":
        raise ValueError(f"--model-parallel needs --distribute model, got --distribute "
                         f"{args.distribute}")
    backend = os.environ["KERAS_BACKEND"]  # set by quiet_environment(): TensorFlow if unset
    needed = DISTRIBUTE_BACKENDS.get(args.distribute)
    if needed is not None and backend != needed:
        other = "mirrored" if needed == "jax" else "data or --distribute model"
        raise ValueError(
            f"--distribute {args.distribute} needs the {needed} backend (KERAS_BACKEND={needed}), "
            f"the backend is {backend}; on {backend} use --distribute {other}"
        )


def _distribution(args, num_videos: int, make_model):
    """`(scope, num_videos)` to build and train the model with, for `--distribute`.

    `scope()` is a context manager: the strategy's or distribution's scope. Model parallelism
    splits the video tables into equal row blocks, so `num_videos` is padded to a multiple of
    the devices that share a table (the padding ids appear in no example;
    `trim_padded_videos` cuts them off before the model is saved). `make_model(num_videos)`
    makes the model (here: an unbuilt one whose layer names the layout map reads).
    """
    if args.distribute == "none":
        return contextlib.nullcontext, num_videos
    if args.distribute == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        devices = ", ".join(strategy.extended.worker_devices)
        print(f"    MirroredStrategy: {strategy.num_replicas_in_sync} replicas ({devices})")
        return strategy.scope, num_videos
    import keras

    from keras_yt import distribution

    devices = keras.distribution.list_devices()
    if args.distribute == "data":
        plan = distribution.data_parallel(devices)
        print(f"    DataParallel: the batch split over {len(devices)} devices")
        return plan.scope, num_videos
    shards = args.model_parallel or len(devices)
    padded = distribution.padded_rows(num_videos, shards)
    # The layout map reads layer names only: a model that is never built stands in.
    plan = distribution.model_parallel(make_model(padded), shards, devices)
    mesh = plan.device_mesh
    print(f"    ModelParallel: mesh {dict(zip(mesh.axis_names, mesh.shape))}, video tables "
          f"row-sharded over {shards} devices ({padded:,} rows, {padded - num_videos} padding)")
    return plan.scope, padded


def _check_preset(preset: str) -> None:
    """A preset file that is not JSON fails at once, naming the file."""
    import json

    path = Path(preset)
    if path.suffix != ".json" and not path.is_file():
        return  # a preset name: checked when the model is made
    if not path.is_file():
        raise ValueError(f"preset file {preset!r} does not exist")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"preset file {preset!r} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ValueError(f"preset file {preset!r} must hold a JSON object with a 'config' object")


def _train_ranker(args) -> None:
    """`keras-yt train-ranker`: see `keras_yt._train_ranker` (the log is checked before TF)."""
    from keras_yt import _train_ranker as trainer
    from keras_yt.run_folder import RunFolder

    out = trainer.check_target(args.out)  # fail before training, not after
    categorical = [n.strip() for names in args.categorical for n in names.split(",")
                   if n.strip()]
    with RunFolder.lock(out):  # a second train-ranker into the same --out fails at once
        data = trainer.prepare(args.log, categorical, args.max_history, args.test_fraction)
        load_tensorflow()
        trainer.train_and_save(args, data, out)


def _evaluate(args) -> None:
    import numpy as np

    from keras_yt import pipeline
    from keras_yt.run_folder import RunFolder

    run = RunFolder(args.run)
    model = run.load_model()
    start = _step("evaluating on the held-out last watch of each user")
    test = run.test_examples()
    # leave out what each user watched in training: all the user's watches but the held-out one
    watched = run.watched(test["user"])
    exclude = [w[w != label] for w, label in zip(watched, test["label"])]
    counts = np.concatenate([[0], run.videos.counts])
    metrics = pipeline.evaluate_candidate_generator(model, test, counts, exclude=exclude)
    run.write_json("metrics.json", {"candidate_generator": metrics})
    print(f"    {metrics['num_test_users']:,} test users; every video ranked, the ones each user "
          "watched in training left out")
    for name in ("model", "popularity"):
        shown = ", ".join(f"{k} {metrics[name][k]:.4f}"
                          for k in ("recall@10", "recall@50", "recall@100", "ndcg@10")
                          if k in metrics[name])
        print(f"    {name:>10}: {shown}")
    _done(start)


def _export(args) -> None:
    from keras_yt.run_folder import RunFolder

    run = RunFolder(args.run)
    model = run.load_model()  # loads TensorFlow quietly first
    from keras_yt.serving.export import export_saved_model

    start = _step("exporting the user tower as a SavedModel (input: raw video ids)")
    with run.replace_subfolder("user_tower") as path:
        export_saved_model(model, path, vocabulary=run.videos)
    kind, pad = ("strings", '""') if run.videos.is_string else ("int64", "-1")
    print(f"    wrote {run.user_tower_path} (watch_history: {kind} raw ids, padded with {pad})")
    _done(start)


def _index(args) -> None:
    from keras_yt.run_folder import RunFolder

    run = RunFolder(args.run)
    model = run.load_model()  # loads TensorFlow quietly first
    from keras_yt.serving.candidate_index import CandidateIndex

    start = _step("building the PyNNDescent index of the output embeddings")
    index = CandidateIndex.from_model(model, verbose=show_progress())
    index.save(run.index_path)
    print(f"    wrote {run.index_path}")
    _done(start)


def _recommend(args) -> None:
    from keras_yt.run_folder import RunFolder

    run = RunFolder(args.run)
    run.check()
    run.user_rows(args.user)  # unknown users fail before anything loads
    from keras_yt.serving.recommender import Recommender

    # A one-off query: with the run's stored user vectors, `auto` is one exact pass over W on
    # disk (nothing loaded whole, no index or TensorFlow to load).
    search = "scan" if args.search == "auto" and run.serving_arrays() is not None else \
        args.search
    recommender = Recommender(run, search=search, warm=False)
    results = recommender.recommend_users(args.user, k=args.k, keep_watched=args.keep_watched)
    print(f"search: {recommender.search}")
    for user, items in zip(args.user, results):
        note = "" if len(items) == args.k else f" (only {len(items)} eligible)"
        if recommender.fallback(user=user) is not None:
            note += " (no known watch: popular videos, not a personal answer)"
        print(f"\nuser {user}: top {len(items)}{note}")
        for rank, item in enumerate(items, start=1):
            title = f"  {item['title']}" if item["title"] else ""
            print(f"  {rank:>3}. video {item['id']!s:<10} score {item['score']:8.3f}{title}")


def _serve(args) -> None:
    from keras_yt.run_folder import RunFolder

    RunFolder(args.run).check()
    # TensorFlow loads with the user tower, in the background once the server listens (a run
    # storing its user vectors answers requests by user id without it).
    from keras_yt.serving.service import serve

    serve(args.run, host=args.host, port=args.port, search=args.search)


def _warm_up(args) -> None:
    load_tensorflow()
    from keras_yt.serving.numba_cache import warm_up

    start = _step("compiling PyNNDescent's cacheable numba functions into the on-disk cache")
    warm_up(verbose=True)
    _done(start)


if __name__ == "__main__":
    sys.exit(main())
