"""Trains a small `CandidateGenerator` with `fit` + `train_on_batch` on the backend of
KERAS_BACKEND and saves its weights (`tests/backend/test_row_sparse_fit.py` compares backends)."""

import sys

import keras
import numpy as np

from keras_yt.models import CandidateGenerator
from keras_yt.optimizers import SparseAdagrad, SparseAdam

OPTIMIZERS = {
    "adam": lambda: SparseAdam(0.01),
    "adam_compact": lambda: SparseAdam(0.01, compact_table_moments=True),
    "adam_bfloat16": lambda: SparseAdam(0.01, table_moment_dtype="bfloat16"),
    "adagrad": lambda: SparseAdagrad(0.1, clipnorm=0.5),
}


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    n = 997
    x = {"watch_history": rng.integers(0, n, (64, 6)).astype("int32"),
         "example_age": rng.random(64).astype("float32")}
    y = rng.integers(1, n, 64).astype("int32")
    weights = {}
    for name, make in OPTIMIZERS.items():
        # in-batch negatives: the same on every backend (no random sampler)
        model = CandidateGenerator(num_videos=n, video_embedding_dim=8, max_history=6,
                                   hidden_units=(16, 8), sampler="in_batch", seed=0)
        model.build()
        init = np.random.default_rng(1)
        for variable in model.trainable_variables:
            variable.assign(init.normal(scale=0.1, size=variable.shape).astype("float32"))
        model.compile(optimizer=make())
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        model.train_on_batch(x, y)
        for i, variable in enumerate(model.trainable_variables):
            weights[f"{name}/{i}"] = keras.ops.convert_to_numpy(variable)
    np.savez(out, **weights)


if __name__ == "__main__":
    main(sys.argv[1])
