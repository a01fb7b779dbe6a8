"""Random data for the paper's programs (programs.md §5).

The draws follow the reference's order so that seeding the legacy global NumPy generator
(``numpy.random.seed(s)``) reproduces its instances.  Every function takes an optional ``rng``:
``None`` means the legacy global generator (``numpy.random.rand``/``randint``/``choice``); a
``numpy.random.RandomState`` is used the same way; a ``numpy.random.Generator`` is accepted too
(same distributions, different stream).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["create_test_target_function", "random_token_map", "draw_queries"]


def _uniform(rng, shape):
    if rng is None:
        return np.random.rand(*shape)
    if hasattr(rng, "rand"):
        return rng.rand(*shape)
    return rng.random(shape)


def _integers(rng, high, size):
    if rng is None:
        return np.random.randint(0, high, size)
    if hasattr(rng, "randint"):
        return rng.randint(0, high, size)
    return rng.integers(0, high, size)


def _choice(rng, k):
    if rng is None:
        return int(np.random.choice(k))
    return int(rng.choice(k))


def create_test_target_function(in_dim: int, out_dim: int, n_control_points: int = 5,
                                smoothness: float = 1, rng=None) -> Callable:
    """A smooth random ``f: R^in_dim -> R^out_dim`` with values in ``[-3, 3]``.

    ``f(x) = Σ_i w_i V_i`` with softmax weights ``w_i ∝ exp(-‖x - P_i‖₂ / smoothness)`` over control
    points ``P`` uniform in ``[-0.1, 1.1]^in_dim`` and control values ``V`` uniform in
    ``[-3, 3]^out_dim`` (``P`` is drawn before ``V``).  The returned ``f`` maps a point of shape
    ``(in_dim,)`` to ``(out_dim,)`` and a batch ``(k, in_dim)`` to ``(k, out_dim)``; it carries its
    ``control_points``, ``control_values`` and ``smoothness`` as attributes.
    """
    if in_dim < 1 or out_dim < 1 or n_control_points < 1:
        raise ValueError(f"create_test_target_function: in_dim={in_dim}, out_dim={out_dim} and "
                         f"n_control_points={n_control_points} must be positive")
    if not smoothness > 0:
        raise ValueError(f"create_test_target_function: smoothness must be positive, got {smoothness}")
    points = _uniform(rng, (n_control_points, in_dim)) * 1.2 - 0.1
    values = _uniform(rng, (n_control_points, out_dim)) * 6 - 3

    def f(x):
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        batch = np.atleast_2d(x)
        if batch.shape[-1] != in_dim:
            raise ValueError(f"test target function expects points of dimension {in_dim}, "
                             f"got shape {x.shape}")
        dist = np.linalg.norm(batch[:, None, :] - points[None, :, :], axis=-1)
        logits = -dist / smoothness
        # Subtracting the row maximum only guards against underflow; the softmax is unchanged.
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        out = weights @ values
        return out[0] if single else out

    f.control_points = points
    f.control_values = values
    f.smoothness = smoothness
    f.in_dim = in_dim
    f.out_dim = out_dim
    return f


def random_token_map(n: int, n_entries: int, vocab: int, rng=None) -> dict:
    """A random map ``V^n -> V^n`` with ``n_entries`` distinct keys (ids ``0..vocab-1``).

    Draws ``key = randint(0, vocab, n)`` then ``value = randint(0, vocab, n)`` until the dict has
    ``n_entries`` keys; a repeated key overwrites its value and keeps its position (insertion order
    is the prompt order).  Keys and values are tuples of ints.
    """
    if n < 1 or vocab < 1 or n_entries < 0:
        raise ValueError(f"random_token_map: need n >= 1, vocab >= 1, n_entries >= 0 "
                         f"(got n={n}, n_entries={n_entries}, vocab={vocab})")
    if n_entries > vocab ** n:
        raise ValueError(f"random_token_map: {n_entries} distinct keys requested but only "
                         f"vocab**n = {vocab ** n} exist")
    mapping: dict = {}
    while len(mapping) < n_entries:
        key = tuple(int(v) for v in _integers(rng, vocab, n))
        value = tuple(int(v) for v in _integers(rng, vocab, n))
        mapping[key] = value
    return mapping


def draw_queries(mapping: dict, k: int, rng=None) -> list:
    """``k`` distinct keys of ``mapping``, each drawn as ``keys[choice(len(keys))]`` and redrawn when
    already taken; returned in the order first drawn."""
    keys = list(mapping)
    if k > len(keys):
        raise ValueError(f"draw_queries: {k} distinct queries requested from a map with "
                         f"{len(keys)} keys")
    queries: list = []
    while len(queries) < k:
        key = keys[_choice(rng, len(keys))]
        if key not in queries:
            queries.append(key)
    return queries
