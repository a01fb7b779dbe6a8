"""A-priori error bounds (``lsrl.passes.error_bound``, ``Model.error_bound``): sound against the exact semantics
on random programs and every ideal-mode target in both dtypes, exact where the arithmetic is, and enforced
through ``Model.error_tolerance``; integer input declarations are kept, saved and checked."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lsrl
from lsrl.ir.interpreter import interpret
from lsrl.ir.parser import parse as parse_module
from lsrl.ir.printer import print_module
from lsrl.passes.error_bound import ROUNDING_HOPS, UNIT_ROUNDOFF, ErrorAnalysis, local_error_entry
from lsrl.programs import more_ones, token_map
from lsrl.runtime import kernel_available
from lsrl.sugar import CONDITIONAL_VARIANTS
from strategies import conditional_programs, profile_examples, programs, random_sequences, token_prompts
from test_targets import _bounded

needs_kernel = pytest.mark.skipif(not kernel_available(), reason="float32 runs need the C++ kernel")

IDEAL_TARGETS = ["linear_rnn", "relu_rnn", "lstm", "gru", "hawk", "griffin", "mamba"]


def _layer_form_exact(model, xs) -> np.ndarray:
    """The exact semantics the bound is stated against: the layer form the model was lowered from."""
    return np.asarray(interpret(model._layer_form, xs, exact=True), dtype=np.float64)


# ------------------------------------------------------------------------------------------ soundness

@needs_kernel
@settings(max_examples=profile_examples(10), deadline=None, suppress_health_check=list(HealthCheck))
@given(module=programs(max_ops=7), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", IDEAL_TARGETS)
def test_the_bound_holds_on_random_programs(target, dtype, module, seed):
    module = _bounded(module)
    xs = random_sequences(module, 10, 2, np.random.default_rng(seed))
    try:
        model = lsrl.compile(module, target, t_max=10, dtype=dtype)
    except lsrl.CompileError:
        assume(False)
    bound = model.error_bound
    assert bound.shape == (model.d_out,) and not np.isnan(bound).any()
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert np.all(deviation <= bound), (deviation.max(axis=(0, 1)), bound)


@needs_kernel
@settings(max_examples=profile_examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(case=conditional_programs())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_bound_holds_on_conditional_programs(dtype, case):
    program, xs = case
    model = lsrl.compile(program, t_max=6, dtype=dtype)
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert np.all(deviation <= model.error_bound), (deviation.max(axis=(0, 1)), model.error_bound)


@needs_kernel
def test_a_row_rounds_at_its_terms_not_at_their_sum():
    """A λ-row reads two units of one step group as 10¹⁰·u − 10¹⁰·u' (u = u' = 7499 here): exactly 0, and the
    analysis took the magnitude of that 0, or dropped the part as an exact 0, for the row's rounding.  Float32
    rounds each term at 7.5·10¹³ and the row lost the x beside them: the model answered 0 for x = 2 and 3 under a
    bound of 0.  (The default pipeline now carries the step to materialize-steps, which reads it through its clamp
    and loses nothing: without that pass the row is still there.)"""
    x = lsrl.Input(1, lower=0, upper=3, integer=True)
    square = lsrl.Multi(lsrl.Concat([x, x]))
    step = lsrl.f_larger(square, 1.5)
    program = lsrl.ForEach(lsrl.Concat([lsrl.f_ifelse(step, x, square), lsrl.f_ifelse_step(step, x, x)]))
    xs = np.array([[[0.0], [1.0], [2.0], [3.0]]])
    model = lsrl.compile(program, t_max=4, dtype="float32", pipeline="debranch,rescale-units")
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs)).max(axis=(0, 1))
    assert deviation[0] == 3.0  # measured: without materialize-steps, float32 loses x (the bound says so)
    assert np.all(deviation <= model.error_bound)


@needs_kernel
@settings(max_examples=profile_examples(10), deadline=None, suppress_health_check=list(HealthCheck))
@given(module=programs(max_ops=7, bounded_input=True), seed=st.integers(0, 2**31))
def test_the_bound_holds_in_torch_float32(module, seed):
    torch = pytest.importorskip("torch")
    module = _bounded(module)
    xs = random_sequences(module, 10, 2, np.random.default_rng(seed))
    model = lsrl.compile(module, "linear_rnn", t_max=10, dtype="float32")
    with torch.no_grad():
        out = model.to_torch()(torch.from_numpy(xs.astype(np.float32))).double().numpy()
    assert np.all(np.abs(out - _layer_form_exact(model, xs)) <= model.error_bound)


@needs_kernel
@settings(max_examples=profile_examples(10), deadline=None, suppress_health_check=list(HealthCheck))
@given(module=programs(max_ops=7, bounded_input=True), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("target", ["linear_rnn", "relu_rnn", "lstm", "gru"])
def test_the_bound_holds_in_onnxruntime_float32(target, module, seed, tmp_path_factory):
    ort = pytest.importorskip("onnxruntime")
    module = _bounded(module)
    xs = random_sequences(module, 10, 2, np.random.default_rng(seed))
    try:
        model = lsrl.compile(module, target, t_max=10, dtype="float32")
    except lsrl.CompileError:
        assume(False)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    model.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": xs.astype(np.float32).transpose(1, 0, 2)})
    deviation = np.abs(out.transpose(1, 0, 2).astype(np.float64) - _layer_form_exact(model, xs))
    assert np.all(deviation <= model.error_bound)


def _standard_model(module, target, dtype):
    try:
        return lsrl.compile(_bounded(module), target, activations="standard", t_max=10, dtype=dtype)
    except lsrl.CompileError:  # an unbounded value, or a unit whose local error is above the accuracy limit
        assume(False)


@needs_kernel
@settings(max_examples=profile_examples(10), deadline=None, suppress_health_check=list(HealthCheck))
@given(module=programs(max_ops=7, bounded_input=True), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["lstm", "gru", "hawk", "griffin", "mamba"])
def test_the_bound_holds_with_standard_activations(target, dtype, module, seed):
    """The bound adds the local errors of the standard constructions (docs/targets.md, "Error bounds"): the
    approximations, each unit's activation rounding and what the next layer sums to read a unit."""
    model = _standard_model(module, target, dtype)
    xs = random_sequences(model._layer_form, 10, 2, np.random.default_rng(seed))
    bound = model.error_bound
    assert bound.shape == (model.d_out,) and not np.isnan(bound).any()
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert np.all(deviation <= bound), (deviation.max(axis=(0, 1)), bound)


@needs_kernel
@settings(max_examples=profile_examples(5), deadline=None, suppress_health_check=list(HealthCheck))
@given(module=programs(max_ops=7, bounded_input=True), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["lstm", "gru"])
def test_the_standard_bound_holds_in_torch_and_onnxruntime(target, dtype, module, seed, tmp_path_factory):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    model = _standard_model(module, target, dtype)
    xs = random_sequences(model._layer_form, 10, 2, np.random.default_rng(seed))
    exact, bound = _layer_form_exact(model, xs), model.error_bound
    with torch.no_grad():
        out = model.to_torch()(torch.from_numpy(xs.astype(dtype))).double().numpy()
    assert np.all(np.abs(out - exact) <= bound), "torch"
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    model.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": xs.astype(dtype).transpose(1, 0, 2)})
    assert np.all(np.abs(out.transpose(1, 0, 2).astype(np.float64) - exact) <= bound), "onnxruntime"


def _transformers_outputs(model, xs, dtype, directory):
    """``xs`` through ``model.to_hf(directory)`` run by transformers alone in ``dtype``."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from hf_io import hf_outputs
    model.to_hf(directory)
    return hf_outputs(directory, xs, getattr(torch, dtype))


@settings(max_examples=profile_examples(3), deadline=None, suppress_health_check=list(HealthCheck))
@given(module=programs(max_ops=7, bounded_input=True), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activations", ["ideal", "standard"])
@pytest.mark.parametrize("target", ["hawk", "griffin", "mamba"])
def test_the_bound_holds_in_transformers(target, activations, dtype, module, seed, tmp_path_factory,
                                         monkeypatch):
    """transformers computes a float64 model's RMSNorms (and Mamba's scan inputs) in float32: the splits
    keep each read within 2^-48 of the value and leave residues in reused slots, which the bound adds
    (``split_reads``); a float32 model runs in float32 throughout."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        model = lsrl.compile(_bounded(module), target, activations=activations, t_max=10, dtype=dtype)
    except lsrl.CompileError:
        assume(False)
    xs = random_sequences(model._layer_form, 10, 2, np.random.default_rng(seed))
    out = _transformers_outputs(model, xs, dtype, tmp_path_factory.mktemp("hf"))
    deviation = np.abs(out - _layer_form_exact(model, xs))
    assert np.all(deviation <= model.error_bound), (deviation.max(axis=(0, 1)), model.error_bound)


def _relu_of_a_state(through_linear: bool):
    """Two random programs whose ReLUs are all proven off, transformers reading one of them (an exact 0) from a
    slot where the state read before it left ``fl32(lo) − lo``: a ReLU of a state, and of a linear of one (whose
    units the bound reads through their groups)."""
    if through_linear:
        x = lsrl.Input(2, lower=[-1, 0], upper=[0, 1])
        state = lsrl.LinState(x, A=np.diag([0.0, 1.0, 0.0]), B=[[0.0, 0.0], [-0.36084953606946213, 0.0], [0.0, 0.0]],
                              bias=[-0.7506167124659091, 0.35221343789861637, -1.282162959560686])
        rows = [[0.9672114115830274, 0.0, -0.20229163341213494], [-0.5802168923738502, 0.0, -0.3227710005971651],
                [-0.011690138221727375, -0.7405920674316049, 0.9972667768722409]]
        return lsrl.ForEach(lsrl.ReLU(lsrl.Linear(state, rows))), (-1, 0), (0, 1), 0
    x = lsrl.Input(4, lower=[0, 0, 0, 1], upper=[6, 1, 1, 2])
    drive = [[0.0, -0.5433381419505592, -0.6721254842646671, -0.3587921013158457],
             [0.0, 0.0, 0.716345165165202, -0.9140491382515932],
             [-0.959944427792619, 0.6149224608827004, -0.4121925372647084, -0.6215429202672198]]
    program = lsrl.ForEach(lsrl.ReLU(lsrl.LinState(x, A=np.diag([1.0, 1.0, 0.0]), B=drive)))
    return program, (0, 0, 0, 1), (6, 1, 1, 2), 2


@pytest.mark.parametrize("through_linear", [False, True])
@pytest.mark.parametrize("target", ["hawk", "griffin"])
def test_a_reused_stream_slot_keeps_a_residue_in_float64_transformers(target, through_linear, tmp_path,
                                                                      monkeypatch):
    """The kernel computes the exact 0; transformers 5.3e-15 and 4.4e-16, where the bound was 0."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    program, lower, upper, zero = _relu_of_a_state(through_linear)
    model = lsrl.compile(program, target, t_max=12)
    xs = np.random.default_rng(0).uniform(lower, upper, (2, 12, len(lower)))
    exact = _layer_form_exact(model, xs)
    deviation = np.abs(_transformers_outputs(model, xs, "float64", tmp_path) - exact)
    assert not exact[..., zero].any() and deviation[..., zero].max() > 0
    assert np.all(deviation <= model.error_bound)


@pytest.mark.parametrize("target", ["hawk", "mamba"])
def test_a_read_below_the_norms_resolution_is_bounded(target, tmp_path, monkeypatch):
    """A neutralised RMSNorm computes x·2^-50 (Hawk; Mamba 2^-60) in float32 before scaling back, so a read
    resolves 2^-99 (2^-89), not float32's 2^-149: 2^-110 is read as 0.  The bound was 0 (an exact value float32
    holds)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    x = lsrl.Input(2, lower=[-1, -1], upper=[0, 0], integer=True)
    program = lsrl.ForEach(lsrl.ReLU(lsrl.Linear(x, [[1.0, 0.0], [0.0, 1.0]], [2.0 ** -110, 1.0])))
    xs = np.array([[0.0, 0], [-1, 0], [0, -1], [-1, -1]]).reshape(1, 4, 2)
    for dtype in ("float64", "float32"):
        model = lsrl.compile(program, target, t_max=4, dtype=dtype)
        exact = _layer_form_exact(model, xs)
        deviation = np.abs(_transformers_outputs(model, xs, dtype, tmp_path / dtype) - exact)
        assert deviation[..., 0].max() == 2.0 ** -110 and np.all(deviation <= model.error_bound)
        assert model.error_bound[1] == 0.0  # integers: still exact


@needs_kernel
@pytest.mark.parametrize("target", ["hawk", "griffin"])
def test_a_tiny_relu_keeps_its_kappa_in_float32_range(target):
    """κ = 2^80/max|x| asked for 2^178 here, whose 1/κ is 0 in float32: every output was 0 (1.97e-30 off, the
    bound 1.4e-36).  κ stops at 2^120."""
    x = lsrl.Input(1, lower=0, upper=3, integer=True)
    program = lsrl.ForEach(lsrl.ReLU(lsrl.Linear(x, [[2.0 ** -100]], [-(2.0 ** -101)])))
    model = lsrl.compile(program, target, activations="standard", t_max=4, dtype="float32")
    xs = np.array([0.0, 1, 2, 3]).reshape(1, 4, 1)
    out = model(xs, backend="kernel")
    assert out.max() > 0 and np.all(np.abs(out - _layer_form_exact(model, xs)) <= model.error_bound)


@needs_kernel
@pytest.mark.parametrize("activations", ["ideal", "standard"])
@pytest.mark.parametrize("target", ["hawk", "griffin", "mamba"])
def test_a_lambda_conditional_through_the_stream_is_bounded(target, activations, tmp_path, monkeypatch):
    """``f_ifelse`` of a real value on an integer condition: the layer form's bounds are 2.8e-14 and 1.5e-5.
    Through the residual stream they were 0.43 (float64) and 1.4e4–2.4e4 (float32): every read was charged the
    split of a float32 part at its whole magnitude (also in a float32 model, which has no low part), the
    standard units' gelu rounding where the gate saturates (it passes κx itself there), and an integer read
    with a 10⁻²⁵ error (Mamba's scaled carries) a full rounding of the step's row.  Measured: float32
    1.53e-5 (1.91e-5 for the standard Hawk), float64 1.16e-3 — a residue of the real value in any slot the
    condition may reuse, times λ."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    x = lsrl.Input(2, lower=[-2, 0], upper=[2, 3], grid=[0, 1])
    program = lsrl.ForEach(lsrl.f_ifelse(lsrl.f_larger(x[1], 1.5), x[0], x[0] * 0))
    rng = np.random.default_rng(0)
    xs = np.stack([rng.uniform(-2, 2, (3, 30)), rng.integers(0, 4, (3, 30))], axis=-1)
    for dtype, most in (("float32", 3e-5), ("float64", 3e-3)):
        model = lsrl.compile(program, target, activations=activations, t_max=30, dtype=dtype)
        bound = model.error_bound_in(dtype)
        assert float(np.max(bound)) <= most, (dtype, bound)
        exact = _layer_form_exact(model, xs)
        assert np.all(np.abs(model(xs, backend="kernel", dtype=dtype) - exact) <= bound)
        assert np.all(np.abs(_transformers_outputs(model, xs, dtype, tmp_path / dtype) - exact) <= bound)


@pytest.mark.parametrize("target", ["hawk", "griffin"])
def test_a_gelu_unit_short_of_saturation_is_read_as_what_it_passes(target, tmp_path, monkeypatch):
    """The last unit is proven off but ``κ·pre = −0.75`` (κ = 2^91): it passes ``gelu(−0.75)/κ = −43.5·2⁻⁹⁹``, and
    the norms' float32 scaling reads that as ``−44·2⁻⁹⁹``.  A read of a unit proven off was charged nothing (an
    exact 0 assumed): transformers float64 was ``44·2⁻⁹⁹`` off under a bound of ``43.5·2⁻⁹⁹``; now ``45.5·2⁻⁹⁹``."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    x = lsrl.Input(2, lower=[0, -4 * 2.0 ** -83], upper=[2.0 ** -80, -3 * 2.0 ** -83], grid=[2.0 ** -80, 2.0 ** -83])
    a = lsrl.ReLU(lsrl.Linear(x, [[1.0, 0.0]], b=[-2.0 ** -81]))
    b = lsrl.ReLU(lsrl.Linear(x, [[0.0, -1.0]], b=[-2.0 ** -83]))
    program = lsrl.ForEach(lsrl.ReLU(lsrl.Linear(lsrl.Concat([a, b]), [[2.0 ** 29, -2.0 ** -10]])))
    xs = np.array([[[0.0, -4 * 2.0 ** -83], [2.0 ** -80, -3 * 2.0 ** -83], [0.0, -3 * 2.0 ** -83]]])
    model = lsrl.compile(program, target, activations="standard", t_max=3, dtype="float64")
    exact = _layer_form_exact(model, xs)
    deviation = np.abs(_transformers_outputs(model, xs, "float64", tmp_path) - exact)
    assert deviation[0, 0, 0] == 44 * 2.0 ** -99 and np.all(deviation <= model.error_bound)


def test_a_read_is_charged_where_the_units_gate_saturates():
    """A unit whose gate saturates adds nothing of its construction there, but reading it from a stream slot still
    costs what the read costs (a residue the slot holds)."""
    from lsrl.passes.error_bound import _Group, _Values
    y = _Values.of(np.array([5.0]), np.zeros(1), 0.0)
    group = _Group(np.array([0]), np.ones(1), np.zeros(1), np.zeros(1), np.zeros(1), y, 5.0, 5.0,
                   on=np.array([1e-6]), exact_from=np.array([1.0]), read_on=np.array([1e-9]), read_off=np.zeros(1))
    pre, spread, e_hat = np.array([[5.0]]), np.zeros((1, 1)), np.zeros((1, 1))
    assert group.added(np.array([0]), pre, spread, e_hat).tolist() == [[1e-9]]
    assert group.added(np.array([0]), pre - 4.5, spread, e_hat).tolist() == [[1e-6 + 1e-9]]


def test_split_reads_keep_exactly_held_values_exact():
    """Where every value is computed exactly and float32 holds it, no read rounds and no residue is left."""
    for target in ("hawk", "mamba"):
        model = lsrl.compile(more_ones(), target, t_max=40)
        assert model._layer_form.metadata["split_reads"] == "float32"
        assert model.error_bound_in("float64").tolist() == [0.0]


def test_malformed_split_reads_are_refused():
    x = lsrl.Input(1, lower=-1, upper=1)
    module = lsrl.compile(lsrl.ForEach(lsrl.ReLU(x)), "hawk", t_max=4)._layer_form
    module.metadata["split_reads"] = "bfloat16"
    with pytest.raises(ValueError, match="split_reads"):
        ErrorAnalysis(module, "float64", 4)
    module.metadata.update(split_reads="float32", read_step=3.0)
    with pytest.raises(ValueError, match="read_step"):
        ErrorAnalysis(module, "float64", 4)
    module.metadata.update(read_step=2.0 ** -99, stream_norms={"eps": 2.0 ** 100, "squares": -1.0, "width": 4})
    with pytest.raises(ValueError, match="stream_norms"):
        ErrorAnalysis(module, "float64", 4)


@needs_kernel
@settings(max_examples=profile_examples(10), deadline=None, suppress_health_check=list(HealthCheck))
@given(module=programs(max_ops=7), seed=st.integers(0, 2**31))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_bound_holds_for_integer_inputs(dtype, module, seed):
    """Integer inputs start the candidate values and ReLU groups, which real inputs never reach."""
    module = _bounded(module)
    lower, upper = (module.input.attrs[k].to_float().values for k in ("lower", "upper"))
    assume(np.all(np.ceil(lower) <= np.floor(upper)))
    module.input.attrs["integer"] = 1
    xs = random_sequences(module, 10, 2, np.random.default_rng(seed), style="integers")
    try:
        model = lsrl.compile(module, "linear_rnn", t_max=10, dtype=dtype)
    except lsrl.CompileError:
        assume(False)
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert np.all(deviation <= model.error_bound), (deviation.max(axis=(0, 1)), model.error_bound)


def _module_bound_and_deviation(text: str, xs: np.ndarray, dtype: str, t_max: int):
    """A module's own bound in ``dtype`` and how far its float64 interpretation is from its exact one (measured in
    rationals: the difference may be below float64's resolution of the values)."""
    module = parse_module(text)
    bound = ErrorAnalysis(module, dtype, t_max)[module.output].err
    computed = np.asarray(interpret(module, xs), dtype=np.float64)
    exact = np.asarray(interpret(module, xs, exact=True), dtype=object)
    deviation = np.vectorize(lambda c, e: float(abs(Fraction(c) - e)), otypes=[float])(computed, exact)
    return bound, deviation.max(axis=(0, 1))


def test_an_unbounded_state_does_not_reach_a_state_that_does_not_read_it():
    text = """lsrl.module @m(%x: 2 {lower = [-inf, 0.0], upper = [inf, 1.0]}) -> 2 {
  %s = linstate %x {A = diag<[1.0, 0.5]>, B = [[1.0, 0.0], [0.0, 0.1]], bias = [0.0, 0.0]} : 2 -> 2
  return %s : 2
}"""
    module = parse_module(text)
    bound = ErrorAnalysis(module, "float32", 10)[module.output].err
    assert bound[0] == np.inf and 0 < bound[1] < 1e-6  # was inf: 0·inf in a dense product


def test_exact_constants_float64_cannot_hold_are_counted():
    # A = 1 + 2^-60 and 1/3 are read as float64 by every executor: their rounding is an error of its own
    text = """lsrl.module @m(%x: 1 {lower = [0.0], upper = [3.0], integer = 1}) -> 2 {
  %y = linear %x {A = [[1152921504606846977/1152921504606846976], [1/3]], b = [0.0, 1/3]} : 1 -> 2
  return %y : 2
}"""
    xs = np.arange(4.0).reshape(1, 4, 1)
    bound, deviation = _module_bound_and_deviation(text, xs, "float64", 4)
    assert np.all(deviation > 0) and np.all(deviation <= bound) and np.all(bound < 1e-14)


def test_a_state_block_beyond_the_norm_limit_gets_a_finite_sound_bound():
    # a 70-cycle (one strongly connected block, past range analysis' 64) contracting by 1/2 each step
    k = 70
    rows = ", ".join("[" + ", ".join("0.5" if j == (i + 1) % k else "0.0" for j in range(k)) + "]" for i in range(k))
    text = f"""lsrl.module @m(%x: 1 {{lower = [-1.0], upper = [1.0]}}) -> {k} {{
  %s = linstate %x {{A = [{rows}], B = [{", ".join(["[0.1]"] * k)}], bias = [{", ".join(["0.0"] * k)}]}} : 1 -> {k}
  return %s : {k}
}}"""
    xs = np.random.default_rng(5).uniform(-1, 1, (2, 30, 1))
    bound, deviation = _module_bound_and_deviation(text, xs, "float64", 30)
    assert np.all(np.isfinite(bound)) and np.all(deviation <= bound) and np.max(bound) < 1e-14


def test_integer_arithmetic_is_exact_in_both_dtypes():
    model = lsrl.compile(more_ones(), t_max=64)
    assert model.error_bound_in("float64").tolist() == [0.0]
    assert model.error_bound_in("float32").tolist() == [0.0]
    xs = np.random.default_rng(3).integers(0, 2, (4, 64, 1)).astype(float)
    report = model.check(xs, dtype="float32")
    assert report.error == 0.0 and report.within_bound


def test_carrying_an_exactly_known_unit_is_exact():
    # 1000·ReLU(x − 3) − 2500 over integer x: a carried step unit whose every value float32 holds
    text = """lsrl.module @m(%x: 1 {lower = [0.0], upper = [100.0], integer = 1}) -> 1 {
  %p = linear %x {A = [[1.0]], b = [-3.0]} : 1 -> 1
  %u = relu %p : 1 -> 1
  %q = linear %u {A = [[1000.0]], b = [-2500.0]} : 1 -> 1
  %v = relu %q : 1 -> 1
  return %v : 1
}"""
    xs = np.arange(101.0).reshape(1, 101, 1)
    for dtype in ("float64", "float32"):
        bound, deviation = _module_bound_and_deviation(text, xs, dtype, 101)
        assert bound.tolist() == [0.0] and deviation.tolist() == [0.0]
        model = lsrl.compile(parse_module(text), t_max=101, dtype=dtype)
        run = model(xs, backend="kernel") if kernel_available() else model(xs)
        assert model.error_bound.tolist() == [0.0]
        assert np.abs(run - _layer_form_exact(model, xs)).max() == 0.0


def test_exact_candidates_keep_no_slack():
    """The analysis's own float64 arithmetic blurs a candidate only where it was inexact: a saturated step of an
    inexact value is its constants' sum (exactly 1), and a ReLU proven off is an exact 0 — so a large weight
    after them amplifies nothing."""
    text = """lsrl.module @m(%x: 1 {lower = [1.0], upper = [9.0], integer = 1}) -> 2 {
  %y = linear %x {A = [[0.1], [0.1]], b = [0.0, -0.25]} : 1 -> 2
  %pre = linear %y {A = [[1000.0, 0.0], [1000.0, 0.0], [0.0, 1.0]], b = [1.0, 0.0, 0.0]} : 2 -> 3
  %r = relu %pre : 3 -> 3
  %big = linear %r {A = [[1000000.0, -1000000.0, 0.0], [0.0, 0.0, 1000000.0]], b = [-1000000.0, 0.0]} : 3 -> 2
  return %big : 2
}"""
    module = parse_module(text)
    analysis = ErrorAnalysis(module, "float64", 9)
    step, off = analysis[module.output].values
    assert step.points.tolist() == [0.0] and step.slacks.tolist() == [0.0]
    r = analysis[module.ops[3]].values[2]  # ReLU(0.1 x − 0.25): 0 at x ≤ 2, inexact above
    assert r.slacks[r.points == 0.0].tolist() == [0.0] and r.slack > 0
    assert off.slacks[off.points == 0.0].tolist() == [0.0]
    xs = np.arange(1.0, 10.0).reshape(1, 9, 1)
    bound, deviation = _module_bound_and_deviation(text, xs, "float64", 9)
    assert np.all(deviation <= bound)


def test_the_steps_of_the_token_program_saturate():
    """Saturation is what makes a bound through chained steps finite at all: every step of the token program's
    first stages is proven to give exact 0/1 up to the rounding of its own row (float64, n = 2)."""
    model = lsrl.compile(token_map(2, vocab_size=6), t_max=30)
    analysis = ErrorAnalysis(model._layer_form, "float64", 30)
    steps = [v for op in model._layer_form.ops if op.kind == "relu" for v in analysis[op].values
             if v.points is not None and set(v.points.tolist()) <= {0.0, 1.0}]
    assert len(steps) > 20
    assert np.median([v.err for v in steps]) < 1e-9


def test_an_unbounded_input_gives_an_infinite_bound_not_nan():
    x = lsrl.Input(1)
    model = lsrl.compile(lsrl.ForEach(lsrl.Linear(lsrl.ReLU(x), [[2.0]])))
    assert model.error_bound_in("float32").tolist() == [np.inf]


def test_a_row_reading_hidden_units_rounds_their_magnitude():
    """A target whose units for a coordinate sum to more than its value (a product's Richardson units: 1/ρ_g
    times larger) makes every row reading it round that magnitude, over all those units."""
    text = """lsrl.module @m(%x: 2 {lower = [0.0, 0.0], upper = [1.0, 1.0]}) -> 1 {
  %p = multi %x : 2 -> 1
  %y = linear %p {A = [[3.0]]} : 1 -> 1
  return %y : 1
}"""
    plain = parse_module(text)
    hidden = parse_module(text)
    hidden.metadata["local_errors"] = {1: local_error_entry(1, hidden=[1000.0], units=[4])}
    for dtype in ("float64", "float32"):
        u = UNIT_ROUNDOFF[dtype]
        extra = (ErrorAnalysis(hidden, dtype, 1)[hidden.output].err[0]
                 - ErrorAnalysis(plain, dtype, 1)[plain.output].err[0])
        assert extra >= ROUNDING_HOPS * 5 * u * 3.0 * 1000.0  # γ over the 4 units and the bias


@needs_kernel
@pytest.mark.parametrize("target", ["hawk", "griffin"])
def test_the_gelu_relu_gap_is_in_the_bound(target):
    """Standard Hawk/Griffin compute ReLU(x) as gelu(κx)/κ: at κx = ±0.75 it is 0.17/κ off, within the bound.
    κ is as large as the gate weights allow (κ·2^100 ≤ 2^120 here: κ = 2^20, a gap of 1.6e-7; the bound, 12, is
    the norms' read step 2^-99 times the weight 2^100 — inputs this small are not read exactly)."""
    from lsrl.targets.shared.recurrentgemma import relu_kappa
    x = lsrl.Input(1, lower=-2.0 ** -80, upper=2.0 ** -80)
    model = lsrl.compile(lsrl.ForEach(lsrl.ReLU(lsrl.Linear(x, [[2.0 ** 100]]))), target, activations="standard",
                         t_max=4)
    kappa = relu_kappa(np.array([2.0 ** 100]), 0.0, -2.0 ** 20, 2.0 ** 20)
    assert kappa == 2.0 ** 20
    xs = np.array([-0.75, 0.75, -2.0, 0.3]).reshape(1, 4, 1) / (kappa * 2.0 ** 100)
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert 0.1700 / kappa < deviation.max() <= model.error_bound[0]


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["hawk", "griffin"])
def test_a_standard_product_of_tiny_values_keeps_its_bound(target, dtype):
    """Standard Hawk/Griffin multiply through ``gelu(±κv)·(±u/κ)``: with κ as large as ``v``'s range allows
    (2^119 for values of 10⁻¹²), float32 flushed ``u/κ`` to 0 and the model answered 0 for ``x·x``, 10⁻²⁴ off
    under a bound of 1.4·10⁻²⁶ (a review); κ is now also at most ``2^116·max|u|``."""
    x = lsrl.Input(1, lower=-1e-12, upper=1e-12)
    program = lsrl.ForEach(lsrl.Multi(lsrl.Concat([x, lsrl.Linear(x, [[1.0]])])))
    model = lsrl.compile(program, target, activations="standard", t_max=1, dtype=dtype)
    report = model.check(np.linspace(-1e-12, 1e-12, 41).reshape(41, 1, 1), oracle="exact", dtype=dtype)
    assert report.within_bound and report.error <= 1e-30


@pytest.mark.parametrize("target", ["hawk", "griffin"])
def test_a_bounded_relu_argument_gets_a_large_kappa(target):
    """κ·max|x| = 2^80: the gap of a ReLU of x in [−1, 1] is 0.17·2^-80, and gelu is exact once |x| ≥ 6e-24
    (κ was 2^30 for every unit: a gap of 1.6e-10)."""
    x = lsrl.Input(1, lower=-1, upper=1)
    model = lsrl.compile(lsrl.ForEach(lsrl.ReLU(x)), target, activations="standard", t_max=4)
    xs = np.array([-0.75, 0.75, -2.0, 0.3]).reshape(1, 4, 1) / 2 ** 30
    assert np.array_equal(model(xs, backend="kernel"), _layer_form_exact(model, xs))
    gaps = [entry["on"].tolist() for entry in model._layer_form.metadata["local_errors"].values()]
    assert [0.1701 * 2.0 ** -80] in gaps


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_standard_mamba_carries_a_linear_value_bit_for_bit(dtype):
    """Standard Mamba carries a pass-through state ``s_t = x_t`` and a conv row as ``(2/ε)·silu(ε a)`` with
    ``ε|a| ≤ 2^-56``, where σ rounds to exactly 1/2: the value itself, where the unscaled pair ``silu(x) −
    silu(−x)`` rounded (float32: 4.8e-7 at x = 9; a conv row 7.1e-15 in float64 near 37)."""
    x = lsrl.Input(2, lower=-9, upper=9)
    passed = lsrl.LinState(x, A=np.zeros((2, 2)), B=np.eye(2))
    shifted = lsrl.LinState(x, A=np.array([[0.0, 0.125], [0.0, 0.0]]), B=np.array([[0.0, 0.0], [1.0, 3.0]]),
                            init_state=np.array([0.0, -29.5]), bias=np.array([0.0, -29.5]))
    xs = np.random.default_rng(1).uniform(-9, 9, (2, 16, 2))
    model = lsrl.compile(lsrl.ForEach(lsrl.Concat([passed, shifted])), "mamba", activations="standard", t_max=16,
                         dtype=dtype)
    channels = model.module.metadata["stages"][1]["channels"]
    assert channels["passthrough"] == 3 and channels["conv_state"] == 1  # one channel per value
    exact = _layer_form_exact(model, xs.astype(dtype))
    assert np.array_equal(model(xs.astype(dtype), backend="kernel")[..., :2], exact[..., :2])
    assert np.all(np.abs(model(xs.astype(dtype), backend="kernel") - exact) <= model.error_bound)


@needs_kernel
def test_a_standard_mamba_value_read_across_too_wide_a_range_rounds_in_its_silu_pair():
    """Weights 2^70 apart leave no ε with every scaled weight a normal float32: the value goes through the pair
    ``silu(a) − silu(−a)``, whose terms round a few ulps of the value (and of the conv of the drive, for a conv
    row: about 37, where float64's SiLU rounds most, though the drive with its bias stays within 1; the bound
    once counted 1: 2.8e-16 against a measured 7.1e-15), and the bound counts them."""
    x = lsrl.Input(2, lower=[295, 0], upper=[296, 1])
    passed = lsrl.LinState(x, A=np.zeros((1, 1)), B=np.array([[1.0, 2.0 ** 70]]), bias=np.array([-295.0]))
    conv = lsrl.LinState(x, A=np.array([[0.0, 0.125], [0.0, 0.0]]), B=np.array([[0.0, 0.0], [1.0, 2.0 ** 70]]),
                         init_state=np.array([0.0, -295.0]), bias=np.array([0.0, -295.0]))
    model = lsrl.compile(lsrl.ForEach(lsrl.Concat([passed, conv])), "mamba", activations="standard", t_max=8)
    xs = np.stack([np.full(8, 295.0), np.linspace(3.0, 37.0, 8) * 2.0 ** -70], axis=-1)[None]
    channels = model.module.metadata["stages"][1]["channels"]
    assert channels["passthrough"] == 4 and channels["conv_state"] == 2  # a pair per value
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert deviation[..., 0].max() > 0 and deviation[..., 1:].max() > 1e-15
    assert np.all(deviation <= model.error_bound)


@needs_kernel
@pytest.mark.parametrize("activations", ["ideal", "standard"])
def test_mamba_values_past_the_norm_s_identity_range_are_bounded(activations):
    """A neutralised RMSNorm, ``rsqrt(mean(r²) + 2^120)·2^60``, is the identity only while ``mean(r²) < 2^66``:
    integers near 2^51 were read 512 off under a bound of 49, and 2^53 5.2e5 off under 196 (a review).  The
    lowering states the norms' drift, ``mean/2^121`` and the rsqrt's rounding, on every read."""
    bound = 2.0 ** 51
    program = lsrl.ForEach(lsrl.LinState(lsrl.Input(1, lower=-bound, upper=bound, integer=True),
                                         A=np.zeros((1, 1)), B=np.eye(1)))
    xs = np.array([[[bound], [3.0], [2.0 ** 50 + 1], [-bound]]])
    model = lsrl.compile(program, "mamba", activations=activations, t_max=4)
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert deviation.max() >= 512 and np.all(deviation <= model.error_bound)


@needs_kernel
@pytest.mark.parametrize("activations", ["ideal", "standard"])
def test_mamba_refuses_float32_where_a_norms_sum_of_squares_overflows(activations):
    """Values up to 2^70 make an RMSNorm's Σ r² pass float32's range: a float32 run read NaN and stopped with a
    NumericRangeError that blamed the inputs.  The lowering records it: compiling for float32 is refused with the
    reason, a float64 model raises PrecisionError in float32 and still runs in float64."""
    bound = 2.0 ** 70
    program = lsrl.ForEach(lsrl.LinState(lsrl.Input(1, lower=-bound, upper=bound), A=np.zeros((1, 1)), B=np.eye(1)))
    with pytest.raises(lsrl.CompileError, match="sum of squares .* past float32's range"):
        lsrl.compile(program, "mamba", activations=activations, t_max=4, dtype="float32")
    model = lsrl.compile(program, "mamba", activations=activations, t_max=4)
    xs = np.array([[[bound], [3.0]]])
    with pytest.raises(lsrl.PrecisionError, match="sum of squares"):
        model(xs, dtype="float32")
    assert np.isfinite(model(xs)).all()


def test_a_standard_mamba_conv_row_ignores_an_unbounded_input_it_does_not_read():
    x = lsrl.Input(2, lower=[-1, -np.inf], upper=[1, np.inf])
    shift = lsrl.LinState(x, A=np.array([[0.0, 1.0], [0.0, 0.0]]), B=np.array([[0.0, 0.0], [1.0, 0.0]]))
    model = lsrl.compile(lsrl.ForEach(shift), "mamba", activations="standard", t_max=8)
    # were NaN (0·inf), refused as malformed; infinite, as the unbounded input in the stream may move every norm
    for entry in model._layer_form.metadata["local_errors"].values():
        assert not any(np.isnan(values).any() for values in entry.values())
    for dtype in ("float64", "float32"):  # infinite: the split leaves a residue of the unbounded input
        assert not np.isnan(model.error_bound_in(dtype)).any()


def test_a_lowering_that_states_no_local_errors_gives_no_bound(monkeypatch):
    from lsrl.passes.lower import LOWERINGS
    lstm = LOWERINGS["lstm"]

    def silent(module, **options):
        lowered = lstm(module, **options)
        lowered.metadata.pop("local_errors")
        return lowered

    monkeypatch.setitem(LOWERINGS, "lstm", silent)
    model = lsrl.compile(more_ones(), "lstm", activations="standard", t_max=64)
    assert model.error_bound is None and model.error_bound_in("float32") is None
    model.error_tolerance = 1.0
    with pytest.raises(lsrl.PrecisionError, match="standard activations add approximation errors that the lstm"):
        model(np.ones((5, 1)))


def test_a_unit_not_proven_on_or_off_passes_the_larger_local_error():
    text = """lsrl.module @m(%x: 1 {lower = [-1.0], upper = [1.0]}) -> 1 {
  %s = linstate %x {A = [[0.0]], B = [[1.0]]} : 1 -> 1
  %y = linear %s {A = [[0.1]]} : 1 -> 1
  %r = relu %y : 1 -> 1
  return %r : 1
}"""
    module = parse_module(text)
    module.metadata["local_errors"] = {3: local_error_entry(1, on=[0.001], off=[1.0])}
    assert ErrorAnalysis(module, "float64", 3).output_bounds(module)[0] >= 1.0
    off = parse_module(text.replace("{A = [[0.1]]}", "{A = [[0.1]], b = [-2.0]}"))  # proven off
    off.metadata["local_errors"] = module.metadata["local_errors"]
    assert ErrorAnalysis(off, "float64", 3).output_bounds(off)[0] == 1.0


def test_a_unit_reading_hidden_units_directly_and_the_readout_round_them():
    text = """lsrl.module @m(%x: 2 {lower = [-1.0, -1.0], upper = [1.0, 1.0]}) -> 1 {
  %p = multi %x : 2 -> 1
  %r = relu %p : 1 -> 1
  return %r : 1
}"""
    plain, hidden = parse_module(text), parse_module(text)
    hidden.metadata["local_errors"] = {1: local_error_entry(1, hidden=[1000.0], units=[4])}
    read = ROUNDING_HOPS * 5 * UNIT_ROUNDOFF["float32"] * 1000.0
    extra = (ErrorAnalysis(hidden, "float32", 1).output_bounds(hidden)[0]
             - ErrorAnalysis(plain, "float32", 1).output_bounds(plain)[0])
    assert extra >= read
    hidden.output = hidden.ops[1]  # the readout reads the product's units itself
    assert ErrorAnalysis(hidden, "float32", 1).output_bounds(hidden)[0] >= read


def test_a_select_drops_its_factors_error_within_its_margin():
    """A product coordinate marked as a select (``selector`` 1: the first factor picks among its candidates) is
    exact in that factor wherever the factor's computed value stays within the margin of a candidate, and
    unbounded where it may not."""
    text = """lsrl.module @m(%x: 2 {lower = [0.0, 0.0], upper = [3.0, 3.0], integer = 1}) -> 1 {
  %y = linear %x {A = [[0.1, 0.0], [0.0, 1.0]]} : 2 -> 2
  %p = multi %y : 2 -> 1
  return %p : 1
}"""
    plain, select, tight = (parse_module(text) for _ in range(3))
    select.metadata["local_errors"] = {2: local_error_entry(1, selector=[1], margin=[0.01])}
    tight.metadata["local_errors"] = {2: local_error_entry(1, selector=[1], margin=[1e-30])}
    factor = ErrorAnalysis(plain, "float32", 1)[plain.ops[1]].values[0]
    assert factor.points.tolist() == [0.0, 0.1, 0.2, 0.30000000000000004] and factor.err > 1e-9  # 0.1·x rounds
    bound = {name: ErrorAnalysis(m, "float32", 1).output_bounds(m)[0]
             for name, m in (("plain", plain), ("select", select), ("tight", tight))}
    assert bound["select"] <= bound["plain"] - 3 * factor.err / 2  # |x1| ≤ 3 times the factor's error, gone
    assert bound["tight"] == np.inf


def test_malformed_local_errors_are_refused():
    module = parse_module("""lsrl.module @m(%x: 1 {lower = [-1.0], upper = [1.0]}) -> 1 {
  %r = relu %x : 1 -> 1
  return %r : 1
}""")
    for bad in ({"1": local_error_entry(1)}, {5: local_error_entry(1)}, {1: local_error_entry(2)},
                {1: local_error_entry(1, on=[float("nan")])}, {1: local_error_entry(1, selector=[1])}):
        module.metadata["local_errors"] = bad
        with pytest.raises(ValueError, match="local_errors"):
            ErrorAnalysis(module, "float64", 1)


def test_a_constant_state_gives_a_number_not_nan():
    x = lsrl.Input(1, lower=-1, upper=1)
    s = lsrl.LinState(x, A=[[1.0]], B=[[0.0]], init_state=[2.0])
    model = lsrl.compile(lsrl.ForEach(lsrl.Multi(lsrl.Concat([s, x]))), "lstm", activations="standard")
    for dtype in ("float64", "float32"):
        assert not np.isnan(model.error_bound_in(dtype)).any()


@pytest.mark.parametrize("target", ["linear_rnn", "relu_rnn"])
def test_a_standard_mode_computing_the_layer_form_has_the_ideal_bound(target):
    program = token_map(2, "optimized", vocab_size=6)
    ideal = lsrl.compile(program, target, t_max=30)
    standard = lsrl.compile(program, target, activations="standard", t_max=30)
    for dtype in ("float64", "float32"):
        assert standard.error_bound_in(dtype).tolist() == ideal.error_bound_in(dtype).tolist()


# ------------------------------------------------------------------------------------------ enforcement

def test_error_tolerance_guards_runs_checks_and_exports(tmp_path):
    x = lsrl.Input(1, lower=-1, upper=1)
    model = lsrl.compile(lsrl.ForEach(lsrl.Linear(lsrl.LinState(x, A=[[0.5]], B=[[0.1]]), [[3.0]])), t_max=30)
    xs = np.linspace(-1, 1, 30).reshape(-1, 1)
    assert model.error_tolerance is None
    model(xs)
    bound = float(np.max(model.error_bound_in("float32")))
    assert 0 < bound < 1e-5
    model.error_tolerance = bound / 2
    with pytest.raises(lsrl.PrecisionError, match="error bound .* above error_tolerance"):
        model(xs, dtype="float32")
    with pytest.raises(lsrl.PrecisionError, match="above error_tolerance"):
        list(model.stream([xs], dtype="float32"))
    with pytest.raises(lsrl.PrecisionError, match="above error_tolerance"):
        model.to_onnx(tmp_path / "m.onnx", dtype="float32")
    model.error_tolerance = None
    model(xs, dtype="float32")
    with pytest.raises(ValueError, match="error_tolerance"):
        model.error_tolerance = -1.0

    exact = lsrl.compile(more_ones(), t_max=64)
    exact.error_tolerance = 0.0
    exact(np.ones((5, 1)), dtype="float32")  # bound 0: within any tolerance

    pair = lsrl.Input(2, lower=-1, upper=1)
    standard = lsrl.compile(lsrl.ForEach(lsrl.Multi(pair)), "gru", activations="standard", t_max=8)
    standard.error_tolerance = 1e-6  # float64: 1.3e-10; float32: 2.4e-3 (the σ-difference product's cancellation)
    standard(np.ones((5, 2)))
    with pytest.raises(lsrl.PrecisionError, match="above error_tolerance"):
        standard(np.ones((5, 2)), dtype="float32")
    unbounded = lsrl.Model(parse_module(print_module(exact.module)))  # no layer form, no saved bound
    unbounded.error_tolerance = 1.0
    with pytest.raises(lsrl.PrecisionError, match="no error bound in float64 .it has no layer form"):
        unbounded(np.ones((5, 1)))


@needs_kernel
def test_the_standard_lstm_carries_values_exactly():
    """A standard LSTM's units that carry values (saturated gates, tanh(εv) = εv) add nothing to the bound in a
    float run: more_ones (counters, steps, carriers) is bound 0 in both dtypes, as in ideal mode (3.7e-10 and 0.2
    while every unit was charged 8 ulps of its bound) — and the kernel answers exactly in both."""
    model = lsrl.compile(more_ones(), "lstm", activations="standard", t_max=64)
    assert model.error_bound_in("float64").tolist() == model.error_bound_in("float32").tolist() == [0.0]
    xs = np.random.default_rng(0).integers(0, 2, (4, 64, 1)).astype(float)
    exact = _layer_form_exact(model, xs)
    for dtype in ("float64", "float32"):
        assert np.array_equal(model(xs, backend="kernel", dtype=dtype), exact)


def test_saturation_thresholds_exempt_units_per_dtype():
    """A ReLU unit adds its ``on`` error only below ``exact_from + u·exact_from_u`` and its ``off`` error only above
    ``closed_below − u·closed_below_u`` (a standard gate saturates there; the ``u`` parts are the rounding of the
    gate's bias, which a float32 run feels 2^29 times more than a float64 one)."""
    for lower, upper, fields in ((1, 3, {"on": [1.0], "exact_from": [0.5], "exact_from_u": [2.0 ** 24]}),
                                 (-3, -1, {"off": [1.0], "closed_below": [-0.5], "closed_below_u": [2.0 ** 24]})):
        module = parse_module(f"""lsrl.module @m(%x: 1 {{lower = [{lower:.1f}], upper = [{upper:.1f}], integer = 1}}) -> 1 {{
  %r = relu %x : 1 -> 1
  return %r : 1
}}""")
        module.metadata["local_errors"] = {1: local_error_entry(1, **fields)}
        # float64: the thresholds 0.5 and −0.5 exempt every token; float32: 1.5 and −1.5 leave x = ±1 to charge
        assert ErrorAnalysis(module, "float64", 1).output_bounds(module)[0] == 0.0
        assert ErrorAnalysis(module, "float32", 1).output_bounds(module)[0] == 1.0


def test_a_gates_rounding_is_taken_at_each_value_of_its_argument():
    """With ``gate_terms`` a unit's ``u`` parts are ``gate_fixed_u + gate_terms·r`` at each value of its argument,
    ``r`` what the row's terms reach there (a gate row's partial sums round at what they sum): ``ReLU(x)`` at
    ``x = 0`` sums nothing and closes in float32 under a stated rounding of 2^30 — and ``2^21·(a − b)`` at ``a = b
    = 1`` sums 2^22 and does not (float64 closes it: the ``off`` error 1 is charged in float32 only)."""
    for row, columns, bound32 in (("[[1.0]]", 1, 0.0), ("[[2097152.0, -2097152.0]]", 2, 1.0)):
        bounds = f"lower = zeros<{columns}>, upper = {[1.0] * columns}, integer = 1"
        module = parse_module(f"""lsrl.module @m(%x: {columns} {{{bounds}}}) -> 1 {{
  %l = linear %x {{A = {row}}} : {columns} -> 1
  %r = relu %l : 1 -> 1
  return %r : 1
}}""")
        stated = dict(off=[1.0], closed_below=[0.5], closed_below_u=[2.0 ** 30], gate_fixed_u=[0.0], gate_terms=[8.0])
        module.metadata["local_errors"] = {2: local_error_entry(1, **stated)}
        assert ErrorAnalysis(module, "float32", 1).output_bounds(module)[0] == bound32
        assert ErrorAnalysis(module, "float64", 1).output_bounds(module)[0] == 0.0
        module.metadata["local_errors"] = {2: local_error_entry(1, **dict(stated, gate_terms=[0.0]))}
        assert ErrorAnalysis(module, "float32", 1).output_bounds(module)[0] == 1.0  # the stated rounding alone
        entry = local_error_entry(1, **stated)
        del entry["gate_fixed_u"]  # optional, as in a model saved before it existed: none
        module.metadata["local_errors"] = {2: entry}
        assert ErrorAnalysis(module, "float32", 1).output_bounds(module)[0] == bound32


@needs_kernel
def test_a_gate_closed_at_zero_keeps_its_other_values_saturated():
    """The standard lowering lowers κ so that a gate closes where its argument is exactly 0 only if every other
    value of the argument stays saturated with the rounding its terms reach there: ``(2²² + 2)a − 2²²b + c − 1`` is
    0 only at ``a = b = 0, c = 1`` (its terms reach 1 there), but at ``a = b = 1`` they reach 2²³, and the κ that
    closes the gate at 0 left 1 unsaturated there (a review: bound 0 → 5, measured 0)."""
    x = lsrl.Input(3, lower=[0, 0, 0], upper=[1, 1, 2], integer=True)
    state = lsrl.LinState(x, np.zeros((3, 3)), np.eye(3), init_state=np.zeros(3))
    program = lsrl.ForEach(lsrl.ReLU(lsrl.Linear(state, [[2.0 ** 22 + 2, -2.0 ** 22, 1]], [-1])))
    model = lsrl.compile(program, "lstm", activations="standard", dtype="float32", t_max=12)
    assert model.error_bound.tolist() == [0.0]
    xs = np.array(list(np.ndindex(2, 2, 3)), dtype=float)[None]
    np.testing.assert_array_equal(model(xs, backend="kernel")[0, :, 0], np.asarray(interpret(program.ir, xs))[0, :, 0])


def test_an_underflow_is_charged_where_a_carried_value_may_be_tiny():
    """A unit's ``underflow`` (what float32's subnormals may round) counts unless every value it carries is an exact
    0 or at least ``normal_from``: integer tokens are, a real input in [0, 3] is not; float64 runs are charged
    float64's far smaller subnormals."""
    text = """lsrl.module @m(%x: 1 {lower = [0.0], upper = [3.0], integer = 1}) -> 1 {
  %r = relu %x : 1 -> 1
  return %r : 1
}"""
    for integer in (True, False):
        module = parse_module(text if integer else text.replace(", integer = 1", ""))
        module.metadata["local_errors"] = {1: local_error_entry(1, underflow=[1e-3], normal_from=[1e-3])}
        bound = {dtype: ErrorAnalysis(module, dtype, 1).output_bounds(module)[0] for dtype in ("float32", "float64")}
        if integer:
            assert bound == {"float32": 0.0, "float64": 0.0}
        else:  # besides float32's rounding of the input (3·2^-24)
            assert 1e-3 <= bound["float32"] <= 1e-3 + 2e-7 and 0 < bound["float64"] < 1e-280


@needs_kernel
@pytest.mark.parametrize("target", ["lstm", "gru"])
@pytest.mark.parametrize("scales", [(1e-20, 2e-22), (1e-22, 3e-21), (7e-21, 2e-22), (3e-21, 3e-21)])
def test_a_product_in_float32s_subnormal_range_stays_within_its_bound(target, scales):
    """The standard cells' product of two tiny values is a float32 subnormal, which its readout's dot product
    rounds by a subnormal step, not by ``γ·|value|`` (1.8e-45 off under a bound of 2.9e-46 before the rounding of a
    dot product took an absolute step per term)."""
    x = lsrl.Input(2, lower=-1, upper=1)
    program = lsrl.ForEach(lsrl.Multi(lsrl.Concat([lsrl.Linear(x[0], [[scales[0]]]),
                                                   lsrl.Linear(x[1], [[scales[1]]])])))
    xs = np.random.default_rng(1).uniform(-1, 1, (4, 5, 2))
    exact = np.asarray(interpret(lsrl.ir.core.as_module(program, "test"), xs, exact=True), dtype=np.float64)
    model = lsrl.compile(program, target, activations="standard", dtype="float32", t_max=5)
    error = np.max(np.abs(model(xs, backend="kernel", dtype="float32") - exact))
    bound = float(np.max(model.error_bound_in("float32")))
    assert error > 0 and error <= bound <= 100 * error


def test_a_saved_model_keeps_its_bounds(tmp_path):
    model = lsrl.compile(more_ones(), t_max=64)
    model.save(tmp_path / "m")
    loaded = lsrl.load(tmp_path / "m")
    assert loaded.error_bound_in("float32").tolist() == [0.0]
    x = lsrl.Input(1, lower=-1, upper=1)
    wide = lsrl.compile(lsrl.ForEach(lsrl.Linear(x, [[0.1]])))
    wide.save(tmp_path / "w")
    again = lsrl.load(tmp_path / "w")
    assert np.array_equal(again.error_bound_in("float32"), wide.error_bound_in("float32"))


# ------------------------------------------------------------------------------------------ integer inputs

def test_integer_inputs_are_declared_kept_and_checked(tmp_path):
    with pytest.raises(TypeError, match="integer must be True or False"):
        lsrl.Input(1, integer=1)
    model = lsrl.compile(token_map(2, vocab_size=6), "lstm", t_max=30)
    assert model.module.input.attrs["integer"] == 1
    with pytest.raises(lsrl.InputDomainError, match=r"x\[batch=0, step=1, coord=0\] = 2.5 is not an integer"):
        model(np.array([[1.0], [2.5]]))
    model(np.array([[1.0], [2.5]]), check_assumptions=False)
    model.save(tmp_path / "m")
    assert lsrl.load(tmp_path / "m").module.input.attrs["integer"] == 1
    text = print_module(model.source)
    assert "integer = 1" in text
    assert parse_module(text).input.attrs["integer"] == 1


def test_check_analyses_each_bound_once(monkeypatch):
    import lsrl.passes.error_bound as error_bound
    analysed = []
    real = error_bound.output_error_bounds

    def counting(module, dtype, t_max=None, ranges=None):
        analysed.append(dtype)
        return real(module, dtype, t_max, ranges)

    monkeypatch.setattr(error_bound, "output_error_bounds", counting)
    bits = np.random.default_rng(3).integers(0, 2, size=(2, 12, 1)).astype(float)
    model = lsrl.compile(more_ones(), "linear_rnn", t_max=12)
    first, second = model.check(bits), model.check(bits)
    assert (first.bound, first.within_bound) == (second.bound, second.within_bound)
    assert analysed == ["float64", "float64"]  # the model's bound and the oracle program's, each once


def test_states_and_products_on_a_lattice_are_exact():
    # Σ x (2,700 values: known by its lattice only) times the step counter (300 values): every partial sum and the
    # product are integers below 2^24, so both dtypes compute them exactly
    text = """lsrl.module @m(%x: 1 {lower = [0.0], upper = [9.0], integer = 1}) -> 1 {
  %s = linstate %x {A = diag<[1.0, 1.0]>, B = [[1.0], [0.0]], bias = [0.0, 1.0]} : 1 -> 2
  %f = linear %s {A = [[1.0, 0.0], [0.0, 1.0]]} : 2 -> 2
  %p = multi %f : 2 -> 1
  return %p : 1
}"""
    _assert_exact_in_both_dtypes(text, np.random.default_rng(2).integers(0, 10, (2, 300, 1)).astype(float))


def _assert_exact_in_both_dtypes(text: str, xs: np.ndarray):
    for dtype in ("float64", "float32"):
        bound, deviation = _module_bound_and_deviation(text, xs, dtype, xs.shape[1])
        assert bound.tolist() == [0.0] and deviation.tolist() == [0.0], dtype


# ReLU(q − 10^10·ReLU(1 − c)) — materialize-steps' form of a λ-conditional — with q = Σ x (known by its lattice
# only) and a 0/1 condition c, q read with the weight filled in
LAMBDA_ROW = """lsrl.module @m(%x: 2 {{lower = [0.0, 0.0], upper = [9.0, 1.0], integer = 1}}) -> 1 {{
  %s = linstate %x {{A = [[1.0]], B = [[1.0, 0.0]], bias = [0.0]}} : 2 -> 1
  %cat = concat %s, %x : 1, 2 -> 3
  %pre = linear %cat {{A = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], b = [0.0, 1.0]}} : 3 -> 2
  %u = relu %pre : 2 -> 2
  %l = linear %u {{A = [[{weight}, -10000000000.0]]}} : 2 -> 1
  %r = relu %l : 1 -> 1
  return %r : 1
}}"""


def test_a_lambda_row_is_exact_where_its_condition_keeps_lambda_out():
    # where c = 1 the row sums q and an exact 0 (exact in float32, in any order), where c = 0 it is far below 0
    # whatever it rounds to; the bound follows each side
    text = LAMBDA_ROW.format(weight="1.0")
    module = parse_module(text)
    for dtype in ("float64", "float32"):
        assert ErrorAnalysis(module, dtype, 300)[module.output].err.tolist() == [0.0]
    if kernel_available():
        model = lsrl.compile(module, t_max=300, dtype="float32")
        rng = np.random.default_rng(4)
        xs = np.concatenate([rng.integers(0, 10, (2, 300, 1)), rng.integers(0, 2, (2, 300, 1))], axis=2).astype(float)
        deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs)).max()
        assert deviation <= float(np.max(model.error_bound))


@needs_kernel
@pytest.mark.parametrize("conditional", CONDITIONAL_VARIANTS)
def test_the_token_program_with_an_exact_counter_has_a_zero_bound(conditional):
    """The paper's token program (n = 3, every conditional) with the permutation counter is computed exactly in
    both dtypes, and the bound says so (it was 10^15 to 10^67 before the units were put on integers, the carriers
    shifted by exact bounds and the analysis taught lattices)."""
    model = lsrl.compile(token_map(3, conditional, vocab_size=10, counter="permutation"), t_max=123)
    assert model.error_bound_in("float64").tolist() == [0.0]
    assert model.error_bound_in("float32").tolist() == [0.0]
    xs, answers = token_prompts(3, 20, 4, seed=3)
    for dtype in ("float64", "float32"):
        np.testing.assert_array_equal(model(xs, backend="kernel", dtype=dtype)[:, -3:, 0], answers)


@needs_kernel
@pytest.mark.parametrize("conditional", ["multiplicative", "multiplicative_optimized"])
def test_the_paper_size_token_program_has_a_zero_bound_in_float32(conditional):
    """n = 10 (410 tokens): the `started` register adds the step number at most once every 2n steps (at the first
    value of an entry, one residue of the permutation counter), so range analysis bounds it by 8,180 (20 drives of
    at most 409) where it had 409·410, and its λ-rows `1000·(started − g)` stay below float32's 2^24 (the float32
    bound was 1.5e16)."""
    model = lsrl.compile(token_map(10, conditional, vocab_size=10, counter="permutation"), t_max=410)
    assert model.error_bound_in("float64").tolist() == [0.0]
    assert model.error_bound_in("float32").tolist() == [0.0]
    xs, answers = token_prompts(10, 20, 2, seed=5)
    np.testing.assert_array_equal(model(xs, backend="kernel", dtype="float32")[:, -10:, 0], answers)


@needs_kernel
@pytest.mark.parametrize("conditional", CONDITIONAL_VARIANTS)
def test_the_token_program_with_the_rotation_counter_has_a_zero_bound(conditional):
    """The paper's own rotation counter: its cos/sin state carries rounding (1.5e-13 after 123 steps, 8e-5 in
    float32), but every step reading it is saturated and read through its clamp, so nothing after the steps
    rounds (the bounds were 10^19 to 10^73; step_optimized's float32 one stayed inf until the normal form scaled
    its λ-rows exactly)."""
    model = lsrl.compile(token_map(3, conditional, vocab_size=10, counter="rotation"), t_max=123)
    xs, answers = token_prompts(3, 20, 4, seed=3)
    for dtype in ("float64", "float32"):
        np.testing.assert_array_equal(model(xs, backend="kernel", dtype=dtype)[:, -3:, 0], answers)
        assert model.error_bound_in(dtype).tolist() == [0.0], dtype


@needs_kernel
@pytest.mark.parametrize("conditional", ["multiplicative", "direct"])
def test_the_paper_size_token_program_with_the_rotation_counter_has_a_zero_bound(conditional):
    """n = 10 with the paper's rotation counter (divisors 10 and 20, a rotation by 18°): its indicator rows
    ``cos(iθ)·x + sin(iθ)·y`` meet the 20 states the rotation reaches, not the 11 × 11 pairs of its coordinates'
    values, some of which lie on a step's ramp; the one-hots' rows are one direction although float64 rounded
    some of their weights; and range analysis follows the rotation per residue, so the `started` register holds
    20 drives, not 400, and its λ-rows stay below float32's 2^24.  The bounds were 1.3e27 / 2.9e44 in float64 and
    7.7e35 / inf in float32."""
    model = lsrl.compile(token_map(10, conditional, vocab_size=10, counter="rotation"), t_max=410)
    xs, answers = token_prompts(10, 20, 2, seed=5)
    for dtype in ("float64", "float32"):
        assert model.error_bound_in(dtype).tolist() == [0.0], dtype
        np.testing.assert_array_equal(model(xs, backend="kernel", dtype=dtype)[:, -10:, 0], answers)


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_row_of_a_rotation_meets_only_the_states_it_reaches(dtype):
    # the rotation counter's indicator over 20 positions: each row reads both coordinates of the rotating state,
    # whose 11 values each (cos and sin of multiples of 18°) pair into 121 sums, some on the steps' ramps; the
    # rotation reaches 20 states.  The counter does not read its input, so what it measures is what it makes
    # (2.9e-13 in float64, 9.2e-5 in float32); the bound was 1,270 and 2,340 times that, and is 170 and 340 now
    from lsrl.sugar import f_modulo_counter
    x = lsrl.Input(1, lower=0, upper=9)
    model = lsrl.compile(lsrl.ForEach(f_modulo_counter(x, 20)), "linear_rnn", t_max=410)
    module = model._layer_form
    analysis = ErrorAnalysis(module, dtype)
    indicator = next(op for op in module.ops if op.kind == "linear" and op.operands[0].kind == "linstate")
    assert max(v.points.size for v in analysis[indicator].values) == 20
    xs = np.zeros((1, 410, 1))
    measured = float(np.max(np.abs(model(xs, backend="kernel", dtype=dtype) - _layer_form_exact(model, xs))))
    assert 0 < measured <= float(model.error_bound_in(dtype)[0]) < 1000 * measured


@needs_kernel
def test_an_ideal_gru_product_of_integers_rounds_in_its_pairs():
    # the layer form's product of two integers is exact, but the GRU multiplies through a leak-cancelling pair
    # K·(p' − q') whose units hold up to K·9 and round where the cell computes them: 1.4e-14 measured in float64
    # and 3.8e-6 in float32, where the bound was 0 (a review found it on a product of two rotation counters)
    x = lsrl.Input(2, lower=0, upper=9, integer=True)
    model = lsrl.compile(lsrl.ForEach(lsrl.Multi(lsrl.Concat([x[0], x[1]]))), "gru", t_max=50)
    xs = np.random.default_rng(0).integers(0, 10, (4, 50, 2)).astype(float)
    for dtype in ("float64", "float32"):
        measured = float(np.max(np.abs(model(xs, backend="kernel", dtype=dtype) - _layer_form_exact(model, xs))))
        assert 0 < measured <= float(model.error_bound_in(dtype)[0]) < 1000 * measured, dtype


@needs_kernel
@pytest.mark.parametrize("dtype, gate, other", [("float32", 2.0 ** 63, 1.5e19), ("float64", 2.0 ** 511, 7e307 / 2.0 ** 511)])
def test_terms_a_reader_sums_that_may_overflow_give_an_infinite_bound(dtype, gate, other):
    # a GRU pair's value K·(p' − q') sums two units of up to K·B_v (K = 2^65 here, four times the gate's largest
    # magnitude): they overflow where the product itself stays below half the dtype's largest float — the run
    # gives inf, and the bound was finite (3.2e33 in float32; a review)
    x = lsrl.Input(2, lower=[-gate, -other], upper=[gate * 1.001, other])
    model = lsrl.compile(lsrl.ForEach(lsrl.Multi(lsrl.Concat([x[0], x[1]]))), "gru", t_max=12, dtype=dtype)
    xs = np.tile(np.array([[[gate * 1.001, other]]]), (1, 12, 1))
    assert np.isinf(model(xs, backend="kernel", check_assumptions=False)).any()
    assert model.error_bound_in(dtype).tolist() == [np.inf]


@pytest.mark.parametrize("scale", [1e200, 1e300])
def test_a_clocked_value_that_may_overflow_gets_an_infinite_bound(scale):
    # a ReLU of a rotation's coordinate, read by a linear that may leave float32's range: the analysis drops that
    # linear's clock, and the ReLU after it (a group carried from the first) must not fill a clock it lacks — it
    # raised a TypeError (a review)
    from lsrl.sugar import f_constant
    x = lsrl.Input(1, lower=0.0, upper=1.0)
    theta = 2 * np.pi / 5
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    state = lsrl.LinState(f_constant(x, 1), A=rotation, B=np.zeros((2, 1)), init_state=[1.0, 0.0])
    u = lsrl.ReLU(lsrl.Linear(state, [[1.0, 0.0]], [-0.2]))
    model = lsrl.compile(lsrl.ForEach(lsrl.ReLU(lsrl.Linear(u, [[scale]], [-0.1 * scale]))), t_max=50)
    assert model.error_bound_in("float32").tolist() == [np.inf]
    assert model.error_bound_in("float64")[0] > 0


def test_a_shift_register_of_a_fine_lattice_stays_exact():
    # 4096 integer inputs (too many to list) scaled by 2^-12: a lattice through the linear (its offset 0.5 is no
    # integer, but its sum is exact), the shift register and the readout, exact in both dtypes
    text = """lsrl.module @m(%x: 1 {lower = [0.0], upper = [4095.0], integer = 1}) -> 1 {
  %y = linear %x {A = [[0.000244140625]], b = [0.5]} : 1 -> 1
  %s = linstate %y {A = [[0.0, 1.0], [0.0, 0.0]], B = [[0.0], [1.0]]} : 1 -> 2
  %o = linear %s {A = [[1000.0, 3.0]], b = [0.0]} : 2 -> 1
  %r = relu %o : 1 -> 1
  return %r : 1
}"""
    _assert_exact_in_both_dtypes(text, np.random.default_rng(2).integers(0, 4096, (2, 50, 1)).astype(float))


def test_a_value_that_may_leave_the_dtypes_range_has_no_bound():
    # (x²)² reaches 1e40 for |x| ≤ 1e10: float32 runs give inf there, so its bound is inf (a review found 3e37);
    # float64 holds it
    text = """lsrl.module @m(%x: 1 {lower = [-10000000000.0], upper = [10000000000.0]}) -> 1 {
  %c = concat %x, %x : 1, 1 -> 2
  %s = multi %c : 2 -> 1
  %d = concat %s, %s : 1, 1 -> 2
  %q = multi %d : 2 -> 1
  return %q : 1
}"""
    module = parse_module(text)
    assert ErrorAnalysis(module, "float32", 10)[module.output].err.tolist() == [np.inf]
    assert np.isfinite(ErrorAnalysis(module, "float64", 10)[module.output].err).all()


def test_a_lambda_row_with_a_constant_float64_cannot_hold_keeps_its_shift():
    # the λ-row read with 1 + 2^-60: its per-piece rounding is 0, the constant's rounding is not
    text = LAMBDA_ROW.format(weight="1152921504606846977/1152921504606846976")
    rng = np.random.default_rng(4)
    xs = np.concatenate([rng.integers(0, 10, (2, 300, 1)), np.ones((2, 300, 1))], axis=2).astype(float)
    bound, deviation = _module_bound_and_deviation(text, xs, "float64", 300)
    assert np.all(deviation > 0) and np.all(deviation <= bound)


def test_the_intervals_of_a_lattice_sum_hold_a_relu_crossing_zero():
    # ReLU(s + 2700) for s in [−2700, 2700] reaches 5400: the intervals the next row's pre-activation is known in
    # must come from that, not from the ReLU's value at the start of its piece
    text = """lsrl.module @m(%x: 2 {lower = [-9.0, 0.0], upper = [9.0, 1.0], integer = 1}) -> 1 {
  %s = linstate %x {A = [[1.0]], B = [[1.0, 0.0]], bias = [0.0]} : 2 -> 1
  %p = linear %s {A = [[1.0]], b = [2700.0]} : 1 -> 1
  %u = relu %p : 1 -> 1
  %cat = concat %u, %x : 1, 2 -> 3
  %q = linear %cat {A = [[1.0000000000000284, 0.0, -8192.0]], b = [-3000.0]} : 3 -> 1
  %v = relu %q : 1 -> 1
  return %v : 1
}"""
    xs = np.tile(np.array([9.0, 0.0]), (1, 300, 1))
    bound, deviation = _module_bound_and_deviation(text, xs, "float64", 300)
    assert np.all(deviation > 0) and np.all(deviation <= bound)


# ------------------------------------------------------------------------------------------ standard modes, exactly

# (target, counter, conditional) of the paper's token program whose standard model is exact and bounded by 0; the
# standard GRU records that its λ-conditionals cannot run in float32 (its pairs under λ-weights)
STANDARD_ZERO = [("lstm", "rotation", "multiplicative"), ("lstm", "rotation", "direct"),
                 ("gru", "permutation", "multiplicative")]
STANDARD_ZERO_SLOW = sorted({(target, counter, conditional) for conditional in CONDITIONAL_VARIANTS
                             for target, counter in (("lstm", "rotation"), ("lstm", "permutation"),
                                                     ("gru", "permutation"))} - set(STANDARD_ZERO))


def _standard_token_bound_is_zero(target, counter, conditional):
    xs, answers = token_prompts(3, 20, 4, seed=3)
    for dtype in ("float64", "float32"):
        program = token_map(3, conditional, vocab_size=10, counter=counter)
        try:
            model = lsrl.compile(program, target, activations="standard", t_max=123, dtype=dtype)
        except lsrl.CompileError as refused:
            assert target == "gru" and dtype == "float32" and "cannot stay accurate in float32" in str(refused)
            continue
        assert model.error_bound.tolist() == [0.0], dtype
        out = model(xs, backend="kernel")
        np.testing.assert_array_equal(out, _layer_form_exact(model, xs))
        np.testing.assert_array_equal(out[:, -3:, 0], answers)


@needs_kernel
@pytest.mark.parametrize("target, counter, conditional", STANDARD_ZERO)
def test_the_standard_token_program_has_a_zero_bound(target, counter, conditional):
    """The paper's token program (n = 3) through the standard LSTM and GRU: every unit saturates or carries its
    value, the steps are read through clamps (LSTM), a unit's construction is charged per candidate, an exact 0 on
    a gate's ramp passes nothing, and the selects' and GRU pairs' hidden terms are lattice values read exactly — so
    the bound is the measured error, 0, in both dtypes (LSTM multiplicative: 2.3e7 in float64, inf in float32)."""
    _standard_token_bound_is_zero(target, counter, conditional)


@needs_kernel
@pytest.mark.slow
@pytest.mark.parametrize("target, counter, conditional", STANDARD_ZERO_SLOW)
def test_the_standard_token_program_has_a_zero_bound_everywhere(target, counter, conditional):
    _standard_token_bound_is_zero(target, counter, conditional)


def _ramp_module(local: dict | None):
    """``relu(relu(x))`` of an integer ``x ∈ [−2, 2]`` whose first ReLU a target builds with ``local`` fields:
    saturated at ``|x| ≥ 1``, on its gate's ramp at 0."""
    module = parse_module("""lsrl.module @m(%x: 1 {lower = [-2.0], upper = [2.0], integer = 1}) -> 1 {
  %y = linear %x {A = [[1.0]]} : 1 -> 1
  %r = relu %y : 1 -> 1
  %z = linear %r {A = [[2.0]]} : 1 -> 1
  %s = relu %z : 1 -> 1
  return %s : 1
}""")
    if local is not None:
        module.metadata["local_errors"] = {2: local_error_entry(1, on=[1e-3], off=[1e-3], exact_from=[0.5],
                                                                closed_below=[-0.5], **local)}
    return module


def test_a_unit_adds_at_most_its_partial_gain_times_a_value_near_zero():
    """A gate partly open passes part of its value: ``partial_gain`` bounds that by a multiple of the computed
    argument, so an argument computed as an exact 0 adds nothing where the gate's bias rounding leaves the gate
    anywhere — and a unit that carries the ReLU on a saturated candidate is charged nothing either (the carried
    group charged its argument's largest on/off error at every candidate)."""
    modules = {name: _ramp_module(local)
               for name, local in (("ideal", None), ("ramp", {}), ("gain", {"partial_gain": [4.0]}))}
    bound = {name: ErrorAnalysis(m, "float64", 1).output_bounds(m)[0] for name, m in modules.items()}
    assert bound["ideal"] == 0.0
    assert bound["ramp"] == 2e-3  # x = 0: the first unit's 1e-3, twice in the second
    assert bound["gain"] == 0.0


def test_hidden_terms_on_a_lattice_are_read_exactly():
    """A select's units multiply the other factor by its candidates' gaps: integer terms, which a reader sums
    exactly where they fit the dtype (``hidden_step``); without that they round at their magnitude."""
    text = """lsrl.module @m(%x: 2 {lower = [0.0, 0.0], upper = [3.0, 3.0], integer = 1}) -> 1 {
  %p = multi %x : 2 -> 1
  %y = linear %p {A = [[0.5]], b = [1.0]} : 1 -> 1
  return %y : 1
}"""
    module = parse_module(text)
    fields = {"selector": [1], "margin": [0.25], "hidden": [9.0], "units": [3]}
    bounds = []
    for step in ([0.0], [1.0]):
        module.metadata["local_errors"] = {1: local_error_entry(1, hidden_step=step, **fields)}
        bounds.append(ErrorAnalysis(module, "float32", 1).output_bounds(module)[0])
    assert bounds[0] >= ROUNDING_HOPS * 4 * UNIT_ROUNDOFF["float32"] * 4.5 and bounds[1] == 0.0
    module.output = module.ops[1]  # the readout reads the units itself
    assert ErrorAnalysis(module, "float32", 1).output_bounds(module)[0] == 0.0


def test_a_pairs_halves_are_counted_once_with_its_value():
    """A GRU pair's value is the difference of its two halves, ``p − q``, which reach twice the unit's bound
    together (``terms_total``): the reader of ``1 − u`` sums at most ``2B + 1``, which float32 holds for
    ``B = 8.19·10⁶``, not the value's ``B`` beside the halves' ``2B`` (a bound of 8.8, which λ made inf in the
    n = 10 token program through the standard GRU)."""
    bound = 8190000.0
    module = parse_module(f"""lsrl.module @m(%x: 1 {{lower = [0.0], upper = [{bound + 1}], integer = 1}}) -> 1 {{
  %p = linear %x {{A = [[1.0]], b = [-1.0]}} : 1 -> 1
  %u = relu %p : 1 -> 1
  %y = linear %u {{A = [[-1.0]], b = [1.0]}} : 1 -> 1
  return %y : 1
}}""")
    bounds = []
    for total in (np.inf, 2 * bound):
        module.metadata["local_errors"] = {2: local_error_entry(1, hidden=[2 * bound], units=[2], hidden_step=[1.0],
                                                                terms_total=[total], exact_from=[0.0],
                                                                closed_below=[0.0])}
        bounds.append(ErrorAnalysis(module, "float32", 1).output_bounds(module)[0])
    assert bounds[0] >= ROUNDING_HOPS * 3 * UNIT_ROUNDOFF["float32"] * 3 * bound and bounds[1] == 0.0


@pytest.mark.slow
@needs_kernel
def test_the_paper_size_token_program_through_the_standard_gru_has_a_zero_float32_bound():
    """n = 10 (410 tokens), multiplicative, the permutation counter, the standard GRU in float32: the bound was inf
    (a reader of a pair of up to 8.19·10⁶ counted 3B where its halves reach 2B) and is 0; the kernel computes the
    layer form exactly and answers right."""
    model = lsrl.compile(token_map(10, "multiplicative", vocab_size=10, counter="permutation"), "gru",
                         activations="standard", t_max=410, dtype="float32")
    assert model.error_bound.tolist() == [0.0]
    xs, answers = token_prompts(10, 20, 2, seed=5)
    out = model(xs, backend="kernel")
    np.testing.assert_array_equal(out, _layer_form_exact(model, xs))
    np.testing.assert_array_equal(out[:, -10:, 0], answers)


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_gru_pair_closes_at_an_exact_zero(dtype):
    """``ReLU(x − 1)`` of an integer ``x``: at ``x = 1`` the argument is exactly 0, where a gate ``σ(κ(x − 1) − L)``
    with ``κ = 2^80/B`` is anything (its bias ``−κ − L`` rounds by more than ``L``) and the GRU pair keeps a part
    of its last value; κ is lowered so the gate closes there, the pair keeps a value it passed whole, and its
    reader sums the pair exactly."""
    x = lsrl.Input(1, lower=0, upper=3, integer=True)
    program = lsrl.ForEach(lsrl.Linear(lsrl.ReLU(lsrl.Linear(x, [[1.0]], b=[-1.0])), [[1000.0]], b=[0.5]))
    model = lsrl.compile(program, "gru", activations="standard", t_max=8, dtype=dtype)
    assert model.error_bound.tolist() == [0.0]
    xs = np.array([[[3.0], [1.0], [2.0], [1.0], [0.0], [1.0], [3.0], [1.0]]])
    np.testing.assert_array_equal(model(xs, backend="kernel"), _layer_form_exact(model, xs))


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["lstm", "gru"])
def test_a_relu_computed_as_an_exact_zero_keeps_its_rounding_as_slack(target, dtype):
    """``v = ReLU(1 − fl(1/3)·u)`` at ``u = 3`` is ``2⁻⁵⁴`` exactly and 0 computed: the analysis listed the candidate
    0 with no slack, and the standard select ``v·x``, which multiplies ``x`` by the candidate its gates pick, was
    bounded by 0 where every executor is ``3·2⁻⁵⁴`` off (found by a review's check of every op's candidates)."""
    x = lsrl.Input(1, lower=-3, upper=0, integer=True)
    u = lsrl.ReLU(lsrl.Linear(x, [[-3.0]], b=[-6.0]))
    v = lsrl.ReLU(lsrl.Linear(u, [[-1 / 3]], b=[1.0]))
    model = lsrl.compile(lsrl.ForEach(lsrl.Multi(lsrl.Concat([v, x]))), target, activations="standard", t_max=1,
                         dtype=dtype)
    assert any(np.any(entry["selector"]) for entry in model._layer_form.metadata["local_errors"].values())
    xs = np.arange(-3.0, 1.0).reshape(4, 1, 1)
    deviation = np.abs(model(xs, backend="kernel") - _layer_form_exact(model, xs))
    assert deviation.max() == 3 * 2.0 ** -54
    assert np.all(deviation <= model.error_bound)


def _integer_chain(draw):
    """ReLU chains over a small integer input with weights float64 cannot hold (1/3, 0.1, 5/7), and a product; and
    every input in the domain."""
    weights = st.sampled_from([1 / 3, -1 / 3, -2 / 3, 0.1, -0.3, 5 / 7, 1.5, 2.0, -1.0, 1.0, 0.0])
    biases = st.sampled_from([0.0, 1.0, -1.0, 0.5, 1 / 3, -2.0, 0.1])
    width = draw(st.integers(1, 2))
    upper = draw(st.integers(0, 3))
    value = x = lsrl.Input(width, lower=-3, upper=upper, integer=True)
    for _ in range(draw(st.integers(1, 3))):
        rows = draw(st.integers(1, 3))
        matrix = [[draw(weights) for _ in range(value.dim)] for _ in range(rows)]
        value = lsrl.ReLU(lsrl.Linear(value, matrix, b=[draw(biases) for _ in range(rows)]))
    factors = lsrl.Concat([lsrl.Linear(value, [[draw(weights) for _ in range(value.dim)]], b=[draw(biases)]),
                           lsrl.Linear(x, [[draw(weights) for _ in range(width)]], b=[draw(biases)])])
    grid = np.stack(np.meshgrid(*[np.arange(-3.0, upper + 1)] * width), -1).reshape(-1, 1, width)
    return lsrl.ForEach(lsrl.Linear(lsrl.Concat([value, lsrl.Multi(factors)]), [[1.0] * (value.dim + 1)])), grid


@settings(max_examples=profile_examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_exact_value_lies_within_its_candidates_slack(data):
    """What the standard lowerings build on (selects, exact reads, closing gates): every exact value of the layer
    form lies within the slack of one of its candidates, at every op, for every integer input."""
    program, grid = _integer_chain(data.draw)
    module = lsrl.compile(program, t_max=1)._layer_form
    _, exact = interpret(module, grid, exact=True, return_values=True)
    analysis = ErrorAnalysis(module, "float64", 1)
    for op in module.ops:
        for i, v in enumerate(analysis[op].values):
            if v.points is None:
                continue
            for value in np.asarray(exact[op])[..., i].ravel().tolist():
                gaps = [abs(Fraction(float(p)) - value) - Fraction(float(s)) for p, s in zip(v.points, v.slacks)]
                assert min(gaps) <= 0, (op.describe(), i, float(value), v.points, v.slacks)
