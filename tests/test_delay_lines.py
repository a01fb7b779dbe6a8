"""Delay lines (the depthwise conv that Hawk, Griffin and Mamba compute a LinState with when their own recurrence
cannot hold it): a decaying recurrence's window ends where its dropped taps move the state by at most 2^-60 of its
bound, charged to the error bound, so a contraction compiles for any t_max (or none) in either dtype; a row that
reads a state that does not decay keeps its window but drops each entry's lags past its own (taps below float32's
normal range were refused).  Checked against the interpreter with the C++ kernel and with transformers."""
from __future__ import annotations

import numpy as np
import pytest

import lsrl
from hf_io import hf_outputs

pytest.importorskip("torch")
pytest.importorskip("transformers")

TARGETS = ["hawk", "griffin", "mamba"]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _state(A, B, init=None, lower=-1.0, upper=1.0):
    x = lsrl.Input(1, lower=lower, upper=upper)
    return lsrl.ForEach(lsrl.LinState(x, A, B, init_state=init))


def _conv_width(model) -> int:
    meta = model.module.metadata
    return meta["hf"]["conv1d_width"] if "hf" in meta else meta["mamba"]["conv_kernel"]


def _state_op_errors(model) -> np.ndarray:
    form = model.module.layer_form     # the module the error bound analyses; local errors name its ops
    (entry,) = [v for k, v in form.metadata["local_errors"].items() if form.ops[int(k)].kind == "linstate"]
    return np.asarray(entry["on"])


@pytest.mark.parametrize("target", TARGETS)
def test_a_contraction_window_ends_where_its_dropped_taps_are_charged(target):
    # s = s/2 + x with |x| ≤ 1: |s| ≤ 2, and the taps past w move s by 2^-w·|s_{t−w} − s_0| ≤ 2^(1−w); the window
    # is the first w with 2^(1−w) ≤ 2^-60·2
    model = lsrl.compile(_state([[0.5]], [[1.0]]), target, t_max=1000)
    assert _conv_width(model) == 60
    assert _state_op_errors(model).tolist() == [2.0 ** -59]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("t_max", [None, 10 ** 6])
@pytest.mark.parametrize("target", TARGETS)
def test_a_contraction_compiles_for_any_t_max(target, t_max, dtype):
    """Its delay-line taps fell below float32's normal range from t_max ≈ 130 (float64: 1075), refused."""
    c, s = np.cos(0.3), np.sin(0.3)
    A = 0.9 * np.array([[c, -s], [s, c]])          # a damped rotation, from a nonzero state
    prog = _state(A, [[1.0], [0.5]], init=[1.0, -2.0])
    model = lsrl.compile(prog, target, activations="standard", dtype=dtype, t_max=t_max)
    assert _conv_width(model) < 400
    xs = np.random.default_rng(0).uniform(-1, 1, (2, 1500, 1))
    report = model.check(xs, oracle="float64")
    assert report.within_bound
    assert model.error_bound.max() <= (1e-3 if dtype == "float32" else 5e-12)


@pytest.mark.parametrize("target", ["hawk", "mamba"])
def test_a_row_reading_a_counter_drops_the_lags_of_its_decaying_entry(target):
    # s1 = s1/2 + s2 + x, s2 = s2 + x: s1's taps on s2's drive do not decay (window t_max), its taps on its own
    # drive do (2^-j, below float32's normal range from j = 127 — refused before)
    prog = _state([[0.5, 1.0], [0.0, 1.0]], [[1.0], [1.0]])
    model = lsrl.compile(prog, target, dtype="float32", t_max=300)
    xs = np.random.default_rng(1).uniform(-1, 1, (2, 300, 1))
    report = model.check(xs)
    assert report.within_bound and report.error > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["hawk", "mamba"])
def test_transformers_runs_a_contraction_without_t_max(target, dtype, tmp_path, offline):
    import torch

    prog = _state([[0.75]], [[0.25]], init=[3.0])
    model = lsrl.compile(prog, target, activations="standard", dtype=dtype)
    assert model.t_max is None
    xs = np.random.default_rng(2).uniform(-1, 1, (2, 400, 1))
    model.to_hf(tmp_path)
    out = hf_outputs(tmp_path, xs, torch.float32 if dtype == "float32" else torch.float64)
    error = np.abs(out - prog(xs))
    assert np.all(error <= model.error_bound)
    assert 0 < error.max()


@pytest.mark.parametrize("target", ["hawk", "griffin"])
def test_the_bound_covers_the_delay_lines_own_sum(target):
    """linear_out sums a delay line's products each step; a review crafted an 81-step prompt of s = 0.6 s + x
    (float32) whose additions all round one way: 3.85e-6 off (kernel and transformers) under the 2.5e-6 the
    recurrence's rounding gave.  The sum is now charged (min(u·|partial|, |product|) per product)."""
    model = lsrl.compile(_state([[0.6]], [[1.0]]), target, dtype="float32")
    assert 3.85e-6 < model.error_bound[0] < 100 * 3.85e-6
    x = lsrl.Input(1, lower=0, upper=1, integer=True)
    counter = lsrl.compile(lsrl.ForEach(lsrl.LinState(x, [[1.0]], [[1.0]])), target, dtype="float32", t_max=64)
    assert counter.error_bound.tolist() == [0.0]
