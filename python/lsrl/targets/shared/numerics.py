"""Numerics the Hugging Face targets' semantics share: torch's functions as numpy, and dense float64 copies of
IR constants for ops whose HF parameters are dense tensors."""
from __future__ import annotations

import numpy as np

from ...ir.matrix import Matrix, Vector

__all__ = ["torch_softplus", "dense", "vector"]


def torch_softplus(x: np.ndarray) -> np.ndarray:
    """torch's ``F.softplus`` (beta 1, threshold 20): ``x`` above 20, else ``log1p(exp(x))``."""
    with np.errstate(over="ignore"):
        return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def dense(m) -> np.ndarray:
    """A Matrix (or array) as a dense float64 array."""
    return m.to_float().to_dense() if isinstance(m, Matrix) else np.asarray(m, dtype=np.float64)


def vector(v) -> np.ndarray:
    """A Vector (or array) as a float64 array."""
    return v.array(False).astype(np.float64) if isinstance(v, Vector) else np.asarray(v, dtype=np.float64)
