"""Batches of sequence windows of similar length, each cut to its longest window.

Sequence windows (`keras_yt.data.sequence_examples`) are left-padded to `max_history`; on
MovieLens-100K with `max_history=200` 56% of their positions are padding, and the full softmax
and the attention pay for every position. Grouping windows of similar length and cutting each
batch to the width of its longest window (rounded up to a multiple of `WIDTH_STEP`, so that a few
shapes are compiled) removes most of that work; the model sees exactly the same positions.
"""

from __future__ import annotations

import keras
import numpy as np

WIDTH_STEP = 32
LENGTH_NOISE = 0.2  # lengths are sorted after a random factor in [0.8, 1.2]: batches vary


class WindowBatches(keras.utils.PyDataset):
    """Shuffled batches of left-padded sequence windows, grouped by length and cut to it.

    Each epoch, the windows are sorted by their real length times a random factor in
    `[1 - LENGTH_NOISE, 1 + LENGTH_NOISE]` and cut into batches of `batch_size` (the last,
    shorter batch holds the shortest windows); the batches come in random order, except that the
    widest comes first and the shortest second, so that the input signature Keras reads from the
    first two batches covers every width and batch size. Every `(n, max_history)` column
    (`watch_history`, `label`, per-position `example_age`) is cut to the batch's width, keeping
    its last (newest) positions.

    Args:
        features: `{name: array}`, each of `n` rows.
        labels: `(n, max_history)` labels, 0 at padding.
        batch_size: windows per batch.
        seed: seed of the shuffling.
        width_step: batch widths are multiples of this (or the full width).
    """

    def __init__(self, features: dict, labels: np.ndarray, batch_size: int, seed: int = 0,
                 width_step: int = WIDTH_STEP):
        super().__init__()
        self.width_step = int(width_step)
        self.features = {name: np.asarray(value) for name, value in features.items()}
        self.labels = np.asarray(labels)
        self.batch_size = int(batch_size)
        self.width = self.labels.shape[1]
        history = self.features["watch_history"]
        # Left-padded: the real watches are the last `length` positions of each window.
        self.lengths = np.maximum((history > 0).sum(axis=1), 1)
        self.rng = np.random.default_rng(seed)
        self.batches: list[np.ndarray] = []
        self.on_epoch_end()

    def __len__(self) -> int:
        return len(self.batches)

    def on_epoch_end(self) -> None:
        noisy = self.lengths * self.rng.uniform(1 - LENGTH_NOISE, 1 + LENGTH_NOISE,
                                                len(self.lengths))
        order = np.argsort(noisy, kind="stable")[::-1]  # longest first; the remainder shortest
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        first, last = batches[0], batches[-1]
        middle = [batches[i] for i in self.rng.permutation(np.arange(1, len(batches) - 1))]
        self.batches = [first, *([last] if len(batches) > 1 else []), *middle]

    def batch_width(self, rows: np.ndarray) -> int:
        """The width of a batch: its longest window, rounded up to a multiple of `width_step`."""
        longest = int(self.lengths[rows].max())
        return min(self.width, -(-longest // self.width_step) * self.width_step)

    def __getitem__(self, index: int):
        rows = np.sort(self.batches[index])
        width = self.batch_width(rows)
        x = {name: (value[rows, -width:] if value.ndim == 2 and value.shape[1] == self.width
                    else value[rows])
             for name, value in self.features.items()}
        return x, self.labels[rows, -width:]
