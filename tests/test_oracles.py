"""Compiled models against oracles that share no code with the compiler or its executors.

* ``plain_cells`` runs a lowered module with dense numpy and the textbook cell equations in the PyTorch
  gate order (LSTM i, f, g, o; GRU r, z, n) — written here, not taken from the target modules — so a weight
  layout that the model's own forward and the C++ executor read the same wrong way is still noticed.
* ``evaluate_per_token`` (tests/reference_eval.py) runs the source program step by step.
* Range analysis is held to bounds worked out by hand and to the values the program actually reaches.

The standard-mode tolerances are each within ~10–100× of the error measured for that case (stated next to
it), so a precision loss of the lowering — not only a wrong answer — fails them.
"""
from __future__ import annotations

import numpy as np
import pytest

import lsrl
from lsrl.ir.core import Module, Op
from lsrl.ir.matrix import Matrix, Vector
from lsrl.passes.range_analysis import RangeAnalysis, compute_ranges
from lsrl.programs import more_ones, token_map
from lsrl.runtime import executor, kernel_available
from reference_eval import evaluate_per_token
from test_targets import rel_err

needs_kernel = pytest.mark.skipif(not kernel_available(), reason="needs the C++ kernel")


# ------------------------------------------------------------------------------------------ the oracle

def _dense(m: Matrix) -> np.ndarray:
    return np.asarray(m.to_float().to_dense(), dtype=np.float64)


def _vec(v: Vector) -> np.ndarray:
    return np.asarray(v.to_float().values, dtype=np.float64)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def plain_cells(module: Module, xs: np.ndarray, *, cell_states: list | None = None) -> np.ndarray:
    """Outputs of a lowered ``relu_rnn``/``lstm``/``gru`` module on ``xs`` (B, T, d_in), one step at a time.
    When ``cell_states`` is a list, the LSTM layers append their cell states (B, T, H) to it."""
    values = {id(module.input): np.asarray(xs, dtype=np.float64)}
    for op in module.ops[1:]:
        x = values[id(op.operands[0])]
        if op.kind == "linear":
            values[id(op)] = x @ _dense(op.attrs["A"]).T + _vec(op.attrs["b"])
            continue
        ideal = op.attrs.get("activations", "ideal") == "ideal"
        gate = (lambda z: np.maximum(z, 0.0)) if ideal else _sigmoid
        squash = (lambda z: np.maximum(z, 0.0)) if ideal else np.tanh
        w_ih, w_hh = _dense(op.attrs["W_ih"]), _dense(op.attrs["W_hh"])
        b_ih, b_hh = _vec(op.attrs["b_ih"]), _vec(op.attrs["b_hh"])
        H = op.dim
        B, T, _ = x.shape
        h = np.tile(_vec(op.attrs["h0"]), (B, 1))
        c = np.tile(_vec(op.attrs["c0"]), (B, 1)) if op.kind == "lstm" else None
        out, cells = np.empty((B, T, H)), np.empty((B, T, H))
        for t in range(T):
            xi = x[:, t] @ w_ih.T + b_ih
            hh = h @ w_hh.T + b_hh
            if op.kind == "rnn_relu":
                h = np.maximum(xi + hh, 0.0)
            elif op.kind == "lstm":
                pre = xi + hh
                i, f, g, o = (pre[:, k * H:(k + 1) * H] for k in range(4))
                c = gate(f) * c + gate(i) * squash(g)
                h = gate(o) * squash(c)
                cells[:, t] = c
            else:  # gru: the reset gate multiplies the recurrent part of n only (torch)
                r = gate(xi[:, :H] + hh[:, :H])
                z = gate(xi[:, H:2 * H] + hh[:, H:2 * H])
                n = squash(xi[:, 2 * H:] + r * hh[:, 2 * H:])
                h = (1.0 - z) * n + z * h
            out[:, t] = h
        if op.kind == "lstm" and cell_states is not None:
            cell_states.append(cells)
        values[id(op)] = out
    return values[id(module.output)]


# ------------------------------------------------------------------------------------------ programs

def _module(ops: list[Op], output: Op) -> Module:
    for k, op in enumerate(ops):
        op.name = op.name or f"v{k}"
    return Module(ops, output, name="case").verify()


def _input(d: int, lo: float, hi: float) -> Op:
    return Op("input", (), {"dim": d, "lower": Vector(np.full(d, lo)), "upper": Vector(np.full(d, hi))}, name="x")


def product_program() -> Module:
    """``y = x0 · x1`` and ``x0 · s`` with ``s`` a decaying sum of ``x1``: two products whose operands reach
    their range bounds, so the standard-mode product units work at the edge of their stated accuracy."""
    x = _input(2, -1.0, 1.0)
    s = Op("linstate", [x], {"A": Matrix.from_dense([[0.5]]), "B": Matrix.from_dense([[0.0, 1.0]]),
                             "bias": Vector([0.0]), "init": Vector([0.0])})
    x0 = Op("slice", [x], {"start": 0, "end": 1})
    x1 = Op("slice", [x], {"start": 1, "end": 2})
    pair = Op("concat", [x0, x0, x1, s])
    prod = Op("multi", [pair])
    return _module([x, s, x0, x1, pair, prod], prod)


def edge_inputs(batch: int, length: int, seed: int) -> np.ndarray:
    """Inputs in [-1, 1] with most entries at ±1 (the operands' bounds)."""
    rng = np.random.default_rng(seed)
    xs = rng.choice([-1.0, 1.0], size=(batch, length, 2))
    xs[:, ::3] = rng.uniform(-1, 1, size=xs[:, ::3].shape)
    return xs


# ------------------------------------------------------------------------------------------ LSTM / GRU gate layout

@pytest.mark.parametrize("target", ["lstm", "gru"])
def test_standard_model_run_by_plain_cells_matches_the_program(target):
    """The standard-mode weights, read in the PyTorch gate order by cells written here, compute the program."""
    module = product_program()
    xs = edge_inputs(3, 16, seed=1)
    model = lsrl.compile(module, target, activations="standard", t_max=16)
    reference = evaluate_per_token(module, xs)
    # measured: 1.24e-10 for both (the product units' truncation ρ_g⁴/30 with the operands at their bounds)
    assert rel_err(plain_cells(model.module, xs), reference) <= 1e-9


@pytest.mark.parametrize("target", ["relu_rnn", "lstm", "gru"])
def test_ideal_model_run_by_plain_cells_matches_the_program(target):
    program = more_ones() if target == "relu_rnn" else token_map(2, vocab_size=6)
    rng = np.random.default_rng(3)
    xs = rng.integers(0, 2 if target == "relu_rnn" else 6, size=(2, 24, 1)).astype(float)
    model = lsrl.compile(program, target, t_max=24)
    reference = evaluate_per_token(program.ir, xs)
    # ideal mode is exact in exact arithmetic; measured float64 error 0 on these inputs (integer-valued sums)
    assert rel_err(plain_cells(model.module, xs), reference) <= 1e-12


def test_ideal_lstm_relu_units_hold_cell_state_one():
    """App. D.1/D.2 (docs/targets.md): an ideal LSTM ReLU unit has f = 0, i = g = 1, so c = 1 and h = o; only
    product units keep c = i·g.  (The ideal output cannot tell the g and o rows apart — ReLU(o)·ReLU(c) is
    symmetric in them — so the cell state is what pins the gate order.)"""
    program = token_map(2, vocab_size=6)
    xs = np.random.default_rng(4).integers(0, 6, size=(2, 20, 1)).astype(float)
    model = lsrl.compile(program, "lstm", t_max=20)
    cells: list = []
    plain_cells(model.module, xs, cell_states=cells)
    lstm_layers = [info for info in model.layout[1:] if isinstance(info, dict) and "units" in info]
    assert len(lstm_layers) == len(cells)
    checked = 0
    for info, c in zip(lstm_layers, cells):
        for unit in info["units"]:
            if unit["role"].startswith("product"):
                continue
            np.testing.assert_array_equal(c[..., unit["start"]:unit["end"]], 1.0)
            checked += unit["end"] - unit["start"]
    assert checked > 10


def _random_cell(kind: str, x: Op, H: int, rng) -> Op:
    d = x.dim
    gates = {"rnn_relu": 1, "lstm": 4, "gru": 3}[kind]
    attrs = {"W_ih": Matrix.from_dense(rng.normal(size=(gates * H, d))),
             "W_hh": Matrix.from_dense(rng.normal(size=(gates * H, H)) * 0.5),
             "b_ih": Vector(rng.normal(size=gates * H)), "b_hh": Vector(rng.normal(size=gates * H)),
             "h0": Vector(rng.uniform(-1, 1, size=H) if kind != "rnn_relu" else rng.uniform(0, 1, size=H))}
    if kind == "lstm":
        attrs["c0"] = Vector(rng.uniform(-1, 1, size=H))
    if kind != "rnn_relu":
        attrs["activations"] = "standard"
    return Op(kind, [x], attrs, name="cell")


@needs_kernel
@pytest.mark.parametrize("kind", ["rnn_relu", "lstm", "gru"])
def test_kernel_executor_cells_against_plain_cells(kind):
    """The C++ executor's cells on random dense weights (every gate distinct), against the cells above."""
    rng = np.random.default_rng(7)
    x = Op("input", (), {"dim": 3}, name="x")
    cell = _random_cell(kind, x, 5, rng)
    readout = Op("linear", [cell], {"A": Matrix.from_dense(rng.normal(size=(2, 5))), "b": Vector(np.zeros(2))},
                 name="readout")
    module = Module([x, cell, readout], readout, name="cell").verify()
    xs = rng.normal(size=(2, 9, 3))
    got, _ = executor.run(module, xs)
    # measured: 4.0e-16 (lstm), 1.6e-16 (gru), 2.7e-16 (rnn_relu) — two summation orders' float64 rounding
    assert rel_err(got, plain_cells(module, xs)) <= 1e-13


@needs_kernel
@pytest.mark.parametrize("target", ["lstm", "gru"])
def test_kernel_executor_runs_standard_models_like_the_program(target):
    module = product_program()
    xs = edge_inputs(2, 16, seed=2)
    model = lsrl.compile(module, target, activations="standard", t_max=16)
    got, _ = executor.run(model.module, xs)
    # measured: 1.24e-10 for both, as the plain cells (the lowering's error, not the executor's)
    assert rel_err(got, evaluate_per_token(module, xs)) <= 1e-9


# ------------------------------------------------------------------------------------------ counters' bounds

def counter_program(init: float, lo: float, hi: float) -> Module:
    """``s_t = s_{t−1} + x_t`` from ``s_0 = init``, ``x ∈ [lo, hi]``."""
    x = _input(1, lo, hi)
    s = Op("linstate", [x], {"A": Matrix.from_dense([[1.0]]), "B": Matrix.from_dense([[1.0]]),
                             "bias": Vector([0.0]), "init": Vector([init])})
    return _module([x, s], s)


@pytest.mark.parametrize("init, lo, hi, t_max, expected", [
    (0.0, 0.0, 1.0, 5, (0.0, 5.0)),          # s_t ∈ [0, t]
    (2.0, -1.0, 3.0, 5, (-3.0, 17.0)),       # s_0 + t·[lo, hi] over 1 ≤ t ≤ 5
    (0.0, 0.0, 1.0, 1, (0.0, 1.0)),
    (0.5, 0.25, 0.75, 1000, (0.75, 750.5)),
])
def test_counter_bound_is_init_plus_t_max_drives(init, lo, hi, t_max, expected):
    counter = counter_program(init, lo, hi)
    lower, upper = compute_ranges(counter, t_max=t_max)[id(counter.output)]
    assert (float(lower[0]), float(upper[0])) == expected
    # the bounds are reached: the extreme drives for t_max steps
    assert evaluate_per_token(counter, np.full((t_max, 1), lo)).min() == expected[0]
    assert evaluate_per_token(counter, np.full((t_max, 1), hi)).max() == expected[1]


def test_values_bounded_below_by_zero_are_nonnegative():
    """``nonnegative`` decides the ± splits: a ReLU's output (lower bound exactly 0) and an input declared in
    [0, 4] need no negative unit; ``x − 1`` does."""
    x = _input(1, 0.0, 4.0)
    shifted = Op("linear", [x], {"A": Matrix.from_dense([[1.0]]), "b": Vector([-1.0])})
    relu = Op("relu", [shifted])
    module = _module([x, shifted, relu], relu)
    ranges = RangeAnalysis(module)
    assert [ranges.nonnegative(op) for op in (x, shifted, relu)] == [True, False, True]
    assert float(ranges(relu)[0][0]) == 0.0 and float(ranges(relu)[1][0]) == 3.0


def test_gru_product_gate_scaled_by_the_counter_bound():
    """A GRU product's gate operand — the one of known sign, here the counter ``s ∈ [0, t]`` times the signed
    ``x − 1/2`` — is divided by a power of two K ≥ its range bound (D7): a counter that reaches 5 at t_max = 5
    needs K = 8 (a bound of 4 would give K = 4 and a clipped gate at the last step)."""
    counter = counter_program(0.0, 0.0, 1.0)
    x, s = counter.ops
    centred = Op("linear", [x], {"A": Matrix.from_dense([[1.0]]), "b": Vector([-0.5])})
    pair = Op("concat", [s, centred])
    prod = Op("multi", [pair])
    module = _module([x, s, centred, pair, prod], prod)
    xs = np.ones((1, 5, 1))
    out = lsrl.compile(module, "gru", t_max=5, exact=True)(xs, exact=True)
    assert [float(v) for v in out[0, :, 0]] == [0.5, 1.0, 1.5, 2.0, 2.5]


# ------------------------------------------------------------------------------------------ standard-mode precision

# Each case's error measured (float64, numpy backend) and its tolerance, 8× above it:
# a change of the standard-mode scales that costs two orders of magnitude of precision fails here even though
# every answer is still right.
STANDARD_PRECISION_CASES = {
    # (target, case): (measured, tolerance)
    ("lstm", "products"): (1.24e-10, 1e-9),
    ("gru", "products"): (1.24e-10, 1e-9),
}


@pytest.mark.parametrize("target, case", list(STANDARD_PRECISION_CASES))
def test_standard_mode_error_stays_at_its_measured_level(target, case):
    measured, tolerance = STANDARD_PRECISION_CASES[(target, case)]
    module = product_program()
    xs = edge_inputs(4, 16, seed=5)
    model = lsrl.compile(module, target, activations="standard", t_max=16)
    err = rel_err(model(xs), evaluate_per_token(module, xs))
    assert err <= tolerance, f"{target}/{case}: error {err:.2e}, measured {measured:.1e}"
