"""``Model.check``, ``dtype`` runs and ``PrecisionError`` (docs/numerics.md, "Checking a model")."""
from __future__ import annotations

import numpy as np
import pytest

import lsrl
from lsrl.ir.matrix import Matrix
from lsrl.programs import draw_queries, random_token_map, token_answer, token_map, token_prompt
from lsrl.runtime import kernel_available

needs_kernel = pytest.mark.skipif(not kernel_available(), reason="float32 runs need the C++ kernel")
MODES = [("linear_rnn", "ideal"), ("lstm", "ideal"), ("gru", "ideal"), ("lstm", "standard"), ("gru", "standard")]


@pytest.fixture(scope="module")
def token_case():
    rng = np.random.default_rng(3)
    mapping = random_token_map(3, 20, 10, rng)
    queries = draw_queries(mapping, 4, rng)
    xs = np.stack([token_prompt(q, mapping) for q in queries])
    return xs, np.array([token_answer(q, mapping) for q in queries], dtype=float)


@needs_kernel
@pytest.mark.parametrize("target, activations", MODES)
def test_check_reports_the_token_program_right_in_both_dtypes(token_case, target, activations):
    xs, answers = token_case
    model = lsrl.compile(token_map(3, "multiplicative", vocab_size=10), target, activations=activations,
                         t_max=xs.shape[1])
    wide = model.check(xs, dtype="float64")
    narrow = model.check(xs, dtype="float32")
    # measured: float64 4.3e-15 relative (ideal) and 2.5e-10 (standard), float32 ≤ 7.7e-5 (gru standard)
    assert wide.within and wide.relative_error < (1e-12 if activations == "ideal" else 1e-8)
    assert narrow.within and narrow.relative_error < 1e-3
    assert wide.program_error == 0.0 and narrow.program_error == 0.0  # integer tokens: exact op by op
    assert narrow.scale == 9.0
    out = model(xs, backend="kernel", dtype="float32")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.round(out[:, -3:, 0]), answers)


@needs_kernel
def test_check_catches_a_wrong_weight_and_raises_on_request(token_case):
    xs, _ = token_case
    model = lsrl.compile(token_map(3, "multiplicative", vocab_size=10), "linear_rnn", t_max=xs.shape[1])
    assert model.check(xs, dtype="float32")
    readout = model.module.output
    dense = readout.attrs["A"].scipy().toarray()
    dense[0, np.flatnonzero(dense[0])[0]] *= 1 + 2.0 ** -8  # one readout weight off by 0.4 %
    readout.attrs["A"] = Matrix.from_dense(dense)
    report = model.check(xs, dtype="float32")
    assert not report and report.relative_error > 2.0 ** -10
    with pytest.raises(lsrl.PrecisionError, match=r"float32: max error .* the program run op by op in float32 is "
                                                  r"off by 0"):
        model.check(xs, dtype="float32", raise_on_failure=True)


@needs_kernel
def test_check_separates_lost_precision_from_a_coarse_dtype(token_case):
    # the λ = 1e10 `optimized` conditional compiled without materialize-steps: the program op by op in float32
    # is exact on these prompts, the model is not (docs/numerics.md, mechanisms 2–3) — the report shows both
    xs, _ = token_case
    model = lsrl.compile(token_map(3, "optimized", vocab_size=10), "linear_rnn", t_max=xs.shape[1],
                         pipeline="debranch,rescale-units")
    assert model.check(xs).within
    report = model.check(xs, dtype="float32")
    assert report.program_error == 0.0 and not report.within


@needs_kernel
def test_float32_stream_equals_the_float32_call(token_case):
    xs, _ = token_case
    model = lsrl.compile(token_map(3, "multiplicative", vocab_size=10), "lstm", activations="standard",
                         t_max=xs.shape[1])
    whole = model(xs, backend="kernel", dtype=np.float32)
    chunks = [xs[:, :40], xs[:, 40:41], xs[:, 41:]]
    streamed = np.concatenate(list(model.stream(chunks, backend="kernel", dtype="float32")), axis=1)
    np.testing.assert_array_equal(streamed, whole)


def test_a_loaded_model_needs_its_program(tmp_path, token_case):
    xs, _ = token_case
    program = token_map(3, "multiplicative", vocab_size=10)
    model = lsrl.compile(program, "linear_rnn", t_max=xs.shape[1])
    model.save(tmp_path / "m")
    loaded = lsrl.load(tmp_path / "m")
    with pytest.raises(lsrl.LsrlError, match="pass program="):
        loaded.check(xs)
    assert loaded.check(xs, program=program, backend="numpy").relative_error < 1e-12
    with pytest.raises(lsrl.ShapeError, match="maps 2 -> 2 but the model maps 1 -> 1"):
        loaded.check(xs, program=lsrl.ForEach(lsrl.Input(2) * 1.0))


def test_bad_dtype_backend_and_tolerance_are_named(token_case):
    xs, _ = token_case
    model = lsrl.compile(token_map(3, "multiplicative", vocab_size=10), "linear_rnn", t_max=xs.shape[1])
    with pytest.raises(ValueError, match="dtype must be float64 or float32, got 'float16'"):
        model(xs, dtype="float16")
    with pytest.raises(ValueError, match="runs in the C\\+\\+ executor: use backend='kernel'"):
        model(xs, backend="numpy", dtype="float32")
    with pytest.raises(ValueError, match="tolerance must be a number >= 0"):
        model.check(xs, backend="numpy", tolerance=-1.0)


@needs_kernel
def test_a_float32_run_refuses_inputs_float32_cannot_hold():
    model = lsrl.compile(lsrl.ForEach(lsrl.Input(1) * 0.5), "linear_rnn")
    xs = np.array([[1.0], [1e39]])
    np.testing.assert_array_equal(model(xs, backend="kernel"), [[0.5], [5e38]])
    with pytest.raises(lsrl.NumericRangeError, match=r"x\[batch=0, step=1, coord=0\] = 1e\+39 does not fit float32"):
        model(xs, backend="kernel", dtype="float32")
    with pytest.raises(lsrl.NumericRangeError, match="step=3"):
        list(model.stream([xs[:1], xs[:1], xs[:1], xs[1:]], backend="kernel", dtype="float32"))
