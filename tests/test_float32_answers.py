"""The paper's three programs compiled with ``dtype="float32"`` for every target, mode and conditional and run
by every executor a user deploys them with: ``model(xs)`` (the C++ kernel in float32), ``to_torch()`` and the
default ``to_onnx()`` in onnxruntime (issue 8).  Token answers must be 100 % right, continuous answers close to
``f`` at the centre of the query's cell, more_ones exact.  The Hugging Face targets run in transformers' float32
in tests/test_hawk_griffin.py, tests/test_mamba.py and tests/test_hf_continuous_answers.py.

A case the compiler refuses must be refused with the documented reason (a target that cannot multiply, the
GRU's ReLU pair under λ-weights); anything else must compile.
"""
from __future__ import annotations

import numpy as np
import pytest

import lsrl
from lsrl.programs import continuous_approximator, more_ones, token_map
from lsrl.runtime import kernel_available
from lsrl.sugar import CONDITIONAL_VARIANTS
from lsrl.targets import available_targets, get_target
from strategies import continuous_centre_case, token_prompts

pytestmark = pytest.mark.skipif(not kernel_available(), reason="float32 runs need the C++ kernel")

HF_TARGETS = ("hawk", "griffin", "mamba")
MODES = [(t, a) for t in available_targets() for a in get_target(t).activations]
N_LEVELS = 4
#: |answer − f(cell centre)| in float32, max over every target and executor (measured): 6.8e-7 (mamba) where
#: nothing multiplies in standard mode, 1.9e-5 for the LSTM/GRU standard-mode product units (compiled for
#: float32: rho_gate = 2^-4; 1.2e-4 with the float64 constants)
CONTINUOUS_TOLERANCE = {"plain": 1e-5, "standard product": 1e-3}


def _refusal(target, activations, conditional, n=None):
    """The documented reason a case is refused, or None when it must compile."""
    if target == "relu_rnn" and conditional.startswith("multiplicative"):
        return "multiplicat"
    if (target, activations) == ("gru", "standard") and not conditional.startswith("multiplicative"):
        return "ReLU pair"
    return None


def _compile(program, target, activations, conditional, t_max, n=None):
    reason = _refusal(target, activations, conditional, n)
    if reason is not None:
        with pytest.raises(lsrl.CompileError, match=reason):
            lsrl.compile(program, target, activations=activations, t_max=t_max, dtype="float32")
        return None
    return lsrl.compile(program, target, activations=activations, t_max=t_max, dtype="float32")


def _executors(model):
    """``name -> run(xs) -> (B, T, d_out)`` float64 array of the float32 outputs."""
    runs = {"kernel": lambda xs: model(xs)}  # a float32 model runs in the float32 kernel by default
    if model.target in HF_TARGETS:
        return runs
    try:
        import onnxruntime
        import torch
    except ImportError:
        return runs

    def run_onnx(xs):
        session = onnxruntime.InferenceSession(model.to_onnx(None).SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": np.asarray(xs, np.float32).transpose(1, 0, 2)})
        return y.transpose(1, 0, 2).astype(np.float64)

    def run_torch(xs):
        module = model.to_torch()  # float32, the model's dtype
        with torch.no_grad():
            return module(torch.from_numpy(np.asarray(xs, np.float32))).double().numpy()

    runs["onnxruntime"] = run_onnx
    # torch.nn.LSTM/GRU hard-code σ and tanh: ideal-mode gated cells have no torch form (docs/targets.md)
    if model.activations == "standard" or model.target in ("linear_rnn", "relu_rnn"):
        runs["torch"] = run_torch
    return runs


def _token_answers(n, target, activations, conditional):
    xs, answers = token_prompts(n, 20, 4, seed=11)
    model = _compile(token_map(n, conditional, vocab_size=10), target, activations, conditional, xs.shape[1], n)
    if model is None:
        return
    for name, run in _executors(model).items():
        wrong = np.mean(np.round(run(xs)[:, -n:, 0]) != answers)
        assert wrong == 0, f"{name}: {wrong:.0%} of the answer tokens wrong"


@pytest.mark.parametrize("conditional", CONDITIONAL_VARIANTS)
@pytest.mark.parametrize("target, activations", MODES)
def test_token_answers_in_float32(target, activations, conditional):
    _token_answers(3, target, activations, conditional)


@pytest.mark.slow
@pytest.mark.parametrize("conditional", CONDITIONAL_VARIANTS)
@pytest.mark.parametrize("target, activations", MODES)
def test_token_answers_in_float32_n10(target, activations, conditional):
    _token_answers(10, target, activations, conditional)


@pytest.mark.parametrize("conditional", CONDITIONAL_VARIANTS)
@pytest.mark.parametrize("target, activations", MODES)
def test_continuous_answers_in_float32(target, activations, conditional):
    xs, want = continuous_centre_case(N_LEVELS)
    program = continuous_approximator(2, 1, conditional=conditional, value_bound=3)
    model = _compile(program, target, activations, conditional, xs.shape[1])
    if model is None:
        return
    product = activations == "standard" and conditional.startswith("multiplicative") \
        and target not in ("linear_rnn", "relu_rnn") + HF_TARGETS
    tolerance = CONTINUOUS_TOLERANCE["standard product" if product else "plain"]
    for name, run in _executors(model).items():
        error = np.max(np.abs(run(xs)[:, -1, :] - want))
        assert error <= tolerance, f"{name}: |answer − f(centre)| = {error:.2g}"


@pytest.mark.parametrize("conditional", ["direct", "multiplicative"])
@pytest.mark.parametrize("target, activations", MODES)
def test_continuous_answers_on_a_declared_grid_in_float32(target, activations, conditional):
    # the queries at their cells' centres and the prompt's grid declared (n_levels): the standard GRU's
    # λ-conditionals compile too, and every model's float32 bound holds what each executor answers
    xs, want = continuous_centre_case(N_LEVELS)
    centred = xs.copy()
    centred[:, 0, :2] = (np.floor(xs[:, 0, :2] * N_LEVELS) + 0.5) / N_LEVELS
    program = continuous_approximator(2, 1, conditional=conditional, value_bound=3, n_levels=N_LEVELS)
    if target == "relu_rnn" and conditional == "multiplicative":
        return  # cannot multiply: test_continuous_answers_in_float32 checks the refusal
    model = lsrl.compile(program, target, activations=activations, t_max=xs.shape[1], dtype="float32")
    bound = float(np.max(model.error_bound_in("float32")))
    exact = np.asarray(lsrl.ir.interpret(model._layer_form, centred, exact=True), dtype=np.float64)
    product = activations == "standard" and conditional == "multiplicative" \
        and target not in ("linear_rnn", "relu_rnn") + HF_TARGETS
    tolerance = CONTINUOUS_TOLERANCE["standard product" if product else "plain"]
    for name, run in _executors(model).items():
        out = run(centred)
        assert np.max(np.abs(out - exact)) <= bound, name
        assert np.max(np.abs(out[:, -1, :] - want)) <= tolerance, name


@pytest.mark.parametrize("target, activations", MODES)
def test_more_ones_in_float32(target, activations):
    bits = np.random.default_rng(0).integers(0, 2, size=(3, 40, 1)).astype(float)
    program = more_ones()
    model = lsrl.compile(program, target, activations=activations, t_max=bits.shape[1], dtype="float32")
    want = program(bits)
    for name, run in _executors(model).items():
        np.testing.assert_array_equal(np.round(run(bits)), want, err_msg=name)
