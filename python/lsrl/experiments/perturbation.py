"""Parameter noise and state pinning (experiments.md §1, steps 3 and 4).

**Noise** goes on every stored non-zero entry of every weight matrix and bias vector of a lowered module:
``linstate`` ``A``/``B``/``bias``, ``linear`` ``A``/``b`` (the readout included) and the target cells'
``W_ih``/``W_hh``/``b_ih``/``b_hh`` (gates and all).  Initial states (``init``, ``h0``, ``c0``) are not
parameters of the paper's protocol and stay clean; zero entries stay zero.

**State pinning** runs the perturbed model with every recurrent state before step ``t`` replaced by the clean
model's state there.  Pinned steps are then independent of each other, so they run as one batch of length-1
sequences, each started from its recorded clean state through the executors' ordinary ``states`` argument:
no per-token loop, and only the scored steps are computed.  The clean states are recorded by running the clean
model up to the first scored step in one call and then through the scored steps one at a time (a loop over
the scored steps only: 1 for the continuous program, 10 for the token program).
"""
from __future__ import annotations

import numpy as np

from ..ir.core import Module
from ..ir.matrix import Matrix, Vector
from ..ir.semantics import run_op
from ..model import Model
from ..runtime.executor import run as run_kernel

__all__ = ["INITIAL_STATE_ATTRS", "BACKENDS", "perturb", "pinned_outputs", "record_clean_states",
           "parameter_entries"]

INITIAL_STATE_ATTRS = frozenset({"init", "h0", "c0"})
BACKENDS = ("kernel", "numpy")


def _parameters(op):
    """``(name, value)`` of the op's weight matrices and bias vectors, in a fixed order."""
    for name in sorted(op.attrs):
        value = op.attrs[name]
        if name not in INITIAL_STATE_ATTRS and isinstance(value, (Matrix, Vector)):
            yield name, value


def parameter_entries(module: Module) -> list:
    """``(op index, attribute, flat position, value)`` of every stored non-zero parameter (what noise touches;
    op 0 is the input, whose attributes are the input's bounds)."""
    out = []
    for index, op in enumerate(module.ops[1:], start=1):
        for name, value in _parameters(op):
            if isinstance(value, Matrix):
                csr = value.scipy()
                rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
                flat = rows * csr.shape[1] + csr.indices
                out.extend((index, name, int(p), float(v)) for p, v in zip(flat, csr.data))
            else:
                values = value.array(False)
                out.extend((index, name, int(p), float(values[p])) for p in np.flatnonzero(values))
    return out


def perturb(model: Model, sigma: float, seed: np.random.SeedSequence) -> Model:
    """A copy of ``model`` with ``N(0, sigma²)`` added to every stored non-zero parameter; ``sigma == 0``
    returns ``model`` itself.  Draws follow the module's op order and each op's attribute names, so the noise
    depends only on ``seed`` and the model."""
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"perturb: sigma must be a finite number >= 0, got {sigma!r}")
    if sigma == 0:
        return model
    rng = np.random.default_rng(seed)
    module = model.module.clone()
    for op in module.ops[1:]:  # the input op holds the input's bounds, not parameters
        for name, value in _parameters(op):
            if isinstance(value, Matrix):
                csr = value.scipy().copy()
                csr.data = csr.data + sigma * rng.standard_normal(csr.nnz)
                op.attrs[name] = Matrix.from_scipy(csr)
            else:
                values = value.array(False)
                nonzero = values != 0
                noisy = values.copy()
                noisy[nonzero] += sigma * rng.standard_normal(int(nonzero.sum()))
                op.attrs[name] = Vector(noisy)
    return Model(module)


def _check_run_options(dtype: str, backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    if backend == "numpy" and dtype != "float64":
        raise ValueError("the numpy backend runs float64 only; use backend='kernel' for float32")


def _run(model: Model, xs: np.ndarray, states: list | None, dtype: str, backend: str):
    """``(outputs, final states)`` of ``model`` over ``xs`` ``(B, T, d_in)`` from ``states`` (None: initial)."""
    if backend == "kernel":
        return run_kernel(model.module, xs, states, dtype=np.dtype(dtype))
    ops = model.module.ops[1:]
    states = states if states is not None else [None] * len(ops)
    finals = []
    x = np.asarray(xs, dtype=np.float64)
    for op, state in zip(ops, states):
        x, state = run_op(op, [x], state)
        finals.append(state)
    return x, finals


def _copy_state(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(np.array(part, dtype=np.float64) for part in state)
    return np.array(state, dtype=np.float64)


def record_clean_states(model: Model, xs: np.ndarray, steps: np.ndarray, dtype: str = "float64",
                        backend: str = "kernel") -> tuple:
    """Run the clean model over ``xs`` ``(B, T, d)`` and return ``(outputs, states)``: the clean outputs at
    ``steps`` ``(B, S, d_out)`` and, per scored step, the state list before that step (``None`` entries are
    stateless ops or initial states).  ``steps`` must be increasing."""
    _check_run_options(dtype, backend)
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1 or not len(steps) or np.any(np.diff(steps) <= 0) or steps[0] < 0 \
            or steps[-1] >= xs.shape[1]:
        raise ValueError(f"steps must be increasing positions inside the sequence (length {xs.shape[1]}), "
                         f"got {steps.tolist()}")
    states = None
    position = 0
    outputs, before = [], []
    for step in steps:
        if step > position:
            _, states = _run(model, xs[:, position:step], states, dtype, backend)
        before.append([_copy_state(s) for s in states] if states is not None else None)
        y, states = _run(model, xs[:, step:step + 1], states, dtype, backend)
        outputs.append(y[:, 0])
        position = step + 1
    return np.stack(outputs, axis=1), before


def _initial(op, batch: int):
    """The op's initial state in the executors' layout, for pinning a step that starts from it."""
    return run_op(op, [np.zeros((batch, 0, op.operands[0].dim))])[1]


def _stack_states(model: Model, per_step: list, batch: int) -> list:
    """Per-step state lists → one state list for the batch of ``B·S`` pinned steps (batch-major)."""
    ops = model.module.ops[1:]
    stacked = []
    for slot, op in enumerate(ops):
        if not op.opdef.stateful:
            stacked.append(None)
            continue
        states = [step[slot] if step is not None and step[slot] is not None else _initial(op, batch)
                  for step in per_step]
        if isinstance(states[0], tuple):
            stacked.append(tuple(_batch_major([s[i] for s in states]) for i in range(len(states[0]))))
        else:
            stacked.append(_batch_major(states))
    return stacked


def _batch_major(per_step: list) -> np.ndarray:
    """Per-step arrays ``(B, *part)`` (a part may be a vector, a matrix such as a conv window, or a scalar such
    as a stream position) → ``(B·S, *part)``, batch-major."""
    stacked = np.stack(per_step, axis=1)
    return stacked.reshape((stacked.shape[0] * stacked.shape[1],) + stacked.shape[2:])


def pinned_outputs(model: Model, xs: np.ndarray, steps: np.ndarray, clean_states: list, dtype: str = "float64",
                   backend: str = "kernel") -> np.ndarray:
    """The outputs ``(B, S, d_out)`` of ``model`` at ``steps`` with every state before a step pinned to
    ``clean_states`` (from :func:`record_clean_states`)."""
    _check_run_options(dtype, backend)
    steps = np.asarray(steps, dtype=np.int64)
    if len(clean_states) != len(steps):
        raise ValueError(f"clean_states has {len(clean_states)} entries for {len(steps)} steps")
    batch = xs.shape[0]
    inputs = xs[:, steps].reshape(batch * len(steps), 1, xs.shape[-1])
    states = _stack_states(model, clean_states, batch)
    y, _ = _run(model, inputs, states, dtype, backend)
    return np.asarray(y, dtype=np.float64).reshape(batch, len(steps), -1)
