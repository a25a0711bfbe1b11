"""Benchmark `keras-yt serve`: N concurrent HTTP clients against a real server on 127.0.0.1.

Runs served (the server is the real command line, `python -m keras_yt.cli serve`, in its own
process; the clients run in this process, on the same machine):
  default             a synthetic run written without training (random embeddings; what is
                      measured is the service, not the model): 5,000 videos, 2,000 users, d=64
  --run DIR           a run folder, e.g. the synthetic demo run (`keras-yt demo --out DIR`)
  --videos N          the synthetic run with N videos; with --index it also builds the run's
                      PyNNDescent index.h5 (served with `--search index`), e.g. --videos 1000000
                      --index for the 1M-video case (minutes to build; run it by hand)

Each request is `POST /recommend {"user": <random raw user id>, "k": --k}`; with
--history-share f, a share f of them sends `{"watch_history": [...], "k": --k}` instead (the user
tower runs per request). Prints and writes (`--out`) requests/s, p50 / p99 latency and the error
count (non-200 answers and transport errors).

    python benchmarks/bench_service.py                       # small (CI) size
    python benchmarks/bench_service.py --run runs/demo --requests 10000 --clients 8
    python benchmarks/bench_service.py --videos 1000000 --index --requests 10000 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGETS = {"requests": 10_000, "clients": 8, "errors": 0, "p99_ms": 20.0}
TARGETS_32 = {"requests_per_second": 1_000, "p99_ms": 30.0}  # 32 clients, 1M-video run


def synthetic_run(out: Path, videos: int, users: int, dim: int, index: bool, seed: int) -> Path:
    """A run folder with an untrained model of `videos` videos: random weights, random users."""
    from keras_yt._quiet import load_tensorflow

    load_tensorflow()
    import keras

    from keras_yt import pipeline
    from keras_yt.data import WATCH_DTYPE, Vocabulary
    from keras_yt.models import CandidateGenerator
    from keras_yt.run_folder import RunFolder

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    max_history = 50
    model = CandidateGenerator(
        num_videos=videos + 1, video_embedding_dim=dim, max_history=max_history,
        hidden_units=(dim * 2, dim), num_sampled=min(100, videos - 1), seed=seed,
    )
    model.build()
    W, b = model.get_output_embeddings()
    norms = rng.lognormal(0.0, 0.5, size=(videos + 1, 1)).astype("float32")
    model.softmax.output_embeddings.assign(W * norms)
    raw_videos = np.arange(videos, dtype=np.int64) + 10**12  # raw ids, 64-bit
    n = users * 30
    watches = np.empty(n, WATCH_DTYPE)
    watches["user"] = np.repeat(np.arange(users), 30)
    popular = np.minimum(rng.zipf(1.3, size=n) - 1, videos - 1)
    watches["video"] = raw_videos[popular]
    watches["timestamp"] = np.tile(np.arange(30, dtype=float), users)
    watches["watch_time"] = 1.0
    raw = {name: watches[name] for name in WATCH_DTYPE.names}
    indexed, _, user_vocab = pipeline.index_watch_log(raw)
    counts = np.zeros(videos, np.int64)
    video_vocab = Vocabulary(raw_videos, counts, name="video")  # every video, in model-id order
    indexed["video"] = video_vocab.lookup(raw["video"])
    latest = pipeline.latest_features(indexed, user_vocab.size, max_history)
    with RunFolder.create(out) as run:
        model.save(run.model_path)
        run.save_data(videos=video_vocab, users=user_vocab, watched=(raw["user"], raw["video"]),
                      latest=latest, max_history=max_history, model=model)
        if index:
            from keras_yt.serving import CandidateIndex

            start = time.perf_counter()
            CandidateIndex.from_model(model, random_state=seed).save(run.index_path)
            print(f"built the index of {videos:,} videos in {time.perf_counter() - start:.0f} s",
                  flush=True)
    return out


def start_server(run: Path, search: str) -> tuple[subprocess.Popen, str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_yt.cli", "serve", "--run", str(run), "--port", "0",
         "--search", search],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r} {process.stderr.read()[-2000:]}")
    print(line.strip(), flush=True)
    return process, f"http://127.0.0.1:{match.group(1)}", time.perf_counter() - started


async def load(url: str, bodies: list, clients: int, timeout: float) -> dict:
    """`clients` keep-alive connections, each sending its next request when the last is answered.

    The requests are written on asyncio streams with pre-encoded bodies: a load generator must
    cost the shared 2 cores little. Measured per request on the same server (1M run): this
    client 0.10-0.35 ms of CPU, aiohttp's 0.55-0.93 ms, httpx's 3.3-5.1 ms (which halved the
    server's measured throughput).
    """
    host, port = url.split("//")[1].split(":")
    latencies = []  # of the requests sent (all, unless connections broke)
    errors = []
    todo = iter(range(len(bodies)))
    encoded = [json.dumps(body).encode() for body in bodies]

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in todo:
                start = time.perf_counter()
                try:
                    writer.write(b"POST /recommend HTTP/1.1\r\nhost: %s\r\ncontent-type: "
                                 b"application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (host.encode(), len(encoded[i]), encoded[i]))
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                    body = await asyncio.wait_for(
                        reader.readexactly(int(length.group(1)) if length else 0), timeout)
                    if not head.startswith(b"HTTP/1.1 200 "):
                        errors.append(f"{head.split(b' ', 2)[1].decode()}: {body[:200]!r}")
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    latencies.append(time.perf_counter() - start)
                    return  # this connection is broken: its client stops
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(ms), "clients": clients, "seconds": round(wall, 3),
        "requests_per_second": round(len(ms) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "errors": len(errors) + len(bodies) - len(ms), "first_errors": errors[:3],
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="run folder to serve (default: a synthetic run)")
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--index", action="store_true", help="build and serve index.h5")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, nargs="+", default=[8],
                        help="concurrent clients; several values: one run each, same server")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--history-share", type=float, default=0.0)
    parser.add_argument("--warm-requests", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    for name in ("videos", "users", "dim", "requests", "k"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("clients",):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.history_share <= 1:
        parser.error("--history-share must be in [0, 1]")

    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run, source = Path(args.run), f"run folder {args.run}"
        else:
            start = time.perf_counter()
            run = synthetic_run(Path(tmp) / "run", args.videos, args.users, args.dim, args.index,
                                args.seed)
            source = (f"synthetic run: {args.videos:,} videos, {args.users:,} users, "
                      f"d={args.dim} (written in {time.perf_counter() - start:.0f} s)")
        from keras_yt.run_folder import RunFolder

        folder = RunFolder(run)
        users = folder.users.ids
        videos = folder.videos.ids
        rng = np.random.default_rng(args.seed)
        bodies = []
        for _ in range(args.requests + args.warm_requests):
            if rng.random() < args.history_share:
                history = videos[rng.integers(0, len(videos), size=rng.integers(1, 30))]
                bodies.append({"watch_history": history.tolist(), "k": args.k})
            else:
                bodies.append({"user": users[rng.integers(0, len(users))].item(), "k": args.k})
        search = "index" if folder.index_path.is_file() and args.index else "auto"
        started_at = time.perf_counter()
        process, url, startup = start_server(run, search)
        try:
            import httpx

            health = httpx.get(f"{url}/health", timeout=60).json()
            while health.get("tower", "ready") == "loading":  # the tower loads in the background
                time.sleep(0.2)
                health = httpx.get(f"{url}/health", timeout=60).json()
            tower_ready = time.perf_counter() - started_at
            runs = []
            for clients in args.clients:
                asyncio.run(load(url, bodies[: args.warm_requests], clients, args.timeout))
                server_cpu, client_cpu = _cpu_seconds(process.pid), _cpu_seconds(os.getpid())
                run_result = asyncio.run(load(url, bodies[args.warm_requests:], clients,
                                              args.timeout))
                n = run_result["requests"]
                run_result["server_cpu_ms_per_request"] = round(
                    1000 * (_cpu_seconds(process.pid) - server_cpu) / n, 3)
                run_result["client_cpu_ms_per_request"] = round(
                    1000 * (_cpu_seconds(os.getpid()) - client_cpu) / n, 3)
                run_result["load_average"] = os.getloadavg()[0]
                runs.append(run_result)
            result = dict(runs[0], runs=runs)
        finally:
            process.terminate()
            process.wait(timeout=30)
    result.update({
        "source": source, "search": health["search"], "videos": health["videos"],
        "users": health["users"], "server_start_seconds": round(startup, 1),
        "tower_ready_seconds": round(tower_ready, 1),
        "history_share": args.history_share, "k": args.k,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs "
                   f"(load average {os.getloadavg()[0]:.1f} at the end)",
    })
    print(f"\n{source}; search: {result['search']}")
    for run_result in result["runs"]:
        print(f"{run_result['requests']:,} requests from {run_result['clients']} clients: "
              f"{run_result['requests_per_second']:,.0f} requests/s, p50 {run_result['p50_ms']} "
              f"ms, p99 {run_result['p99_ms']} ms, max {run_result['max_ms']} ms, errors "
              f"{run_result['errors']}; CPU per request: server "
              f"{run_result['server_cpu_ms_per_request']} ms, clients "
              f"{run_result['client_cpu_ms_per_request']} ms (load average "
              f"{run_result['load_average']:.1f})")
    print(f"targets (issue 12): {TARGETS['requests']:,} requests, {TARGETS['clients']} clients, "
          f"errors {TARGETS['errors']}, p99 <= {TARGETS['p99_ms']} ms; (issue 22, 1M run): "
          f"32 clients >= {TARGETS_32['requests_per_second']:,} requests/s, p99 <= "
          f"{TARGETS_32['p99_ms']} ms; machine: {result['machine']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
