"""Issue 13: a compiled model enforces its assumptions and every bad input gets a clear error.

One section per item of the issue (1 = most severe); every test here failed before the fix.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lsrl
from lsrl import opt
from lsrl.ir import parse
from lsrl.ir.core import Op
from lsrl.ir.matrix import Vector
from lsrl.programs import more_ones
from lsrl.runtime import executor
from lsrl.scan import kernel_available

TARGETS = ["linear_rnn", "relu_rnn", "lstm", "gru"]
BACKENDS = ["numpy"] + (["kernel"] if kernel_available() else [])
BITS = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=float)

pytest.importorskip("safetensors", reason="model files use the safetensors format")


@pytest.fixture(scope="module")
def models():
    return {t: lsrl.compile(more_ones(), t, t_max=10) for t in TARGETS}


# ------------------------------------------------------------------------------------------ item 1

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", TARGETS)
def test_model_rejects_inputs_outside_the_bounds(models, target, backend):
    model = models[target]
    np.testing.assert_array_equal(model(np.r_[BITS[:9], 1.0], backend=backend), model(BITS[:9].tolist() + [1],
                                                                                     backend=backend))
    with pytest.raises(lsrl.InputDomainError, match=r"x\[batch=1, step=4, coord=0\] = 1\.5 violates the upper "
                                                    r"bound 1\.0"):
        model(np.stack([BITS, np.r_[BITS[:4], 1.5, BITS[5:]]])[..., None], backend=backend)
    with pytest.raises(lsrl.InputDomainError, match="step=0.*lower bound 0"):
        model(np.r_[-1e-9, BITS[1:]], backend=backend)
    model(np.r_[BITS[:9], 1.5], backend=backend, check_assumptions=False)  # the opt-out runs anyway


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target", TARGETS)
def test_model_rejects_sequences_longer_than_t_max(models, target, backend):
    model = models[target]
    assert model.t_max == 10
    model(BITS, backend=backend)  # exactly t_max steps is allowed
    with pytest.raises(lsrl.SequenceLengthError, match="11 steps is longer than t_max=10"):
        model(np.r_[BITS, 0.0], backend=backend)
    chunks = [BITS[:4], BITS[:4], BITS[:4]]
    with pytest.raises(lsrl.SequenceLengthError, match="reached 12 steps.*steps 8…11"):
        list(model.stream(chunks, backend=backend))
    assert len(list(model.stream(chunks, backend=backend, check_assumptions=False))) == 3


def test_exact_inputs_are_checked_against_exact_bounds():
    model = lsrl.compile(more_ones(), "lstm", exact=True, t_max=10)
    from fractions import Fraction
    model([Fraction(1)] * 3, exact=True)
    with pytest.raises(lsrl.InputDomainError):
        model([Fraction(1), Fraction(1) + Fraction(1, 10**30)], exact=True)


def test_canonicalize_with_t_max_records_the_assumption():
    module = opt.run(more_ones().ir, "canonicalize{use_ranges=true,t_max=3}")
    assert module.metadata["t_max"] == 3
    lsrl.ir.interpret(module, BITS[:3])
    with pytest.raises(lsrl.SequenceLengthError, match="interpret: a sequence of 10 steps is longer than t_max=3"):
        lsrl.ir.interpret(module, BITS)
    assert lsrl.compile(module, "gru").t_max == 3  # binds the compiled model too
    assert lsrl.compile(module, "gru", t_max=100).t_max == 3
    assert opt.run(more_ones().ir, "canonicalize{use_ranges=true,t_max=3}", check=True)  # checked on 3 steps


@pytest.mark.parametrize("pipeline", ["canonicalize{t_max=0}", "canonicalize{use_ranges=true,t_max=-1}",
                                      "range-analysis{t_max=0}", "range-analysis{t_max=-5}", "lower{t_max=0}"])
def test_t_max_options_are_validated_when_parsed(pipeline):
    with pytest.raises(lsrl.PassError, match="t_max must be a positive integer"):
        opt.run(more_ones().ir, pipeline)


def test_t_max_is_validated_in_one_place():
    from lsrl.passes.range_analysis import compute_ranges
    with pytest.raises(lsrl.OptionError, match="t_max"):
        compute_ranges(more_ones().ir, t_max=0)
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(lsrl.CompileError, match="t_max must be a positive integer"):
            lsrl.compile(more_ones(), "lstm", t_max=bad)


# ------------------------------------------------------------------------------------------ item 2

def _saved(tmp_path, target="lstm", activations="ideal"):
    lsrl.compile(more_ones(), target, activations=activations, t_max=10).save(tmp_path)
    return tmp_path


def _edit(path, fn):
    doc = json.loads((path / "model.json").read_text())
    fn(doc)
    (path / "model.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(activations="standard"), "the model says 'standard' but lstm %L0 has "
                                                  "activations 'ideal'"),
    (lambda d: d["metadata"].update(stages=5), "metadata.stages"),
    (lambda d: d["metadata"].update(stages=[{"stage": "S"}]), "metadata.stages"),
    (lambda d: d["metadata"]["stages"].__setitem__(0, "S"), "metadata.stages\\[0\\]"),
    (lambda d: d["metadata"].update(layout={"a": 1}), "metadata.layout"),
    (lambda d: d["metadata"].update(t_max=0), "t_max must be a positive integer"),
    (lambda d: d["metadata"].update(standard={"rho": 1}), "metadata.standard"),
    (lambda d: d.update(weights_sha256="0" * 64), "do not match the SHA-256"),
    (lambda d: d.pop("weights_sha256"), "format version 2 needs the weights' SHA-256"),
])
def test_metadata_is_checked_against_the_ops(tmp_path, edit, match):
    path = _saved(tmp_path)
    _edit(path, edit)
    with pytest.raises(lsrl.ModelFormatError, match=match):
        lsrl.load(path)


def test_every_flipped_weight_byte_is_detected(tmp_path):
    path = _saved(tmp_path)
    clean = (path / "weights.safetensors").read_bytes()
    rng = np.random.default_rng(0)
    for offset in rng.choice(len(clean), 40, replace=False):
        data = bytearray(clean)
        data[offset] ^= 1 << int(rng.integers(8))
        (path / "weights.safetensors").write_bytes(bytes(data))
        with pytest.raises(lsrl.ModelFormatError):
            lsrl.load(path)


def test_version_1_files_without_a_hash_still_load(tmp_path):
    path = _saved(tmp_path)
    _edit(path, lambda d: (d.pop("weights_sha256"), d.update(format_version=1)))
    assert lsrl.load(path).t_max == 10


def test_loaded_model_keeps_enforcing_t_max(tmp_path):
    model = lsrl.load(_saved(tmp_path, "gru"))
    with pytest.raises(lsrl.SequenceLengthError):
        model(np.r_[BITS, 1.0])


# ------------------------------------------------------------------------------------------ item 3

@pytest.mark.parametrize("target, t_max", [("lstm", 10**20), ("lstm", 10**25), ("gru", 2 * 10**9), ("gru", 10**25)])
def test_standard_mode_refuses_t_max_it_cannot_stay_accurate_for(target, t_max):
    with pytest.raises(lsrl.CompileError, match="standard mode cannot stay accurate.*worst-case error"):
        lsrl.compile(more_ones(), target, activations="standard", t_max=t_max)


@pytest.mark.parametrize("target, t_max", [("lstm", 10**15), ("lstm", 3 * 10**15), ("gru", 10**9)])
def test_standard_mode_below_the_threshold_is_right(target, t_max):
    model = lsrl.compile(more_ones(), target, activations="standard", t_max=t_max)
    bits = np.random.default_rng(0).integers(0, 2, (4, 60, 1)).astype(float)
    assert np.max(np.abs(model(bits) - more_ones()(bits))) <= 1e-6


# ------------------------------------------------------------------------------------------ item 4

_LOAD_IN_CHILD = r"""
import json, os, resource, sys, time
import lsrl
from lsrl.errors import ModelFormatError
vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), vm + (512 << 20)))
results = {}
for path in sys.argv[1:]:
    t0 = time.perf_counter()
    try:
        lsrl.load(path)
        results[path] = "loaded"
    except ModelFormatError as e:
        results[path] = "ModelFormatError"
    results[path] += f" {time.perf_counter() - t0:.2f}"
print(json.dumps(results))
"""


def load_in_child(paths, timeout=60) -> dict:
    """``lsrl.load`` of every path in a subprocess limited to 512 MiB more address space than it starts with;
    any exception other than ModelFormatError (or a hang) fails the test through the child's exit."""
    res = subprocess.run([sys.executable, "-c", _LOAD_IN_CHILD, *map(str, paths)], capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return {k: v.split() for k, v in json.loads(res.stdout).items()}


def test_loader_reads_regular_bounded_files_only(tmp_path):
    cases = {}
    for name, make in [
        ("dev_zero", lambda p: os.symlink("/dev/zero", p / "model.json")),
        ("fifo", lambda p: os.mkfifo(p / "model.json")),
        ("sparse_8gb", lambda p: open(p / "model.json", "wb").truncate(8 << 30)),
        ("weights_dev_zero", lambda p: (os.unlink(p / "weights.safetensors"),
                                        os.symlink("/dev/zero", p / "weights.safetensors"))),
        ("weights_fifo", lambda p: (os.unlink(p / "weights.safetensors"), os.mkfifo(p / "weights.safetensors"))),
        ("nested", lambda p: (p / "model.json").write_text("[" * 200000 + "]" * 200000)),
        ("nested_obj", lambda p: (p / "model.json").write_text('{"a":' * 100000 + "1" + "}" * 100000)),
        ("digits_5000", lambda p: _edit(p, lambda d: d["input"].update(dim=None)) or
         (p / "model.json").write_text((p / "model.json").read_text().replace('"dim": null', '"dim": ' + "7" * 5000))),
        ("rational_4000", lambda p: _edit(p, lambda d: d["ops"][-1]["attrs"]["b"].update(
            type="vector", exact=["9" * 4000]))),
        ("directory", lambda p: (os.unlink(p / "model.json"), os.mkdir(p / "model.json"))),
    ]:
        path = tmp_path / name
        path.mkdir()
        _saved(path)
        if name in ("dev_zero", "fifo", "sparse_8gb"):
            os.unlink(path / "model.json")
        make(path)
        cases[name] = path
    results = load_in_child(cases.values())
    for name, path in cases.items():
        status, seconds = results[str(path)]
        assert status == "ModelFormatError", name
        assert float(seconds) < 5, name


# ------------------------------------------------------------------------------------------ item 5

MODULE = """lsrl.module @m(%x: 1 in [0, 1]) -> 1 {
  %y = linear %x {A = MATRIX, b = VECTOR} : 1 -> 1
  return %y : 1
}
"""


@pytest.mark.parametrize("matrix, vector, match", [
    ("diag<[inf]>", "[0]", "vector entries must be finite"),
    ("identity<99999999999999999999>", "[0]", "larger than the limit 1048576"),
    ("identity<1000000000000>", "[0]", "larger than the limit"),
    ("[[1]]", "[" + "9" * 5000 + "]", "number literal of 5000 characters"),
    ("[[1]]", "[" + "9" * 400 + "]", "beyond the float64 range"),
    ("[[1]]", "[nan]", "vector entries must be finite"),
    ("[[1]]", "[inf]", "vector entries must be finite"),
    ("[[1]]", "[1e999]", "vector entries must be finite"),
    ("[[1]]", "sparse<1>{0: nan}", "vector entries must be finite"),
    ("[[1]]", "sparse<1>{0: 1/0}", "zero denominator"),
    ("[[" + "9" * 3990 + "/3]]", "[0]", "beyond the float64 range"),
    ("diag<" * 3000 + "[1]" + ">" * 3000, "[0]", "cannot parse the text here"),
])
def test_parser_raises_only_parse_errors(matrix, vector, match):
    with pytest.raises(lsrl.ParseError, match=match) as info:
        parse(MODULE.replace("MATRIX", matrix).replace("VECTOR", vector), filename="m.lsrl")
    assert str(info.value).startswith("m.lsrl:")


def test_parser_rejects_nan_bounds_and_non_utf8_bytes():
    with pytest.raises(lsrl.ParseError, match="lower bound is nan"):
        parse(MODULE.replace("[0, 1]", "[nan, 1]"))
    with pytest.raises(lsrl.ParseError, match=r"m:3:3: error: the text is not UTF-8 \(byte 0xff"):
        parse(MODULE.encode().replace(b"  return", b"  \xffreturn"), filename="m")
    assert parse(MODULE.replace("MATRIX", "[[2]]").replace("VECTOR", "[0]").encode()).output.dim == 1


def test_lsrl_opt_reports_bad_text_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.lsrl"
    bad.write_bytes(b"lsrl.module @m(%x: 1) -> 1 {\xff\xfe}\n")
    huge = tmp_path / "huge.lsrl"
    huge.write_text(MODULE.replace("MATRIX", "identity<1000000000000>").replace("VECTOR", "[0]"))
    for path, fragment in ((bad, "bad.lsrl:1:29: error: the text is not UTF-8"),
                           (huge, "huge.lsrl:2:32: error: a dimension 1000000000000 is larger")):
        res = subprocess.run([sys.executable, "-m", "lsrl.opt", str(path), "-p", "canonicalize"],
                             capture_output=True, text=True)
        assert res.returncode == 1 and "Traceback" not in res.stderr and fragment in res.stderr, res.stderr


# ------------------------------------------------------------------------------------------ item 6

@pytest.mark.parametrize("build, match", [
    (lambda: lsrl.Input(1, lower=np.inf), "empty domain"),
    (lambda: lsrl.Input(2, upper=-np.inf), "empty domain"),
    (lambda: lsrl.Input(2, lower=[0, np.inf], upper=[1, None]), r"empty domain at coordinate\(s\) \[1\]"),
    (lambda: lsrl.Input(1, lower=2, upper=1), "empty domain"),
    # an input op built by hand: the verifier refuses what Input() and the parser do, and a NaN bound too
    (lambda: Op("input", [], {"dim": 1, "lower": Vector([2.0]), "upper": Vector([1.0])}), "empty domain"),
    (lambda: Op("input", [], {"dim": 1, "lower": Vector([np.nan]), "upper": Vector([1.0])}), "or a NaN bound"),
    (lambda: lsrl.f_bump(lsrl.Input(1), 2, 1), "lb = 2 is larger than ub = 1"),
    (lambda: lsrl.Input(1) / 5e-324, "beyond the float64 range"),
    (lambda: lsrl.f_step(lsrl.Input(1), scale=1e-320), "beyond the float64 range"),
    (lambda: lsrl.Linear(lsrl.Input(1), [[10**400]]), "beyond the float64 range"),
    (lambda: lsrl.Input(10**12), r"dim must be an integer in \[1, 1048576\]"),
])
def test_front_end_rejects_empty_domains_and_out_of_range_constants(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# ------------------------------------------------------------------------------------------ item 7

@pytest.mark.parametrize("target", TARGETS)
def test_every_backend_fails_the_same_way_on_overflow(target):
    x = lsrl.Input(1)
    s = lsrl.LinState(x, A=[[1]], B=[[1]], init_state=[0])
    model = lsrl.compile(lsrl.ForEach(lsrl.ReLU(s) - lsrl.ReLU(-s)), target)
    xs = np.array([1.5e308, 1.5e308, 1.0])
    with np.errstate(all="ignore"):
        for backend in BACKENDS:
            with pytest.raises(lsrl.NumericRangeError, match=r"y\[batch=0, step=1, coord=0\] = inf") as info:
                model(xs, backend=backend)
            message = str(info.value)
            assert "{hint}" not in message and message.endswith("(check_assumptions=False skips this check)")


@pytest.mark.skipif(not kernel_available(), reason="needs the C++ kernel")
def test_executor_rejects_non_finite_states(models):
    model = models["linear_rnn"]
    states = [None] * len(model.module.ops[1:])
    states[0] = np.full((1, model.module.ops[1].dim), np.nan)
    with pytest.raises(ValueError, match="must be finite; found nan"):
        executor.run(model.module, BITS, states)


# ------------------------------------------------------------------------------------------ item 8

def test_arguments_of_the_wrong_type_get_clear_errors(models):
    with pytest.raises(TypeError, match="pipeline must be str or None, got 5"):
        lsrl.compile(more_ones(), pipeline=5)
    with pytest.raises(TypeError, match="exact must be bool, got 'yes'"):
        lsrl.compile(more_ones(), exact="yes")
    with pytest.raises(TypeError, match="out must be a text stream"):
        opt.run(more_ones().ir, "cse", out=5)
    with pytest.raises(TypeError, match="pipeline must be pipeline text"):
        opt.run(more_ones().ir, 5)


def test_save_and_load_paths(tmp_path, models):
    model = models["lstm"]
    model.save(os.fsencode(tmp_path / "b"))
    assert lsrl.load(os.fsencode(tmp_path / "b")).t_max == 10
    # either file of a saved folder names the model (they looked for model.safetensors / weights.json)
    assert lsrl.load(tmp_path / "b" / "model.json").t_max == lsrl.load(tmp_path / "b" / "weights.safetensors").t_max
    with pytest.raises(lsrl.ModelSaveError, match="cannot"):
        model.save(tmp_path / "b" / "model.json" / "x")
    for empty in ("", b""):  # it wrote model.json and weights.safetensors into the current folder
        with pytest.raises(ValueError, match="a model path must not be empty"):
            model.save(empty)
        with pytest.raises(ValueError, match="a model path must not be empty"):
            lsrl.load(empty)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "c").mkdir()
    os.symlink(victim, tmp_path / "c" / "model.json")
    model.save(tmp_path / "c")
    assert victim.read_text() == "keep" and not (tmp_path / "c" / "model.json").is_symlink()
    assert lsrl.load(tmp_path / "c").target == "lstm"
