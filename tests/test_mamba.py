"""Target ``mamba`` (HF ``MambaModel``; python/lsrl/targets/mamba.py, docs/mamba.md).

* the numpy model (HF's block equations in float64) against the interpreter of the original program:
  relative 1e-9 in ideal mode, 1e-8 in standard mode;
* ``model.to_hf(path)`` loaded by ``transformers.AutoModel.from_pretrained(path)`` (no lsrl, no
  trust_remote_code), fed through ``lsrl_io.json``: float64 within 1e-13 of the model (the issue asks 1e-9; HF's
  float32 RMSNorms and scan input are made exact by the split blocks, docs/mamba.md; measured ≤ 4.2e-15);
  float32 right on every token answer and within 1e-5 on the continuous program.
"""
from __future__ import annotations

import json

import hf_io
import lsrl
import numpy as np
import pytest
from lsrl.ir import interpret
from lsrl.programs import (
    continuous_approximator,
    continuous_prompt,
    continuous_query,
    create_test_target_function,
    draw_queries,
    more_ones,
    random_token_map,
    token_answer,
    token_map,
    token_prompt,
)

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

RTOL = 1e-9
#: HF float64 against the numpy model: measured 2.2e-15 (continuous, ideal), 4.2e-15 (standard), 2.5e-15
#: (token_map, standard); within ~100x of that, and well inside the issue's 1e-9
HF64_RTOL = 1e-13
STANDARD_RTOL = 1e-8
MORE_ONES_IN = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=float)[:, None]
MORE_ONES_OUT = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=float)


def continuous_case(batch=3, seed=0, n_levels=6):
    rng = np.random.default_rng(seed)
    prog = continuous_approximator(2, 1, conditional="multiplicative", value_bound=3)
    f = create_test_target_function(2, 1, rng=rng)
    prompt = continuous_prompt(f, 2, 1, n_levels)
    cells = rng.integers(0, n_levels, size=(batch, 2))
    qs = (cells + rng.uniform(0.05, 0.95, size=(batch, 2))) / n_levels
    return prog, np.stack([np.vstack([continuous_query(q, 1), prompt]) for q in qs])


def token_case(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    prog = token_map(3, vocab_size=10)
    mapping = random_token_map(3, 5, 10, rng)
    qs = draw_queries(mapping, batch, rng)
    xs = np.stack([token_prompt(q, mapping) for q in qs])
    return prog, xs, np.array([token_answer(q, mapping) for q in qs], dtype=float)


def more_ones_case(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    xs = np.concatenate([MORE_ONES_IN[None], rng.integers(0, 2, (batch - 1, 10, 1)).astype(float)])
    return more_ones(), xs


_CACHE: dict = {}


def case(name):
    if name not in _CACHE:
        _CACHE[name] = {"more_ones": more_ones_case, "continuous": continuous_case,
                        "token_map": lambda: token_case()[:2]}[name]()
    return _CACHE[name]


def compiled(name, activations):
    key = (name, activations)
    if key not in _CACHE:
        prog, xs = case(name)
        _CACHE[key] = lsrl.compile(prog, "mamba", activations=activations, t_max=xs.shape[1])
    return _CACHE[key]


def hf_outputs(path, xs, dtype):
    """Run the exported directory with transformers only, following lsrl_io.json."""
    return hf_io.hf_outputs(path, xs, dtype, model_type="MambaModel")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# ------------------------------------------------------------------------------------------ numpy model

@pytest.mark.parametrize("activations", ["ideal", "standard"])
@pytest.mark.parametrize("name", ["more_ones", "continuous", "token_map"])
def test_model_matches_interpreter(name, activations):
    prog, xs = case(name)
    model = compiled(name, activations)
    assert model.target == "mamba" and model.activations == activations
    err = hf_io.relative_error(model(xs), interpret(prog, xs))
    assert err <= (RTOL if activations == "ideal" else STANDARD_RTOL), err


def test_more_ones_answer_and_layers():
    model = compiled("more_ones", "ideal")
    np.testing.assert_array_equal(model(MORE_ONES_IN)[:, 0], MORE_ONES_OUT)
    assert [info["stage"] for info in model.layers] == ["P", "S", "P", "R", "P"]  # P: split blocks
    assert all(info["kind"] == "mamba_block" for info in model.layers)
    meta = model.module.metadata["mamba"]
    assert meta["conv_kernel"] == 1  # diagonal {0, 1} recurrence: the SSM integrates, no conv window needed


def test_token_map_answers_and_conv_window():
    _prog, xs, answers = token_case()
    model = compiled("token_map", "ideal")
    # 8.9e-16 off like the layer form run in float64 and every other target (the rotation counter is inexact)
    assert np.max(np.abs(model(xs)[:, -3:, 0] - answers)) <= 1e-13
    # the modulo counters' rotations live in the conv: window = t_max
    assert model.module.metadata["mamba"]["conv_kernel"] == xs.shape[1]


def test_stream_carries_conv_and_ssm_state():
    _prog, xs = case("token_map")
    model = compiled("token_map", "ideal")
    whole = model(xs)
    parts = np.concatenate(list(model.stream([xs[:, :7], xs[:, 7:8], xs[:, 8:]])), axis=1)
    np.testing.assert_array_equal(parts, whole)


def test_rotation_without_t_max_is_a_compile_error():
    with pytest.raises(lsrl.CompileError, match=r"linstate.*t_max"):
        lsrl.compile(token_map(3, vocab_size=10), "mamba")


def test_exact_evaluation_is_refused():
    model = compiled("more_ones", "ideal")
    with pytest.raises(lsrl.LsrlError):
        model(MORE_ONES_IN, exact=True)


def test_save_load_roundtrip(tmp_path):
    _prog, xs = case("continuous")
    model = compiled("continuous", "ideal")
    model.save(tmp_path / "m")
    again = lsrl.load(tmp_path / "m")
    np.testing.assert_array_equal(again(xs), model(xs))


# ------------------------------------------------------------------------------------------ Hugging Face

def _export(model, path):
    model.to_hf(path)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "mamba" and "auto_map" not in config
    assert (path / "model.safetensors").exists()
    io = json.loads((path / "lsrl_io.json").read_text())
    assert set(io) >= {"hidden_size", "input_slots", "input_scale", "readout"}
    return config, io


# HF's MambaRMSNorm (and norm_f) compute in float32 inside a float64 model, and its scan rounds its input to
# float32: without the split blocks (docs/mamba.md) the continuous program was 1.2e-7 off here.
@pytest.mark.parametrize("name, tol64", [("more_ones", 0.0), ("token_map", HF64_RTOL), ("continuous", HF64_RTOL)])
def test_hf_ideal_float64(name, tol64, tmp_path, offline):
    prog, xs = case(name)
    model = compiled(name, "ideal")
    config, io = _export(model, tmp_path)
    assert config["hidden_act"] == "relu" and config["residual_in_fp32"] is False
    assert len(io["readout"]["weight"][0]) == io["hidden_size"] == config["hidden_size"]
    y, hf = model(xs), hf_outputs(tmp_path, xs, torch.float64)
    assert hf_io.relative_error(hf, y) <= tol64
    assert hf_io.relative_error(hf, interpret(prog, xs)) <= HF64_RTOL


@pytest.mark.parametrize("name, tol64", [("more_ones", 0.0), ("continuous", HF64_RTOL)])
def test_hf_standard_float64(name, tol64, tmp_path, offline):
    prog, xs = case(name)
    model = compiled(name, "standard")
    config, _ = _export(model, tmp_path)
    assert config["hidden_act"] == "silu"
    hf = hf_outputs(tmp_path, xs, torch.float64)
    assert hf_io.relative_error(hf, model(xs)) <= tol64
    assert hf_io.relative_error(hf, interpret(prog, xs)) <= HF64_RTOL


@pytest.mark.slow
def test_hf_standard_token_map_float64_and_float32(tmp_path, offline):
    _prog, xs, answers = token_case()
    model = compiled("token_map", "standard")
    _export(model, tmp_path)
    assert hf_io.relative_error(hf_outputs(tmp_path, xs, torch.float64), model(xs)) <= HF64_RTOL
    out32 = hf_outputs(tmp_path, xs, torch.float32)
    np.testing.assert_array_equal(np.round(out32[:, -3:, 0]), answers)


@pytest.mark.parametrize("activations", ["ideal", "standard"])
def test_hf_float32(activations, tmp_path, offline):
    prog, xs = case("continuous")
    model = compiled("continuous", activations)
    _export(model, tmp_path)
    assert hf_io.relative_error(hf_outputs(tmp_path, xs, torch.float32), interpret(prog, xs)) <= 1e-5


def test_hf_float32_token_answers(tmp_path, offline):
    _prog, xs, answers = token_case()
    model = compiled("token_map", "ideal")
    _export(model, tmp_path)
    out = hf_outputs(tmp_path, xs, torch.float32)
    np.testing.assert_array_equal(np.round(out[:, -3:, 0]), answers)
    assert np.max(np.abs(out[:, -3:, 0] - answers)) <= 1e-5


def test_counter_without_t_max_runs_past_the_conv_window(tmp_path, offline):
    """Diagonal {0, 1} recurrences live in the SSM: no t_max, conv_kernel 1, any length."""
    model = lsrl.compile(more_ones(), "mamba")
    assert model.t_max is None and model.module.metadata["mamba"]["conv_kernel"] == 1
    xs = np.random.default_rng(1).integers(0, 2, (2, 200, 1)).astype(float)
    ref = interpret(more_ones(), xs)
    assert hf_io.relative_error(model(xs), ref) == 0.0
    model.to_hf(tmp_path)
    assert hf_io.relative_error(hf_outputs(tmp_path, xs, torch.float64), ref) == 0.0


def test_standard_mode_needs_bounded_relu_arguments():
    with pytest.raises(lsrl.CompileError, match=r"mamba: ReLU argument .*unbounded.*t_max"):
        lsrl.compile(continuous_approximator(2, 1, conditional="multiplicative"), "mamba", activations="standard",
                     t_max=10)


@pytest.mark.parametrize("activations", ["ideal", "standard"])
def test_a_product_gate_bounded_below_float32_range_runs_in_float32(activations):
    """A gate operand bounded by 1e-38 asked for a scale σ = 2^132, whose weights are inf in float32 (the kernel
    refused the model it had compiled for float32); σ now stops where its weights stay finite."""
    x = lsrl.Input(2, lower=[-1e-38, -1], upper=[1e-38, 1])
    program = lsrl.ForEach(lsrl.Multi(lsrl.Concat([lsrl.Slice(x, 0, 1), lsrl.Slice(x, 1, 2)])))
    xs = np.random.default_rng(0).uniform(-1, 1, (2, 6, 2)) * [1e-38, 1]
    model = lsrl.compile(program, "mamba", activations=activations, t_max=6, dtype="float32")
    assert np.all(np.abs(model(xs) - interpret(program, xs)) <= model.error_bound)


@pytest.mark.parametrize("activations", ["ideal", "standard"])
def test_products_of_unbounded_operands(activations):
    """The gates ``±σ g`` need no bound on ``g`` (a gate shifted into SiLU's identity region did: both operands
    unbounded were refused).  A constant operand times an unbounded one made the standard local errors
    ``0·inf``."""
    x = lsrl.Input(2, lower=[-1, -np.inf], upper=[1, np.inf])
    u = lsrl.Linear(x, [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], b=[2.0, 0.0, 0.0])
    v = lsrl.Linear(x, [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    program = lsrl.ForEach(lsrl.Multi(lsrl.Concat([u, v])))
    xs = np.random.default_rng(0).uniform(-1, 1, (2, 6, 2)) * [1, 100]
    model = lsrl.compile(program, "mamba", activations=activations, t_max=6)
    want = interpret(program, xs)
    assert np.max(np.abs(model(xs) - want)) <= 1e-16 * np.max(np.abs(want))  # measured 0, and 8.5e-14 of 9.9e3
    assert not np.isnan(model.error_bound).any()


def test_hf_export_loads_without_lsrl(tmp_path):
    """A fresh interpreter that cannot import lsrl loads and runs the directory with transformers alone."""
    import subprocess
    import sys

    model = compiled("more_ones", "ideal")
    model.to_hf(tmp_path)
    script = (
        "import sys, json; sys.modules['lsrl'] = None\n"
        "import torch, numpy as np\n"
        "from transformers import AutoModel\n"
        f"p = {str(tmp_path)!r}\n"
        "io = json.load(open(p + '/lsrl_io.json'))\n"
        "m = AutoModel.from_pretrained(p).eval()\n"
        "x = torch.tensor([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=m.dtype)\n"
        "e = torch.zeros(1, 10, io['hidden_size'], dtype=m.dtype)\n"
        "e[0, :, io['input_slots'][0]] = x * io['input_scale']\n"
        "h = m(inputs_embeds=e, use_cache=False).last_hidden_state[0].double().detach().numpy()\n"
        "print(json.dumps((h @ np.array(io['readout']['weight']).T + io['readout']['bias'])[:, 0].tolist()))\n")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(json.loads(done.stdout.strip().splitlines()[-1]), MORE_ONES_OUT)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_standard_product_rounds_once_as_the_program_s(dtype, tmp_path, offline):
    """A standard product is one channel, ``(2/ε)·silu(ε a)`` times the gate ``silu(σ g) = σ g/2`` (both exact
    while ``ε|a|, σ|g| ≤ 2^-56``): the correctly rounded ``a·g`` in the kernel and in float32 transformers, where
    the four unscaled SiLU pairs rounded each term (16 ulps of ``(|a| + 0.28)(|g| + 0.28)`` charged).  A float64
    transformers model reads its operands as ``hi + fl32(lo)``, 2^-48 of them off (docs/numerics.md)."""
    x = lsrl.Input(2, lower=[-3, -5], upper=[3, 5])
    program = lsrl.ForEach(lsrl.Multi(lsrl.Concat([lsrl.Slice(x, 0, 1), lsrl.Slice(x, 1, 2)])))
    xs = (np.random.default_rng(0).uniform(-1, 1, (2, 6, 2)) * [3, 5]).astype(dtype)
    model = lsrl.compile(program, "mamba", activations="standard", t_max=6, dtype=dtype)
    stages = model.module.metadata["stages"]
    assert [m["channels"]["product"] for m in stages if "product" in m["channels"]] == [1]
    want = (xs[..., :1] * xs[..., 1:]).astype(np.float64)
    model.to_hf(tmp_path)
    np.testing.assert_array_equal(model(xs, backend="kernel"), want)
    hf = hf_outputs(tmp_path, xs, getattr(torch, dtype))
    if dtype == "float32":
        np.testing.assert_array_equal(hf, want)
    assert np.all(np.abs(hf - interpret(program, xs)) <= model.error_bound)
    assert np.all(np.abs(want - interpret(program, xs)) <= model.error_bound)
