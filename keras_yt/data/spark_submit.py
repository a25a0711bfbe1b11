"""The `spark-submit` entry point of the example-generation job (`keras-yt prepare --engine spark`).

On a cluster: `spark-submit [options] $(python -c 'import keras_yt.data.spark_submit as m;
print(m.__file__)') --log LOG --out EXAMPLES` (see docs/large-logs.md). The job itself is
`keras_yt.data.spark_examples`; this module sits above `keras_yt.data.prepare`, which stages the
output folder.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """`spark-submit keras_yt/data/spark_examples.py --log LOG --out EXAMPLES`."""
    parser = argparse.ArgumentParser(description="keras_yt example generation on Spark")
    parser.add_argument("--log", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--max-examples-per-user", type=int)
    parser.add_argument("--rows-per-shard", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    from keras_yt.data.prepare import prepare_examples

    spark = SparkSession.builder.appName("keras_yt.prepare").getOrCreate()
    prepare_examples(args.log, args.out, engine="spark", max_history=args.max_history,
                     max_examples_per_user=args.max_examples_per_user,
                     rows_per_shard=args.rows_per_shard, spark=spark, verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
