"""The target dialect: ``rnn_relu``, ``lstm`` and ``gru`` ops, each implementing its architecture's own
equations in the PyTorch convention (``targets.md`` §4–§6), so running a lowered module checks its weights.

=========  ==========================================================================================
op         equations (per step; ``x`` the layer input, ``h`` the previous hidden state)
=========  ==========================================================================================
rnn_relu   ``h' = ReLU(W_ih x + b_ih + W_hh h + b_hh)``
lstm       ``[i; f; g; o] = W_ih x + b_ih + W_hh h + b_hh`` (torch order i, f, g, o);
           ``i, f, o ← σ(·)``, ``g ← tanh(g)``; ``c' = f ⊙ c + i ⊙ g``; ``h' = o ⊙ tanh(c')``
gru        ``[r; z; n]`` rows (torch order r, z, n): ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``,
           ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``, ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``,
           ``h' = (1 − z) ⊙ n + z ⊙ h``
=========  ==========================================================================================

``activations = "ideal"`` replaces every σ and tanh by ReLU (the paper's appendices; exact, also in exact
arithmetic); ``"standard"`` uses the real functions (float only).

Every op has a state-carrying runner ``run_op(op, x, state, exact, backend) -> (y, state)`` used by
:class:`lsrl.Model` for streaming; the registered ``forward`` runs from the op's initial state.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.special import expit

from ..ir.core import AttrSpec, OPS, Op, OpDef, ShapeProblem, register_op
from ..ir.matrix import Matrix, Vector

__all__ = ["run_op", "initial_state", "ACTIVATIONS", "TARGET_OP_KINDS"]

ACTIVATIONS = ("ideal", "standard")
TARGET_OP_KINDS = ("rnn_relu", "lstm", "gru")
_GATES = {"rnn_relu": 1, "lstm": 4, "gru": 3}
_ZERO = Fraction(0)


# ------------------------------------------------------------------------------------------ definitions

def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeProblem(message)


def _infer(kind: str):
    gates = _GATES[kind]

    def infer(op: Op) -> int:
        w_ih, w_hh = op.attrs["W_ih"], op.attrs["W_hh"]
        d = op.operands[0].dim
        _check(w_ih.shape[0] % gates == 0 and w_ih.shape[0] >= gates,
               f"W_ih has {w_ih.shape[0]} rows, expected {gates}·H (H ≥ 1)")
        h = w_ih.shape[0] // gates
        _check(w_ih.shape[1] == d, f"W_ih is {w_ih.shape[0]}x{w_ih.shape[1]} but the operand has dim {d}")
        _check(w_hh.shape == (gates * h, h), f"W_hh is {w_hh.shape[0]}x{w_hh.shape[1]}, expected {gates * h}x{h}")
        for name in ("b_ih", "b_hh"):
            _check(len(op.attrs[name]) == gates * h, f"{name} has length {len(op.attrs[name])}, expected {gates * h}")
        _check(len(op.attrs["h0"]) == h, f"h0 has length {len(op.attrs['h0'])}, expected {h}")
        if kind == "lstm":
            _check(len(op.attrs["c0"]) == h, f"c0 has length {len(op.attrs['c0'])}, expected {h}")
        if kind != "rnn_relu":
            _check(op.attrs.get("activations") in ACTIVATIONS,
                   f"activations must be one of {ACTIVATIONS}, got {op.attrs.get('activations')!r}")
        return h

    return infer


def _defaults(kind: str):
    gates = _GATES[kind]

    def defaults(op: Op) -> dict:
        w = op.attrs.get("W_ih")
        if not isinstance(w, Matrix):
            return {}
        h = w.shape[0] // gates
        out = {"b_ih": Vector.zeros(w.shape[0]), "b_hh": Vector.zeros(w.shape[0]), "h0": Vector.zeros(h)}
        if kind == "lstm":
            out["c0"] = Vector.zeros(h)
        return out

    return defaults


def _attrs(kind: str) -> dict:
    gates = {"rnn_relu": "", "lstm": " (gates i, f, g, o)", "gru": " (gates r, z, n)"}[kind]
    out = {
        "W_ih": AttrSpec("matrix", doc=f"input weights{gates}"),
        "W_hh": AttrSpec("matrix", doc=f"recurrent weights{gates}"),
        "b_ih": AttrSpec("vector", False, "input bias"),
        "b_hh": AttrSpec("vector", False, "recurrent bias"),
        "h0": AttrSpec("vector", False, "initial hidden state"),
    }
    if kind == "lstm":
        out["c0"] = AttrSpec("vector", False, "initial cell state")
    if kind != "rnn_relu":
        out["activations"] = AttrSpec("str", doc="'ideal' (σ, tanh → ReLU) or 'standard'")
    return out


# ------------------------------------------------------------------------------------------ numerics

def _relu(x: np.ndarray) -> np.ndarray:
    if x.dtype == object:
        out = np.empty(x.shape, dtype=object)
        out[...] = _ZERO
        pos = np.asarray(x > 0, dtype=bool)
        out[pos] = x[pos]
        return out
    return np.maximum(x, 0.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return expit(x)


def _activations(op: Op, exact: bool):
    mode = op.attrs.get("activations", "ideal")
    if mode == "ideal":
        return _relu, _relu
    if exact:
        from ..errors import LsrlError
        raise LsrlError(f"{op.describe()}: standard activations (sigmoid, tanh) cannot be evaluated in exact "
                        "arithmetic")
    return _sigmoid, np.tanh


def _affine_all(m: Matrix, x: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``x @ m.T + b`` over the last axis of ``(..., d)``."""
    if x.dtype == object:
        out = m.apply(x)
        return out + b if b is not None else out
    out = m.apply(x)
    if b is not None:
        out = out + b
    return out


def _vec(v: Vector, exact: bool) -> np.ndarray:
    return v.array(exact)


def initial_state(op: Op, batch: int, exact: bool) -> tuple:
    """The op's initial state broadcast to the batch: ``(h,)`` or ``(h, c)`` (LSTM)."""
    def rep(v):
        arr = _vec(v, exact)
        out = np.empty((batch, len(arr)), dtype=arr.dtype)
        out[...] = arr
        return out
    if op.kind == "lstm":
        return rep(op.attrs["h0"]), rep(op.attrs["c0"])
    return (rep(op.attrs["h0"]),)


class _Recurrent:
    """``h ↦ W_hh h`` for a batch of hidden states (sparse, or dense when that is cheaper)."""

    def __init__(self, m: Matrix, exact: bool):
        self.zero = m.nnz == 0
        self.exact = exact
        self.m = m
        if not exact and not self.zero:
            csr = m.scipy()
            self.dense = csr.toarray().T.copy() if csr.nnz > 0.2 * csr.shape[0] * csr.shape[1] else None
            self.csr = csr

    def __call__(self, h: np.ndarray) -> np.ndarray:
        if self.exact:
            return self.m.apply(h)
        if self.dense is not None:
            return h @ self.dense
        return np.asarray(self.csr @ h.T).T


def run_op(op: Op, x: np.ndarray, state: tuple | None, exact: bool, backend: str = "numpy"):
    """Run a target op over ``x`` of shape ``(B, T, d)`` from ``state`` (None = the op's initial state).

    Returns ``(y, state)`` with ``y`` of shape ``(B, T, H)`` and the state after the last step.
    ``backend`` is accepted for symmetry with ``linstate``; the recurrent cells run in numpy."""
    batch, length = x.shape[0], x.shape[1]
    if state is None:
        state = initial_state(op, batch, exact)
    if op.kind == "rnn_relu":
        return _run_rnn_relu(op, x, state, exact)
    if op.kind == "lstm":
        return _run_lstm(op, x, state, exact)
    if op.kind == "gru":
        return _run_gru(op, x, state, exact)
    raise ValueError(f"{op.describe()}: not a target op")


def _empty(batch, length, h, exact):
    return np.empty((batch, length, h), dtype=object if exact else np.float64)


def _run_rnn_relu(op: Op, x, state, exact):
    (h,) = state
    hdim = op.dim
    pre = _affine_all(op.attrs["W_ih"], x, _vec(op.attrs["b_ih"] + op.attrs["b_hh"], exact))
    rec = _Recurrent(op.attrs["W_hh"], exact)
    if rec.zero:
        y = _relu(pre)
        return y, ((y[:, -1] if x.shape[1] else h),)
    y = _empty(x.shape[0], x.shape[1], hdim, exact)
    for t in range(x.shape[1]):
        h = _relu(pre[:, t] + rec(h))
        y[:, t] = h
    return y, (h,)


def _run_lstm(op: Op, x, state, exact):
    h, c = state
    H = op.dim
    sig, tanh = _activations(op, exact)
    pre = _affine_all(op.attrs["W_ih"], x, _vec(op.attrs["b_ih"] + op.attrs["b_hh"], exact))
    rec = _Recurrent(op.attrs["W_hh"], exact)
    batch, length = x.shape[0], x.shape[1]
    y = _empty(batch, length, H, exact)
    if rec.zero:
        # gates do not read h: compute them for all steps at once; only the cell recurrence is sequential
        i, f, g, o = sig(pre[..., :H]), sig(pre[..., H:2 * H]), tanh(pre[..., 2 * H:3 * H]), sig(pre[..., 3 * H:])
        ig = i * g
        cs = _empty(batch, length, H, exact)
        f_is_zero = (not exact and not np.any(f)) or (exact and all(v == 0 for v in f.ravel().tolist()))
        if f_is_zero:
            cs[...] = ig
        else:
            for t in range(length):
                c = f[:, t] * c + ig[:, t]
                cs[:, t] = c
        if length:
            c = cs[:, -1]
        y[...] = o * tanh(cs)
        return y, ((y[:, -1] if length else h), c)
    for t in range(length):
        gates = pre[:, t] + rec(h)
        i, f, g, o = sig(gates[:, :H]), sig(gates[:, H:2 * H]), tanh(gates[:, 2 * H:3 * H]), sig(gates[:, 3 * H:])
        c = f * c + i * g
        h = o * tanh(c)
        y[:, t] = h
    return y, (h, c)


def _run_gru(op: Op, x, state, exact):
    (h,) = state
    H = op.dim
    sig, tanh = _activations(op, exact)
    b_ih, b_hh = _vec(op.attrs["b_ih"], exact), _vec(op.attrs["b_hh"], exact)
    pre = _affine_all(op.attrs["W_ih"], x, b_ih)  # (B, T, 3H)
    rec = _Recurrent(op.attrs["W_hh"], exact)
    batch, length = x.shape[0], x.shape[1]
    y = _empty(batch, length, H, exact)
    one = Fraction(1) if exact else 1.0
    for t in range(length):
        hh = np.broadcast_to(b_hh, (batch, 3 * H)) if rec.zero else rec(h) + b_hh
        r = sig(pre[:, t, :H] + hh[:, :H])
        z = sig(pre[:, t, H:2 * H] + hh[:, H:2 * H])
        n = tanh(pre[:, t, 2 * H:] + r * hh[:, 2 * H:])
        h = (one - z) * n + z * h
        y[:, t] = h
    return y, (h,)


def _forward(op: Op, inputs: list, exact: bool) -> np.ndarray:
    (x,) = inputs
    return run_op(op, x, None, exact)[0]


for _kind, _summary in (("rnn_relu", "Elman RNN with ReLU: h' = ReLU(W_ih x + b_ih + W_hh h + b_hh)"),
                        ("lstm", "LSTM layer (torch gate order i, f, g, o)"),
                        ("gru", "GRU layer (torch gate order r, z, n; r applied to W_hn h + b_hn)")):
    if _kind not in OPS:
        register_op(OpDef(_kind, _summary, _infer(_kind), attrs=_attrs(_kind), stateful=True, forward=_forward,
                          defaults=_defaults(_kind)))
