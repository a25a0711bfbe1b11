"""Padding of id sequences (private helper shared by the history encoders; keras.ops only)."""

from __future__ import annotations

from keras import ops

# Added to the position of every real id so that it sorts after every padding slot: larger than
# any sequence length.
_AFTER_PADDING = 1 << 30


def left_pad(ids, padding: int = 0):
    """Moves the padding of each row to the left, keeping the order of the real ids.

    Histories are read oldest → newest, newest last: the last columns are the most recent
    watches. A history padded on the right, or with padding (unknown ids mapped to 0) in the
    middle, becomes the left-padded history of the same watches, so that the answer does not
    depend on where the padding was.

    Args:
        ids: integer tensor `(batch, L)`.
        padding: the padding id.

    Returns:
        A tensor like `ids`: each row's padding first, then its real ids in their order.
    """
    ids = ops.convert_to_tensor(ids)
    position = ops.cumsum(ops.ones_like(ids, dtype="int32"), axis=-1)
    key = ops.where(ops.not_equal(ids, padding), position + _AFTER_PADDING, position)
    return ops.take_along_axis(ids, ops.argsort(key, axis=-1), axis=-1)
