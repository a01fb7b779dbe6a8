"""Validation of input sequences, shared by the interpreter, :class:`lsrl.Model` and the C++ executor.

Every entry point takes ``(T, d_in)``, ``(B, T, d_in)`` or, for a one-dimensional input, ``(T,)``; this module
normalises them to ``(B, T, d_in)`` and raises the same errors (prefixed by the caller's name) everywhere.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError

__all__ = ["as_sequences"]


def as_sequences(xs, d_in: int, *, who: str, subject: str = "the input", dtype=np.float64,
                 keep_exact: bool = False, copy: bool = False, list_dtype=None) -> tuple[np.ndarray, bool]:
    """``xs`` as a ``(B, T, d_in)`` array, and whether it was batched (given as ``(B, T, d_in)``).

    ``who`` prefixes every message (``"interpret"``, ``"Model"``...), ``subject`` names what has ``d_in``
    features (``"the program's input"``).  Lists are converted with ``np.asarray(xs, dtype=list_dtype)``.

    Float inputs, and every input unless ``keep_exact``, come back converted to ``dtype`` (C-contiguous; a
    fresh array when ``copy``) and checked finite.  With ``keep_exact``, integer, bool and object arrays come
    back unconverted (reshaped, possibly a view of ``xs``) for the caller to convert exactly.

    Raises :class:`lsrl.ShapeError` for a ragged or wrongly shaped input (naming ``d_in`` and the shape
    received) and ``ValueError`` for complex, non-numeric or non-finite values.
    """
    if isinstance(xs, np.ndarray):
        arr = xs
    else:
        try:
            arr = np.asarray(xs, dtype=list_dtype)
        except ValueError as exc:  # ragged nested lists
            raise ShapeError(f"{who}: inputs must be a rectangular array: {exc}") from None
    if arr.dtype.kind not in "biufO":
        raise ValueError(f"{who}: inputs must be real numbers, got dtype {arr.dtype}")
    rank = arr.ndim
    if rank == 1:
        if d_in != 1:
            raise ShapeError(f"{who}: a 1-D input of shape {arr.shape} means (T, 1), but {subject} has dim {d_in}; "
                             f"pass (T, {d_in}) or (B, T, {d_in})")
        arr = arr.reshape(1, -1, 1)
    elif rank == 2:
        arr = arr[None]
    elif rank != 3:
        raise ShapeError(f"{who}: inputs must have shape (T, {d_in}) or (B, T, {d_in}), "
                         f"got {rank}-D shape {arr.shape}")
    if arr.shape[-1] != d_in:
        hint = ""
        if rank == 2 and arr.shape[1] == d_in:
            hint = " (inputs are time-major: one row per token; transpose a (d, T) array)"
        raise ShapeError(f"{who}: {subject} has dim {d_in} but the inputs have shape "
                         f"{np.shape(xs)} (last axis {arr.shape[-1]}){hint}")
    if keep_exact and arr.dtype.kind in "biuO":
        return arr, rank == 3
    values = np.array(arr, dtype=dtype, order="C") if copy else np.ascontiguousarray(arr, dtype=dtype)
    if values.size and not np.isfinite(values).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise ValueError(f"{who}: inputs must be finite; found {values[bad]} at (batch, step, coord) = {bad}")
    return values, rank == 3
