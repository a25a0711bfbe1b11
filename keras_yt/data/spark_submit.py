"""The `spark-submit` entry point of the example-generation job (`keras-yt prepare --engine spark`).

On a cluster: `spark-submit [options] $(python -c 'import keras_yt.data.spark_submit as m;
print(m.__file__)') --log LOG --out EXAMPLES [--sequences]` (see docs/large-logs.md). The job
itself is `keras_yt.data.spark_examples`; this module sits above `keras_yt.data.prepare`, which
stages the output folder.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None, spark=None) -> int:
    """`spark-submit keras_yt/data/spark_submit.py --log LOG --out EXAMPLES [--sequences]`
    (`spark`: a session to use instead of the submitted application's)."""
    parser = argparse.ArgumentParser(description="keras_yt example generation on Spark")
    parser.add_argument("--log", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sequences", action="store_true",
                        help="sequence windows for the order-aware tower (prepare_sequences)")
    parser.add_argument("--max-history", type=int,
                        help="default: 50; 200 with --sequences")
    parser.add_argument("--max-examples-per-user", type=int, help="not with --sequences")
    parser.add_argument("--rows-per-shard", type=int, help="default: 1,000,000 examples or "
                                                           "100,000 windows")
    args = parser.parse_args(argv)
    if args.sequences and args.max_examples_per_user is not None:
        parser.error("--max-examples-per-user caps next-watch examples, not sequence windows")
    from keras_yt.data.prepare import prepare_examples, prepare_sequences

    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.appName("keras_yt.prepare").getOrCreate()
    # Options left out take the defaults of prepare_examples / prepare_sequences.
    options = {name: value for name, value in (("max_history", args.max_history),
                                               ("rows_per_shard", args.rows_per_shard))
               if value is not None}
    options.update(engine="spark", spark=spark, verbose=True)
    if args.sequences:
        prepare_sequences(args.log, args.out, **options)
    else:
        prepare_examples(args.log, args.out, max_examples_per_user=args.max_examples_per_user,
                         **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
