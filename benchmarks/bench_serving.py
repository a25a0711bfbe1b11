"""Benchmark `CandidateIndex` (PyNNDescent MIPS) against brute-force `ExactIndex`.

Default: N=20k items, d=64, clustered directions with lognormal norms and biases, ReLU user
vectors; `--full`: N=1M, d=256. `--embeddings file.npz` (arrays W, b; optional U) evaluates real
output embeddings (e.g. from `SampledSoftmax.get_output_embeddings()`, row 0 dropped).

Prints a table and writes JSON (`--out`, default benchmarks/results/serving.json): build time,
queries/s at batch 1 and batch 1000 for both indexes, recall@10 / @100 against the exact index,
and the ANN / brute-force throughput ratio.

    python benchmarks/bench_serving.py
    python benchmarks/bench_serving.py --epsilon 0.05 0.1 0.2 --diversify-prob 0.0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_yt.serving import CandidateIndex, ExactIndex  # noqa: E402
from keras_yt.serving._synthetic import clustered_corpus, user_vectors  # noqa: E402


def _recall(found: np.ndarray, expected: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, expected)]))


def _qps(index, U: np.ndarray, k: int, batch: int, seconds: float, **kw) -> float:
    """Queries per second for batches of `batch` user vectors (runs for about `seconds`)."""
    index.query(U[:batch], k=k, **kw)  # warm
    done, t0 = 0, time.perf_counter()
    while True:
        start = done % max(1, len(U) - batch + 1)
        index.query(U[start : start + batch], k=k, **kw)
        done += batch
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and done >= batch:
            return done / elapsed


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--num-items", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--full", action="store_true", help="1M items, d=256")
    p.add_argument("--embeddings", help=".npz with W (N, d), b (N,) and optionally U (n, d)")
    p.add_argument("--num-queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--epsilon", type=float, nargs="+", default=[0.1])
    p.add_argument("--n-neighbors", type=int, default=30)
    p.add_argument("--diversify-prob", type=float, default=0.0)
    p.add_argument("--pruning-degree-multiplier", type=float, default=2.0)
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--seconds", type=float, default=2.0, help="timing window per measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("benchmarks", "results", "serving.json"))
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)

    if args.full:
        args.num_items, args.dim = 1_000_000, 256
    if args.embeddings:
        data = np.load(args.embeddings)
        W, b = data["W"].astype(np.float32), data["b"].astype(np.float32)
        if "U" in data:
            U = data["U"].astype(np.float32)[: args.num_queries]
        else:  # ReLU user vectors near random item directions
            rng = np.random.default_rng(args.seed)
            U = np.maximum(W[rng.integers(len(W), size=args.num_queries)], 0)
            U = U + np.abs(rng.normal(0, U.std(), U.shape)).astype(np.float32)
        source = args.embeddings
    else:
        W, b, centers = clustered_corpus(args.num_items, args.dim, seed=args.seed)
        U = user_vectors(args.num_queries, centers, seed=args.seed + 1)
        source = "synthetic clustered, lognormal(0, 0.5) norms, N(0, 0.5) biases"
    print(f"corpus: {W.shape[0]} x {W.shape[1]} ({source}), {len(U)} queries, k={args.k}")

    exact = ExactIndex.from_embeddings(W, b)
    t = time.perf_counter()
    exact_ids, _ = exact.query(U, k=args.k)
    exact_batch_seconds = time.perf_counter() - t
    # numba compiles PyNNDescent's graph construction once per process: pay it on a tiny index
    t = time.perf_counter()
    CandidateIndex.from_embeddings(W[:2000], b[:2000], random_state=args.seed)
    compile_seconds = time.perf_counter() - t
    t = time.perf_counter()
    ann = CandidateIndex.from_embeddings(
        W, b, n_neighbors=args.n_neighbors, diversify_prob=args.diversify_prob,
        pruning_degree_multiplier=args.pruning_degree_multiplier, n_jobs=args.n_jobs,
        random_state=args.seed, verbose=args.verbose,
    )
    build = time.perf_counter() - t
    exact_qps_1 = _qps(exact, U, args.k, 1, args.seconds)
    exact_qps_1000 = max(len(U) / exact_batch_seconds, _qps(exact, U, args.k, 1000, args.seconds))
    rows = []
    for eps in args.epsilon:
        ids, _ = ann.query(U, k=args.k, epsilon=eps)
        row = {
            "epsilon": eps,
            "recall@10": _recall(ids, exact_ids, 10),
            f"recall@{args.k}": _recall(ids, exact_ids, args.k),
            "ann_qps_batch1": _qps(ann, U, args.k, 1, args.seconds, epsilon=eps),
            "ann_qps_batch1000": _qps(ann, U, args.k, 1000, args.seconds, epsilon=eps),
        }
        row["ratio_batch1"] = row["ann_qps_batch1"] / exact_qps_1
        row["ratio_batch1000"] = row["ann_qps_batch1000"] / exact_qps_1000
        rows.append(row)
    result = {
        "num_items": int(W.shape[0]), "dim": int(W.shape[1]), "num_queries": len(U),
        "k": args.k, "source": source, "build_seconds": build,
        "compile_seconds": compile_seconds,
        "knobs": ann.knobs, "exact_qps_batch1": exact_qps_1,
        "exact_qps_batch1000": exact_qps_1000, "runs": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }
    print(f"compile (per process) {compile_seconds:.1f} s; build {build:.1f} s; "
          f"exact: {exact_qps_1:.0f} q/s (batch 1), "
          f"{exact_qps_1000:.0f} q/s (batch 1000)")
    head = f"{'epsilon':>8} {'R@10':>6} {'R@' + str(args.k):>6} {'qps b1':>8} {'qps b1000':>10}"
    print(head + f" {'ANN/exact b1':>13} {'ANN/exact b1000':>16}")
    for r in rows:
        print(f"{r['epsilon']:8.3f} {r['recall@10']:6.3f} {r[f'recall@{args.k}']:6.3f} "
              f"{r['ann_qps_batch1']:8.0f} {r['ann_qps_batch1000']:10.0f} "
              f"{r['ratio_batch1']:13.2f} {r['ratio_batch1000']:16.2f}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
