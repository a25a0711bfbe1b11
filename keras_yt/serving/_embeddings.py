"""Output embeddings as the indexes take them (private): checked W, b and ids, the padding row of
a model dropped, and their fingerprint."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_yt._files import embeddings_fingerprint


def check_embeddings(
    W: Any, b: Any = None, ids: Any = None, values: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates output embeddings, biases and ids; returns float32/float32/int64 arrays.

    With `values=False` (arrays of a file whose checksum was verified before, unchanged since)
    only shapes and dtypes are checked: a memory-mapped W is not read.
    """
    W = W if isinstance(W, np.memmap) and W.dtype == np.float32 and W.flags.c_contiguous \
        else np.ascontiguousarray(W, dtype=np.float32)
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(
            f"W must be a 2-D array (num_items, dim) with both > 0, got shape {W.shape}"
        )
    n = W.shape[0]
    if not values:
        b = np.zeros(n, np.float32) if b is None else np.ascontiguousarray(b, np.float32)
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids).astype(np.int64)
        if b.shape != (n,) or ids.shape != (n,):
            raise ValueError(f"b and ids must have shape ({n},) to match W {W.shape}, got "
                             f"{b.shape} and {ids.shape}")
        return W, b, ids
    if not np.isfinite(W).all():
        raise ValueError("W must be finite, got NaN or inf values")
    if b is None:
        b = np.zeros(n, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32).reshape(-1) if np.ndim(b) else None
    if b is None or b.shape != (n,):
        raise ValueError(f"b must have shape ({n},) to match W {W.shape}, got {np.shape(b)}")
    if not np.isfinite(b).all():
        raise ValueError("b must be finite, got NaN or inf values")
    # Finite but huge values give inf scores (u · W_j + b_j) and break the bias-folding
    # reduction, which squares them: reject them here, at build.
    with np.errstate(over="ignore"):
        norms, squares = np.einsum("ij,ij->i", W, W), b * b
    if not np.isfinite(norms).all():
        raise ValueError(f"W is too large: its squared row norms overflow float32 (max |W| = "
                         f"{float(np.abs(W).max()):.3g}); every score would be inf")
    if not np.isfinite(squares).all():
        raise ValueError(f"b is too large: its squares overflow float32 (max |b| = "
                         f"{float(np.abs(b).max()):.3g}); scores would be inf")
    if ids is None:
        ids = np.arange(n, dtype=np.int64)
    else:
        ids = np.asarray(ids)
        if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"ids must be an integer array of shape ({n},) to match W {W.shape}, "
                f"got {ids.dtype} array of shape {ids.shape}"
            )
        ids = ids.astype(np.int64)
        if len(np.unique(ids)) != n:
            raise ValueError("ids must be unique, got duplicated ids")
        if (ids < 0).any():
            raise ValueError(f"ids must be >= 0 (-1 marks empty result slots), got {ids.min()}")
    return W, b, ids


def model_embeddings(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(W, b, ids)` from anything with `get_output_embeddings() -> (W, b)`, without row 0.

    Row 0 is the padding class (id 0), which is never recommended, so it is dropped and the
    ids of the remaining rows are their row numbers `1 .. N-1`.
    """
    getter = getattr(model, "get_output_embeddings", None)
    if getter is None or not callable(getter):
        raise TypeError(
            "model must have a get_output_embeddings() -> (W, b) method, "
            f"got {type(model).__name__}"
        )
    W, b = getter()
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] < 2:
        raise ValueError(
            "model.get_output_embeddings() must return W of shape (num_videos >= 2, dim), "
            f"got {W.shape}"
        )
    b = np.zeros(W.shape[0], np.float32) if b is None else np.asarray(b).reshape(-1)
    ids = np.arange(1, W.shape[0], dtype=np.int64)
    return check_embeddings(W[1:], b[1:], ids)


def fingerprint(W: np.ndarray, b: np.ndarray) -> str:
    """sha256 (hex) of the float32 bytes of W and b, with their shapes."""
    return embeddings_fingerprint(W, b)
