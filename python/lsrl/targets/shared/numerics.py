"""Numerics the Hugging Face targets' semantics share: torch's functions as numpy, and dense float64 copies of
IR constants for ops whose HF parameters are dense tensors."""
from __future__ import annotations

import numpy as np

from ...ir.matrix import Matrix, Vector

__all__ = ["torch_softplus", "ordered_sum", "mean_square", "causal_conv", "dense", "vector", "stream_squares",
           "FLOAT32_SQUARES"]

#: a norm's Σ r² past it may overflow float32 (its largest number is just below 2^128)
FLOAT32_SQUARES = 2.0 ** 127


def torch_softplus(x: np.ndarray) -> np.ndarray:
    """torch's ``F.softplus`` (beta 1, threshold 20): ``x`` above 20, else ``log1p(exp(x))``."""
    with np.errstate(over="ignore"):
        return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def ordered_sum(x: np.ndarray) -> np.ndarray:
    """``Σ`` over the last axis in index order 0, 1, … (numpy's ``sum`` adds pairwise; a running sum is what the
    C++ kernel adds, so the two agree bit for bit)."""
    return np.cumsum(x, axis=-1)[..., -1]


def mean_square(x: np.ndarray) -> np.ndarray:
    """``mean(x²)`` over the last axis, keeping it, summed in index order (:func:`ordered_sum`)."""
    return (ordered_sum(x * x) / x.shape[-1])[..., None]


def stream_squares(form) -> float:
    """A bound on the sum of squares a norm takes over a residual stream that holds, besides the input, at most
    three values of the layer form ``form`` at once (Hawk and Griffin: the value a stage reads, split in two slots
    whose squares sum to its own, the one it writes, and the one read before until the next split cancels it;
    Mamba: one value in the hi bank and two in the value banks): ``Σ input² + 3·max over stages of Σ value²``
    (inf where unbounded)."""
    def squares(lo, hi) -> float:
        bound = np.maximum(np.abs(np.asarray(lo, dtype=float)), np.abs(np.asarray(hi, dtype=float)))
        with np.errstate(over="ignore"):
            return float(np.sum(bound * bound))
    inputs = squares(form.input.attrs["lower"].to_float().values, form.input.attrs["upper"].to_float().values)
    return inputs + 3 * max([squares(st.lo, st.hi) for st in form.stages], default=0.0)


def causal_conv(full: np.ndarray, taps: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """``acc[..., t, c] + Σ_k full[..., t + k, c] · taps[c, k]``: a depthwise causal convolution over ``full``
    (the window then the ``T`` new steps, time on axis 1).  Each channel adds its non-zero taps only, in order
    k = 0, 1, … (the compiled models' taps are sparse; the C++ kernel adds the same products in the same
    order)."""
    T = acc.shape[1]
    for k in np.flatnonzero(np.any(taps != 0, axis=0)):
        ch = np.flatnonzero(taps[:, k])
        acc[..., ch] = acc[..., ch] + full[:, k:k + T][..., ch] * taps[ch, k]
    return acc


def dense(m) -> np.ndarray:
    """A Matrix (or array) as a dense float64 array."""
    return m.to_float().to_dense() if isinstance(m, Matrix) else np.asarray(m, dtype=np.float64)


def vector(v) -> np.ndarray:
    """A Vector (or array) as a float64 array."""
    return v.array(False).astype(np.float64) if isinstance(v, Vector) else np.asarray(v, dtype=np.float64)
