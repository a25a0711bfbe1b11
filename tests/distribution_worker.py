"""Subprocess worker of tests/test_distribution.py (KERAS_BACKEND=jax, its own JAX runtime).

    python tests/distribution_worker.py table ROWS DIM DEVICES INIT OUT.json
        builds a CandidateGenerator's watch-history table of ROWS x DIM float32 (tied output
        embeddings, so W is that table) row-sharded over DEVICES CPU devices, initialised by the
        layer's initializer (INIT=default) or zeros (INIT=zeros); writes the shard shapes, the
        bytes per device, the compiled initialiser's per-device memory, the peak RSS and the
        time.
    python tests/distribution_worker.py train MODE PROCESS_ID NUM_PROCESSES PORT DATA.npz OUT.npz
        one process of a run over every process's CPU devices (`keras.distribution.initialize`),
        MODE=data (DataParallel) or model (ModelParallel, tables split over 2 devices): feeds
        its part of each global batch of DATA.npz, starting from its initial weights, and
        writes the trained weights.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def table(rows: int, dim: int, devices: int, init: str, out: str) -> None:
    start = time.perf_counter()
    import jax
    import keras

    from keras_yt import distribution
    from keras_yt.models import CandidateGenerator

    model = CandidateGenerator(num_videos=rows, video_embedding_dim=dim, max_history=4,
                               hidden_units=(dim,), tie_output_embeddings=True,
                               use_example_age=False, num_sampled=64, seed=0)
    keras.distribution.set_distribution(distribution.model_parallel(model, devices))
    layer = model.watch_embedding
    path = f"{model.name}/watch_embedding/embeddings"  # the path the variable gets, below
    layout = keras.distribution.distribution().get_variable_layout(
        types.SimpleNamespace(path=path, shape=(rows, dim), _layout=None))
    # Per-device memory of Keras' sharded initialisation (jit with out_shardings), compiled only.
    compiled = jax.jit(lambda: layer.embeddings_initializer((rows, dim), "float32"),
                       out_shardings=layout.backend_layout).lower().compile()
    analysis = compiled.memory_analysis()
    if init == "zeros":  # initialisation without random-bit temporaries
        layer.embeddings_initializer = keras.initializers.Zeros()
    base = _status_mib("VmRSS")
    # Only the table (the model's own name scope gives it the path layout_map matches).
    with keras.name_scope(model.name):
        layer.build()
    table = layer.embeddings
    assert table.path == path, table.path
    table.value.block_until_ready()  # the jitted initializer runs asynchronously
    shards = [tuple(s.data.shape) for s in table.value.addressable_shards]
    result = {
        "path": table.path,
        "shape": list(table.shape),
        "shard_shapes": shards,
        "devices": sorted(str(s.device) for s in table.value.addressable_shards),
        "bytes_per_device": [int(s.data.nbytes) for s in table.value.addressable_shards],
        "init_output_bytes_per_device": int(analysis.output_size_in_bytes),
        "init_temp_bytes_per_device": int(analysis.temp_size_in_bytes),
        "rss_before_mib": base,
        # VmHWM: this process' peak RSS since exec (getrusage's ru_maxrss would include the
        # parent's RSS at fork)
        "peak_rss_mib": _status_mib("VmHWM"),
        "seconds": time.perf_counter() - start,
    }
    with open(out, "w") as f:
        json.dump(result, f)


def train(mode: str, process_id: int, num_processes: int, port: int, data: str,
          out: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras

    keras.distribution.initialize(job_addresses=f"127.0.0.1:{port}",
                                  num_processes=num_processes, process_id=process_id)
    import numpy as np

    from keras_yt import distribution
    from keras_yt.models import CandidateGenerator

    arrays = np.load(data)
    config = json.loads(str(arrays["config"]))
    global_batch = int(arrays["global_batch"])
    local = global_batch // num_processes
    # this process's rows of each global batch, in order
    rows = np.concatenate([np.arange(b + process_id * local, b + (process_id + 1) * local)
                           for b in range(0, len(arrays["label"]), global_batch)])
    x = {"watch_history": arrays["watch_history"][rows]}
    y = arrays["label"][rows]
    model = CandidateGenerator(**config)
    dist = (distribution.data_parallel() if mode == "data"
            else distribution.model_parallel(model, 2))
    dist.auto_shard_dataset = False  # numpy arrays: each process passes its own rows
    keras.distribution.set_distribution(dist)
    model.build()
    model.set_weights([arrays[f"w{i}"] for i in range(int(arrays["num_weights"]))])
    model.compile()
    history = model.fit(x, y, batch_size=local, epochs=int(arrays["epochs"]), shuffle=False,
                        verbose=0)
    weights = model.get_weights()
    np.savez(out, loss=np.array(history.history["loss"]), process_count=jax.process_count(),
             device_count=jax.device_count(),
             **{f"w{i}": np.asarray(w) for i, w in enumerate(weights)})


if __name__ == "__main__":
    if sys.argv[1] == "table":
        table(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif sys.argv[1] == "train":
        train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
              sys.argv[7])
    else:
        raise SystemExit(__doc__)
