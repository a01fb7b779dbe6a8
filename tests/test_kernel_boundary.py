"""The binding boundary of ``lsrl._kernel``: selective scan, ``out=`` arguments, the sequence-wide maps, the
structure report, and every way a ``Plan`` can be built or run wrongly.  A wrong dtype, shape, stride, CSR
structure or non-finite parameter must raise a Python exception (never crash), before any kernel runs.

The scans' own boundary (``linear_scan_*``) is tested in ``test_kernel_scan.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

K = pytest.importorskip("lsrl._kernel", reason="C++ extension lsrl._kernel is not built")

F64, F32 = np.float64, np.float32


# ------------------------------------------------------------------------------------------ selective scan

def selective_reference(a, b, h0):
    out = np.empty_like(b)
    h = h0.copy()
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 8, 9, 300, 600])
@pytest.mark.parametrize("batch", [1, 2, 5, 9])
@pytest.mark.parametrize("dtype", [F64, F32])
def test_selective_and_diagonal_scans_match_a_loop(k, batch, dtype):
    rng = np.random.default_rng(k * 100 + batch)
    steps = 23
    a = rng.uniform(-1, 1, (batch, steps, k)).astype(dtype)
    b = rng.uniform(-1, 1, (batch, steps, k)).astype(dtype)
    h0 = rng.uniform(-1, 1, (batch, k)).astype(dtype)
    for threads in (1, 2, 0):
        got = K.selective_scan(a, b, h0, num_threads=threads)
        assert got.dtype == dtype
        assert np.array_equal(got, selective_reference(a, b, h0))  # same operations, same order
    diag = a[0, 0].copy()
    want = selective_reference(np.broadcast_to(diag, a.shape).copy(), b, h0)
    for threads in (1, 2, 0):
        assert np.array_equal(K.linear_scan_diag(diag, b, h0, num_threads=threads), want)


def test_scans_in_place_and_into_out():
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (2, 30, 6))
    b = rng.uniform(-1, 1, (2, 30, 6))
    h0 = rng.uniform(-1, 1, (2, 6))
    want = selective_reference(a, b, h0)
    out = np.empty_like(b)
    assert K.selective_scan(a, b, h0, out=out) is out and np.array_equal(out, want)
    b2 = b.copy()
    K.selective_scan(a, b2, h0, out=b2)
    assert np.array_equal(b2, want)
    a2 = a.copy()
    K.selective_scan(a2, b, h0, out=a2)
    assert np.array_equal(a2, want)
    diag = rng.uniform(-1, 1, 6)
    u = b.copy()
    want = K.linear_scan_diag(diag, b, h0)
    K.linear_scan_diag(diag, u, h0, out=u)
    assert np.array_equal(u, want)
    A = np.diag(diag) + np.eye(6, k=1) * 0.5
    import scipy.sparse as sp
    csr = sp.csr_matrix(A)
    want = K.linear_scan_csr(csr.indptr, csr.indices, csr.data, b, h0)
    u = b.copy()
    K.linear_scan_csr(csr.indptr, csr.indices, csr.data, u, h0, out=u)
    assert np.array_equal(u, want)
    u = b.copy()
    K.linear_scan_dense(A, u, h0, out=u)
    assert np.allclose(u, want, rtol=0, atol=1e-12)


def test_selective_scan_rejects_bad_arguments():
    a = np.ones((2, 3, 4))
    b = np.ones((2, 3, 4))
    h0 = np.zeros((2, 4))
    with pytest.raises(TypeError, match="dtype mismatch"):
        K.selective_scan(a.astype(F32), b, h0)
    with pytest.raises(TypeError, match="float64 or float32"):
        K.selective_scan(a.astype(np.int64), b, h0)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.selective_scan(a.tolist(), b, h0)
    with pytest.raises(ValueError, match="a must be 3-D"):
        K.selective_scan(a[0], b, h0)
    with pytest.raises(ValueError, match="must be equal"):
        K.selective_scan(a[:, :2], b, h0)
    with pytest.raises(ValueError, match="h0 has shape"):
        K.selective_scan(a, b, h0[:1])
    with pytest.raises(ValueError, match="num_threads"):
        K.selective_scan(a, b, h0, num_threads=-1)
    # non-contiguous inputs are copied, not misread
    wide = np.ones((2, 3, 8))
    assert np.array_equal(K.selective_scan(wide[:, :, ::2], b, h0), K.selective_scan(a, b, h0))


@pytest.mark.parametrize("bad_out,match", [
    (lambda b: np.empty((2, 3, 5)), "out has shape"),
    (lambda b: np.empty((2, 3, 4), dtype=F32), "no implicit casting"),
    (lambda b: np.empty((2, 3, 8))[:, :, ::2], "C-contiguous"),
    (lambda b: [0.0], "numpy.ndarray"),
    (lambda b: np.broadcast_to(np.empty(4), (2, 3, 4)), "C-contiguous"),
])
def test_out_is_validated(bad_out, match):
    a = np.ones((2, 3, 4))
    b = np.ones((2, 3, 4))
    h0 = np.zeros((2, 4))
    with pytest.raises((TypeError, ValueError), match=match):
        K.selective_scan(a, b, h0, out=bad_out(b))
    with pytest.raises((TypeError, ValueError), match=match):
        K.linear_scan_diag(np.ones(4), b, h0, out=bad_out(b))


def test_out_must_not_partially_overlap_or_be_read_only():
    buf = np.ones(2 * 3 * 4 + 4)
    b = buf[:24].reshape(2, 3, 4)
    shifted = buf[4:].reshape(2, 3, 4)
    with pytest.raises(ValueError, match="partially overlaps"):
        K.linear_scan_diag(np.ones(4), b, np.zeros((2, 4)), out=shifted)
    h0 = np.zeros((2, 4))
    with pytest.raises(ValueError, match="must not overwrite"):
        K.linear_scan_diag(np.ones(4), np.ones((1, 1, 4)), h0[:1], out=h0[:1].reshape(1, 1, 4))
    ro = np.empty((2, 3, 4))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        K.linear_scan_diag(np.ones(4), b, h0, out=ro)


# ------------------------------------------------------------------------------------------ structure, maps

def test_recurrence_structure_classifies_rows():
    import scipy.sparse as sp
    a = np.zeros((9, 9))
    a[0, 0] = 1          # diag
    a[1, 2] = 1          # single (shift)
    a[2, 2] = 0.8        # pair (rotation)
    a[2, 3] = -0.6
    a[3, 2] = 0.6
    a[3, 3] = 0.8
    a[4, :3] = 1         # general
    # rows 5..8 empty
    csr = sp.csr_matrix(a)
    info = K.recurrence_structure(csr.indptr, csr.indices)
    assert info == {"empty": 4, "diag": 1, "single": 1, "pair": 2, "general": 1, "segments": 5}
    with pytest.raises(ValueError, match="out of range"):
        K.recurrence_structure(np.array([0, 1]), np.array([3]))


@pytest.mark.parametrize("dtype", [F64, F32])
def test_sparse_affine_relu_multi(dtype):
    import scipy.sparse as sp
    rng = np.random.default_rng(2)
    W = sp.random(7, 5, density=0.5, random_state=3, format="csr").astype(dtype)
    b = rng.uniform(-1, 1, 7).astype(dtype)
    X = rng.uniform(-1, 1, (3, 11, 5)).astype(dtype)
    Y = K.sparse_affine(W.indptr, W.indices, W.data, b, X)
    want = np.asarray(W @ X.reshape(-1, 5).T).T.reshape(3, 11, 7) + b
    assert Y.dtype == dtype and np.allclose(Y, want, rtol=1e-6 if dtype == F32 else 1e-14)
    assert np.array_equal(K.relu(X), np.maximum(X, 0))
    assert np.array_equal(K.multi(X[..., :4]), X[..., :2] * X[..., 2:4])
    nan = np.array([np.nan, -1.0, 2.0], dtype=dtype)
    assert np.isnan(K.relu(nan)[0])
    with pytest.raises(ValueError, match="even last axis"):
        K.multi(X)
    with pytest.raises(ValueError, match="out of range"):
        K.sparse_affine(W.indptr, W.indices, W.data, b, X[..., :3])
    with pytest.raises(ValueError, match="bias has shape"):
        K.sparse_affine(W.indptr, W.indices, W.data, b[:3], X)
    with pytest.raises(ValueError, match="must be finite"):
        K.sparse_affine(W.indptr, W.indices, np.where(W.data > 0, np.inf, W.data).astype(dtype), b, X)
    with pytest.raises(TypeError, match="dtype mismatch"):
        K.sparse_affine(W.indptr, W.indices, W.data.astype(F64 if dtype == F32 else F32), b, X)


# ------------------------------------------------------------------------------------------ Plan

def csr_of(dense, dtype=F64):
    import scipy.sparse as sp
    m = sp.csr_matrix(np.asarray(dense, dtype=dtype))
    return (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(dtype))


def lstm_plan_nodes(dtype=F64):
    W = csr_of(np.ones((8, 3)), dtype)
    R = csr_of(np.eye(8, 2) * 0.5, dtype)
    return [
        {"kind": "input", "dim": 3},
        {"kind": "lstm", "inputs": [0], "dim": 2, "W": W, "b": np.zeros(8, dtype), "R": R,
         "init": np.zeros(4, dtype), "ideal": False, "name": "cell"},
        {"kind": "affine", "inputs": [1], "dim": 1, "W": csr_of([[1.0, -1.0]], dtype), "b": None},
    ]


def test_plan_runs_and_reports():
    plan = K.Plan(lstm_plan_nodes(), 2)
    assert plan.dtype == "float64" and plan.d_in == 3 and plan.d_out == 1
    assert plan.state_dims == [4] and plan.state_nodes == [1]
    assert plan.function_sources["tanh"] in ("numpy", "libm") and set(plan.function_sources) == {"tanh"}
    ys, states = plan.run(np.ones((2, 5, 3)))
    assert ys.shape == (2, 5, 1) and len(states) == 1 and states[0].shape == (2, 4)
    ys2, _ = plan.run(np.ones((2, 5, 3)), [states[0]])
    assert ys2.shape == (2, 5, 1)
    shape = plan.shape_for(64, 1000, num_threads=2, lanes=128)
    assert shape["batch_group"] * shape["time_block"] <= 128 and shape["threads"] <= 2
    assert K.Plan(lstm_plan_nodes(F32), 2, "float32").run(np.ones((1, 4, 3), F32))[0].dtype == F32


def mutate(index, **changes):
    def build(dtype=F64):
        nodes = lstm_plan_nodes(dtype)
        for key, value in changes.items():
            if value is KeyError:
                del nodes[index][key]
            else:
                nodes[index][key] = value(dtype) if callable(value) else value
        return nodes
    return build


BAD_PLANS = [
    (mutate(1, kind="transformer"), ValueError, "unknown kind 'transformer'"),
    (mutate(1, kind=3), TypeError, "'kind' must be a str"),
    (mutate(1, inputs=[1]), ValueError, "must refer to an earlier node"),
    (mutate(1, inputs=[0, 0]), ValueError, "takes one operand"),
    (mutate(1, inputs="0"), TypeError, "list of ints"),
    (mutate(1, dim=-1), ValueError, r"'dim' must be between 0 and 2\^31, got -1"),
    (mutate(1, dim=0), ValueError, r"expected dim >= 1 \(a lstm has a state\)"),
    (mutate(1, dim=2 ** 40), ValueError, r"'dim' must be between 0 and 2\^31"),
    (mutate(1, dim=2 ** 70), ValueError, r"'dim' must be between 0 and 2\^31, got 1180591620717411303424"),
    (mutate(1, inputs=[2 ** 70]), ValueError, r"'inputs' must be between 0 and 2\^31"),
    (mutate(1, dim=3), ValueError, r"'W': indptr has length 9, expected rows \+ 1 = 13"),
    (mutate(1, dim=True), TypeError, "must be an int"),
    (mutate(1, W=KeyError), ValueError, "missing 'W'"),
    (mutate(1, W=lambda dt: csr_of(np.ones((8, 3)), dt)[:2]), TypeError, r"tuple \(indptr, indices, data\)"),
    (mutate(1, W=lambda dt: csr_of(np.ones((8, 4)), dt)), ValueError, "out of range"),
    (mutate(1, W=lambda dt: (np.r_[np.arange(8), 9], np.zeros(8, np.int64), np.ones(8, dt))), ValueError,
     "must equal"),
    (mutate(1, W=lambda dt: (np.arange(9) * 1.0, np.zeros(8, np.int64), np.ones(8, dt))), TypeError, "integer dtype"),
    (mutate(1, W=lambda dt: (np.arange(9), np.zeros(8, np.int64), np.full(8, np.nan, dt))), ValueError,
     "must be finite"),
    (mutate(1, R=lambda dt: csr_of(np.full((8, 2), np.inf), dt)), ValueError, "'R' data must be finite"),
    (mutate(1, b=lambda dt: np.zeros(7, dt)), ValueError, r"'b' has shape \(7,\), expected \(8,\)"),
    (mutate(1, b=lambda dt: np.full(8, np.inf, dt)), ValueError, "'b' must be finite"),
    (mutate(1, b=np.zeros(8, np.int32)), TypeError, "float64 or float32"),
    (mutate(1, init=lambda dt: np.zeros(2, dt)), ValueError, r"'init' has shape \(2,\), expected \(4,\)"),
    (mutate(1, init=lambda dt: np.array([np.nan, 0, 0, 0], dt)), ValueError, "'init' must be finite"),
    (mutate(1, ideal="no"), TypeError, "must be a bool"),
    (mutate(0, kind="relu"), ValueError, "node 0 must be the input"),
    (mutate(2, kind="input"), ValueError, "only node 0 may be an input"),
    (mutate(2, kind="multi", dim=2), ValueError, r"operand dim == 2 \* dim"),
    (mutate(2, kind="slice", start=5), ValueError, "start \\+ dim <= operand dim"),
    # start + dim past int64 pointed the slice outside the work area (a segfault)
    (mutate(2, kind="slice", start=2 ** 63 - 1), ValueError, r"'start' must be between 0 and 2\^31"),
    (mutate(2, kind="concat", inputs=[0, 1]), ValueError, "sum of the operand dims"),
]


@pytest.mark.parametrize("build,error,match", BAD_PLANS, ids=[m for _, _, m in BAD_PLANS])
@pytest.mark.parametrize("dtype", [F64, F32])
def test_bad_plans_raise(build, error, match, dtype):
    with pytest.raises(error, match=match):
        K.Plan(build(dtype), 2, "float64" if dtype == F64 else "float32")


def test_a_linstate_of_no_coordinates_is_refused():
    # it got no state slot, and its run read the state before the first (a segfault)
    empty = (np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0))
    nodes = [{"kind": "input", "dim": 2},
             {"kind": "linstate", "inputs": [0], "dim": 0, "W": empty, "R": empty, "init": np.zeros(0)}]
    with pytest.raises(ValueError, match=r"node 1: linstate with operand dim 2 has dim 0; expected dim >= 1"):
        K.Plan(nodes, 1)


def test_a_node_key_is_named_once():
    nodes = mutate(1, W=lambda dt: (np.arange(9), np.zeros(8, np.int64), np.full(8, np.nan, dt)))()
    with pytest.raises(ValueError) as info:
        K.Plan(nodes, 2)
    assert str(info.value).startswith("lsrl._kernel.Plan: node 1 (cell): 'W' data must be finite")


def test_plan_dtype_must_match_parameters_and_runs():
    with pytest.raises(TypeError, match="this call works in float32"):
        K.Plan(lstm_plan_nodes(F64), 2, "float32")
    with pytest.raises(TypeError, match="dtype must be 'float64' or 'float32'"):
        K.Plan(lstm_plan_nodes(), 2, "float16")
    with pytest.raises(ValueError, match="output 5 is not a node index"):
        K.Plan(lstm_plan_nodes(), 5)
    with pytest.raises(ValueError, match="no nodes"):
        K.Plan([], 0)
    with pytest.raises(TypeError, match="must be a dict"):
        K.Plan([("input", 3)], 0)


BAD_RUNS = [
    (lambda: (np.ones((2, 5, 3), F32), None), TypeError, "this call works in float64"),
    (lambda: (np.ones((2, 5, 3), np.int64), None), TypeError, "float64 or float32"),
    (lambda: (np.ones((5, 3)), None), ValueError, "xs must be 3-D"),
    (lambda: (np.ones((2, 5, 4)), None), ValueError, "input has dim 3"),
    (lambda: (np.ones((2, 5, 6))[:, :, ::2], None), ValueError, "C-contiguous"),
    (lambda: (np.ones((2, 10, 3))[:, ::2], None), ValueError, "C-contiguous"),
    (lambda: ([[[1.0, 2.0, 3.0]]], None), TypeError, "numpy.ndarray"),
    (lambda: (np.ones((2, 5, 3)), [None, None]), ValueError, "has 2 entries but the plan has 1"),
    (lambda: (np.ones((2, 5, 3)), np.zeros((2, 4))), TypeError, "states must be None or a list"),
    (lambda: (np.ones((2, 5, 3)), [np.zeros((2, 3))]), ValueError, r"expected \(2, 4\)"),
    (lambda: (np.ones((2, 5, 3)), [np.zeros((1, 4))]), ValueError, r"expected \(2, 4\)"),
    (lambda: (np.ones((2, 5, 3)), [np.zeros((2, 4), F32)]), TypeError, "this call works in float64"),
    (lambda: (np.ones((2, 5, 3)), [np.zeros((4, 4))[::2]]), ValueError, "C-contiguous"),
    (lambda: (np.ones((2, 5, 3)), [np.zeros(8)]), ValueError, "must be 2-D"),
]


@pytest.mark.parametrize("args,error,match", BAD_RUNS, ids=[m for _, _, m in BAD_RUNS])
def test_bad_runs_raise(args, error, match):
    plan = K.Plan(lstm_plan_nodes(), 2)
    xs, states = args()
    with pytest.raises(error, match=match):
        plan.run(xs, states)


def test_run_options_are_validated():
    plan = K.Plan(lstm_plan_nodes(), 2)
    with pytest.raises(ValueError, match="num_threads"):
        plan.run(np.ones((1, 2, 3)), num_threads=-1)
    with pytest.raises(ValueError, match="lanes"):
        plan.run(np.ones((1, 2, 3)), lanes=-1)
    with pytest.raises(TypeError):
        plan.run(np.ones((1, 2, 3)), lanes="many")
    with pytest.raises(ValueError, match="batch and steps must be >= 0, got -5 and -7"):
        plan.shape_for(-5, -7)


def test_empty_shapes():
    plan = K.Plan(lstm_plan_nodes(), 2)
    ys, st = plan.run(np.ones((0, 5, 3)))
    assert ys.shape == (0, 5, 1) and st[0].shape == (0, 4)
    init = np.arange(8.0).reshape(2, 4)
    ys, st = plan.run(np.ones((2, 0, 3)), [init])
    assert ys.shape == (2, 0, 1) and np.array_equal(st[0], init)


def test_non_finite_inputs_propagate_without_crashing():
    plan = K.Plan(lstm_plan_nodes(), 2)
    xs = np.ones((1, 4, 3))
    xs[0, 1, 0] = np.nan
    ys, _ = plan.run(xs)
    assert np.all(np.isfinite(ys[0, :1])) and np.isnan(ys[0, 1:]).all()
