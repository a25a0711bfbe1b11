"""Draws the figures of docs/how-serving-works.md into docs/figures/.

    python docs/make_figures.py            # both figures (the benchmark takes a minute or two)
    python docs/make_figures.py --diagram  # only the training-vs-serving diagram (seconds)
    python docs/make_figures.py --replot   # redraw the plot from serving_benchmark.json
    python docs/make_figures.py --quality A.json B.json  # HR@k of every model (docs/quality.md)

1. `training_vs_serving.png`: the training path (features → tower → u → sampled softmax over W, b)
   next to the serving path (u → maximum-inner-product index over [W, b] → top-k).
2. `recall_vs_qps.png`: a measurement, made when the script runs. Output embeddings that look like
   a trained softmax head (clustered directions, lognormal norms, Gaussian biases), post-ReLU
   user vectors, exact top-k by brute force (`keras_yt.serving.ExactIndex`) as the reference, and
   `keras_yt.serving.CandidateIndex` (PyNNDescent) at several search `epsilon`: recall@k against
   batched queries per second. The numbers are also written to `serving_benchmark.json`, with the
   machine and library versions.

3. `quality_hr_at_k.png` (`--quality`): the HR@k curves (k = 1..100) that
   `benchmarks/bench_quality.py` wrote into its JSON reports, every model of every report given
   (a later report's model replaces an earlier one's of the same name).

The data and the index are seeded, so the recall values repeat exactly; the queries per second
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

FIGURES = Path(__file__).resolve().parent / "figures"
EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
KS = (10, 100)


# ------------------------------------------------------------------ figure 1: the diagram


def _box(ax, x, y, text, color, w=0.4, h=0.09):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.01",
                                facecolor=color, edgecolor="0.25", linewidth=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def _arrow(ax, start, end, label=None, style="-|>", color="0.25", **kwargs):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                 linewidth=1.1, **kwargs))
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.025, label, fontsize=8,
                ha="center", va="bottom", color=color)


def draw_diagram(path: Path) -> None:
    """Training path and serving path side by side (boxes and arrows)."""
    fig, ax = plt.subplots(figsize=(11, 6.2))
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.04, 1)
    ax.axis("off")
    feature, tower, head, index = "#eeeeee", "#dbe9f6", "#fde2c8", "#d5efd5"
    rows = (0.84, 0.70, 0.56, 0.42, 0.25, 0.08)
    heights = (0.09, 0.07, 0.07, 0.07, 0.12, 0.09)
    left = [
        ("features: watch history, search tokens,\nexample age, geography, gender, ...", feature),
        ("embed + average (EmbeddingBag, TokenBag,\nExampleAge) and concatenate", tower),
        ("ReLU tower (1024 → 512 → 256 in the paper)", tower),
        ("user vector u   (d = 256)", tower),
        ("SampledSoftmax over W (N × d), b (N):\nlogits u·W_j + b_j of the next watch and of\n"
         "S sampled videos, each minus log Q(j)", head),
        ("loss = −log softmax of the next watch\ncost per example O(S·d), not O(N·d)", feature),
    ]
    right = [
        ("the same features, example age = 0 ('now')", feature),
        ("user tower: CandidateGenerator.user_model()\n"
         "(or its SavedModel, signature 'user_vector')", tower),
        ("the same ReLU tower, same weights", tower),
        ("user vector u  →  query q = [u, 1]", tower),
        ("CandidateIndex (PyNNDescent, inner product)\nitems x_j = [W_j, b_j + c]\n"
         "q·x_j = u·W_j + b_j + c", index),
        ("top-k video ids by u·W_j + b_j (no softmax)\n→ a few hundred candidates for the ranker",
         feature),
    ]
    for x, column, title in ((0.25, left, "Training (fit)"), (0.75, right, "Serving")):
        ax.text(x, 0.97, title, ha="center", va="center", fontsize=13, fontweight="bold")
        for i, ((text, color), y, h) in enumerate(zip(column, rows, heights)):
            _box(ax, x, y, text, color, h=h)
            if i:
                _arrow(ax, (x, rows[i - 1] - heights[i - 1] / 2 - 0.012),
                       (x, y + h / 2 + 0.012))
    _arrow(ax, (0.455, rows[4]), (0.545, rows[4]), label="W, b", color="tab:green",
           linestyle="--")
    ax.text(0.5, rows[4] - 0.04, "get_output_\nembeddings()", ha="center", va="top",
            fontsize=7.5, color="tab:green")
    ax.text(0.5, -0.035, "The same W and b: trained as softmax weights (left), searched as a "
            "database of item vectors (right).", ha="center", va="bottom", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ figure 2: the measurement


def softmax_like_corpus(num_items: int, dim: int, num_clusters: int = 50, seed: int = 0):
    """Output embeddings shaped like a trained softmax head, and post-ReLU user vectors.

    Directions in clusters of Zipf-distributed sizes, lognormal row norms (sigma 0.5), Gaussian
    biases (sd 0.5); user vectors are noisy sparse mixtures of cluster centres through a ReLU.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_clusters, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    sizes = 1.0 / np.arange(1, num_clusters + 1)
    assign = rng.choice(num_clusters, size=num_items, p=sizes / sizes.sum())
    dirs = centers[assign] + 0.6 * rng.normal(size=(num_items, dim)) / np.sqrt(dim)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    W = (dirs * rng.lognormal(0.0, 0.5, size=(num_items, 1))).astype(np.float32)
    b = rng.normal(0.0, 0.5, size=num_items).astype(np.float32)
    return W, b, centers


def user_vectors(num_users: int, centers: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.dirichlet(np.full(len(centers), 0.1), size=num_users)
    u = mix @ centers + 0.8 * rng.normal(size=(num_users, centers.shape[1])) / np.sqrt(
        centers.shape[1]
    )
    u *= 2.0 * rng.lognormal(0.0, 0.3, size=(num_users, 1))
    return np.maximum(u, 0.0).astype(np.float32)


def recall(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k ids present in the returned top-k."""
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact)]))


def _best_qps(fn, num_queries: int, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return num_queries / best


def measure(num_items: int = 30_000, dim: int = 64, num_queries: int = 1000) -> dict:
    """Recall@10/@100 and batched queries/s: exact search vs CandidateIndex at several epsilon."""
    from keras_yt.serving import CandidateIndex, ExactIndex

    W, b, centers = softmax_like_corpus(num_items, dim)
    u = user_vectors(num_queries, centers)
    k = max(KS)
    exact_index = ExactIndex.from_embeddings(W, b)
    exact_ids, _ = exact_index.query(u, k=k)
    result = {
        "num_items": num_items, "dim": dim, "num_queries": num_queries, "k": k,
        "machine": {
            "cpu": _cpu_name(), "cores_available": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": np.__version__,
            "pynndescent": _version("pynndescent"), "numba": _version("numba"),
        },
        "exact": {"qps": _best_qps(lambda: exact_index.query(u, k=k), num_queries)},
    }
    # Brute force costs O(N) per query: its throughput at larger corpora (same generator).
    result["exact_qps_by_num_items"] = {num_items: result["exact"]["qps"]}
    for n in (10 * num_items,):
        Wn, bn, _ = softmax_like_corpus(n, dim, seed=2)
        big = ExactIndex.from_embeddings(Wn, bn)
        result["exact_qps_by_num_items"][n] = _best_qps(
            lambda index=big: index.query(u, k=k), num_queries, repeats=1
        )
    # Exact searches with the wrong score, to show what the metric alone costs.
    wrong = {
        "cosine (metric='dot'), exact": (W / np.linalg.norm(W, axis=1, keepdims=True)) @ u.T,
        "u·W_j without the bias, exact": W @ u.T,
    }
    result["wrong_score"] = {}
    for name, scores in wrong.items():
        ids = np.argsort(-scores.T, axis=1)[:, :k]
        result["wrong_score"][name] = {f"recall@{kk}": recall(ids, exact_ids, kk) for kk in KS}

    start = time.perf_counter()
    index = CandidateIndex.from_embeddings(W, b, random_state=0, exhaustive_below=0)
    result["index_build_seconds_incl_compile"] = time.perf_counter() - start
    index.query(u[:10], k=k)  # compiles the search for this process
    result["index_knobs"] = index.knobs
    result["approximate"] = []
    for eps in EPSILONS:
        ids, _ = index.query(u, k=k, epsilon=eps)
        row = {"epsilon": eps, "qps": _best_qps(lambda: index.query(u, k=k, epsilon=eps),
                                                num_queries)}
        row.update({f"recall@{kk}": recall(ids, exact_ids, kk) for kk in KS})
        result["approximate"].append(row)
    return result


def plot_measurement(result: dict, path: Path) -> None:
    """Left: the whole recall range, with exact searches on the wrong score; right: a zoom."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    rows = result["approximate"]
    for ax, zoom in zip(axes, (False, True)):
        for kk, marker in zip(KS, ("o", "s")):
            shown = [r for r in rows if not zoom or r[f"recall@{kk}"] > 0.9]
            ax.plot([r["qps"] for r in shown], [r[f"recall@{kk}"] for r in shown],
                    marker=marker, label=f"CandidateIndex (PyNNDescent), recall@{kk}")
            for r in shown:
                ax.annotate(f"ε={r['epsilon']:g}", (r["qps"], r[f"recall@{kk}"]), fontsize=7,
                            textcoords="offset points", xytext=(4, -10 if kk == 100 else 4))
        ax.plot([result["exact"]["qps"]], [1.0], marker="*", markersize=13, linestyle="none",
                color="black", label="ExactIndex (brute force), recall 1")
        ax.set_xscale("log")
        ax.set_xlabel("queries per second (batches of 1000 user vectors, k = 100)")
        ax.grid(alpha=0.3)
    ax = axes[0]
    styles = (("tab:red", ":"), ("tab:purple", "--"))
    for (name, values), (color, line) in zip(result["wrong_score"].items(), styles):
        ax.axhline(values["recall@100"], color=color, linestyle=line, linewidth=1,
                   label=f"{name}: recall@100 {values['recall@100']:.2f}")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall vs the exact top-k of u·W_j + b_j")
    ax.legend(loc="center left", fontsize=7.5)
    m = result["machine"]
    ax.set_title(f"N = {result['num_items']:,} items, d = {result['dim']}, "
                 f"{m['cores_available']} CPU cores, pynndescent {m['pynndescent']}", fontsize=9)
    axes[1].set_ylim(0.98, 1.001)
    axes[1].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    axes[1].xaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:,.0f}" if f"{v:.0f}"[0] in "25" else "")
    )
    axes[1].set_title("zoom: recall ≥ 0.98", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


QUALITY_LABELS = {
    "sequential": "CandidateGenerator, movielens_sequential (attention)",
    "model": "CandidateGenerator, movielens_candidate (bag)",
    "ease": "EASE (λ = 200)", "implicit_als": "implicit ALS (32 factors)",
    "item_knn": "item-kNN (cosine)", "popularity": "popularity",
}


def plot_quality(reports: list[Path], path: Path) -> None:
    """HR@k curves of every model in the `bench_quality.py` JSON reports."""
    curves, seeds = {}, {}
    for report in reports:
        data = json.loads(Path(report).read_text())
        for name, curve in data["hr_at_k_curves"].items():
            curves[name] = curve
            seeds[name] = len(data["seeds"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    order = [n for n in QUALITY_LABELS if n in curves] + [n for n in curves
                                                          if n not in QUALITY_LABELS]
    for name in order:
        label = f"{QUALITY_LABELS.get(name, name)} ({seeds[name]} seed{'s' * (seeds[name] > 1)})"
        ax.plot(range(1, len(curves[name]) + 1), curves[name], label=label,
                lw=2.2 if name in ("sequential", "model") else 1.2)
    ax.set_xlabel("k")
    ax.set_ylabel("HR@k (watched movies removed)")
    ax.set_title("MovieLens-100K, leave-last-out, all 1,682 movies ranked")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diagram", action="store_true", help="only draw the diagram")
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the PNGs")
    parser.add_argument("--num-items", type=int, default=30_000)
    parser.add_argument("--replot", action="store_true",
                        help="redraw recall_vs_qps.png from serving_benchmark.json, no measuring")
    parser.add_argument("--quality", type=Path, nargs="+", metavar="REPORT",
                        help="draw quality_hr_at_k.png from bench_quality.py JSON reports")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quality:
        plot_quality(args.quality, args.out / "quality_hr_at_k.png")
        print(f"wrote {args.out / 'quality_hr_at_k.png'}")
        return 0
    if args.replot:
        result = json.loads((args.out / "serving_benchmark.json").read_text())
        plot_measurement(result, args.out / "recall_vs_qps.png")
        print(f"wrote {args.out / 'recall_vs_qps.png'}")
        return 0
    draw_diagram(args.out / "training_vs_serving.png")
    print(f"wrote {args.out / 'training_vs_serving.png'}")
    if args.diagram:
        return 0
    result = measure(num_items=args.num_items)
    (args.out / "serving_benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_measurement(result, args.out / "recall_vs_qps.png")
    print(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'recall_vs_qps.png'} and serving_benchmark.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
