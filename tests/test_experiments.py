"""The Fig. 4 experiment module (lsrl.experiments): protocol, noise, state pinning, scores.csv with resume,
Dask scheduling independence, plots and the command line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.distributed", reason="needs the experiments extra")
pytest.importorskip("pandas", reason="needs the experiments extra")

import lsrl  # noqa: E402
from lsrl.experiments.perturbation import (parameter_entries, perturb, pinned_outputs,  # noqa: E402
                                           record_clean_states)
from lsrl.experiments.protocol import Instance, ModelKey, grid, make_task, score  # noqa: E402
from lsrl.experiments.runner import compile_model, run_grid  # noqa: E402
from lsrl.experiments.scores import COLUMNS, ScoresFileError, read_scores, row_instance  # noqa: E402
from lsrl.runtime.executor import run as run_kernel  # noqa: E402

SMALL = dict(programs=("continuous", "tokens"), variants=("direct", "multiplicative"), compiles=("ours",),
             sigmas=(0.0, 1e-7), seeds=range(2))


def _without_seconds(path: Path) -> list:
    """The CSV's lines without the (wall-time) ``seconds`` column."""
    index = COLUMNS.index("seconds")
    return [",".join(f for i, f in enumerate(line.split(",")) if i != index)
            for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    result = run_grid(grid(**SMALL), out, workers=0, progress=False)
    return out, result


def test_serial_and_two_worker_cluster_write_identical_scores(serial_run, tmp_path):
    serial_out, serial = serial_run
    clustered = run_grid(grid(**SMALL), tmp_path, workers=2, progress=False)
    assert len(serial.rows) == len(grid(**SMALL)) == 16
    assert _without_seconds(tmp_path / "scores.csv") == _without_seconds(serial_out / "scores.csv")
    assert [r["score"] for r in clustered.rows] == [r["score"] for r in serial.rows]


def test_an_existing_cluster_is_used_by_its_address(serial_run, tmp_path):
    from dask.distributed import LocalCluster
    serial_out, _ = serial_run
    small = dict(SMALL, programs=("continuous",), variants=("direct",))
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        result = run_grid(grid(**small), tmp_path, scheduler=cluster.scheduler_address, progress=False)
    assert len(result.rows) == 4
    expected = [line for line in _without_seconds(serial_out / "scores.csv") if line.startswith(("program,",
                                                                                                "continuous,direct,"))]
    assert _without_seconds(tmp_path / "scores.csv") == expected


def test_sigma_zero_scores_of_our_compile_are_right(serial_run):
    _, result = serial_run
    for row in result.rows:
        if row["sigma"] == 0 and row["program"] == "tokens":
            assert row["score"] == 0.0
        if row["sigma"] == 0 and row["program"] == "continuous":
            assert 0 < row["score"] < 0.3  # the N = 8 discretisation error only (experiments.md §1.5)


def test_the_extended_grid_runs_on_every_target_mode_and_dtype(tmp_path):
    """The extended grid in CI size (the full one: docs/experiments.md): every registered target, both
    activations, both dtypes; at σ = 0 each model scores the discretisation error of the exact model, and the
    only models left out are the ones a target cannot build, with the reason."""
    from lsrl.targets import available_targets
    targets = tuple(available_targets())
    instances = grid(programs=("continuous",), variants=("multiplicative",), compiles=("ours",), targets=targets,
                     activations=("ideal", "standard"), dtypes=("float32", "float64"), sigmas=(0.0,),
                     seeds=range(1))
    result = run_grid(instances, tmp_path, workers=0, progress=False)
    exact = run_grid(grid(programs=("continuous",), variants=("multiplicative",), compiles=("ours",),
                          dtypes=("exact",), sigmas=(0.0,), seeds=range(1)), None, workers=0, progress=False)
    reference = exact.rows[0]["score"]
    scored = {(r["target"], r["activations"], r["dtype"]) for r in result.rows}
    assert {k.target for k in result.skipped} == {"relu_rnn"}
    assert all("cannot multiply" in why for why in result.skipped.values())
    assert len(scored) + len(result.skipped) == len(targets) * 4
    # relative deviation measured: float64 ≤ 2.2e-12; float32 ideal ≤ 2.2e-6 (Mamba), standard ≤ 6.3e-5 (LSTM/GRU
    # σ-difference products)
    tolerance = {"float64": 1e-10, ("float32", "ideal"): 1e-5, ("float32", "standard"): 1e-3}
    for row in result.rows:
        allowed = tolerance.get(row["dtype"]) or tolerance[row["dtype"], row["activations"]]
        assert abs(row["score"] - reference) <= allowed * reference, row


def test_a_cut_off_or_garbled_last_line_is_redone(serial_run, tmp_path):
    serial_out, _ = serial_run
    path = tmp_path / "scores.csv"
    text = (serial_out / "scores.csv").read_text()
    for damaged in (text[:-7], text.rsplit("\n", 2)[0] + "\ncontinuous,direct,ours,nonsense\n"):
        path.write_text(damaged)
        run_grid(grid(**SMALL), tmp_path, workers=0, progress=False)
        assert _without_seconds(path) == _without_seconds(serial_out / "scores.csv")


def test_damage_before_the_last_line_is_an_error(serial_run, tmp_path):
    serial_out, _ = serial_run
    lines = (serial_out / "scores.csv").read_text().splitlines(keepends=True)
    lines[3] = "tokens,direct,ours,linear_rnn,ideal,float64,zero,1,0,5,5,5,0.1\n"
    (tmp_path / "scores.csv").write_text("".join(lines))
    with pytest.raises(ScoresFileError, match="line 4"):
        read_scores(tmp_path / "scores.csv")
    (tmp_path / "scores.csv").write_text("a,b,c\n")
    with pytest.raises(ScoresFileError, match="header"):
        read_scores(tmp_path / "scores.csv")


def test_a_grid_axis_may_be_one_value():
    """``programs="continuous"`` iterated its letters (and failed on program 'c'); one value is a one-value axis."""
    one = grid(programs="continuous", variants="direct", compiles="ours", activations="ideal", dtypes="float64",
               sigmas=0.0, seeds=3)
    assert [(i.model.program, i.model.variant, i.sigma, i.seed) for i in one] == [("continuous", "direct", 0.0, 3)]
    assert one == grid(programs=["continuous"], variants=["direct"], compiles=["ours"], sigmas=[0.0], seeds=[3])


def test_sigterm_mid_run_then_restart_completes_the_grid(tmp_path):
    command = [sys.executable, "-m", "lsrl.experiments.cli", "fig4", "--out", str(tmp_path), "--workers", "0",
               "--compiles", "ours", "--programs", "tokens", "--variants", "direct,multiplicative", "--seeds", "4",
               "--no-progress"]
    expected = len(grid(programs=("tokens",), variants=("direct", "multiplicative"), compiles=("ours",),
                        seeds=range(4)))
    path = tmp_path / "scores.csv"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_text().count("\n") > 5:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    interrupted = len(path.read_text().splitlines()) - 1
    assert 0 < interrupted < expected, "the run was not interrupted mid-way"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_scores(path)
    instances = [row_instance(row) for row in rows]
    assert len(instances) == len(set(instances)) == expected


def test_plots_and_tables_are_written(serial_run, tmp_path):
    from lsrl.experiments.cli import fig4
    serial_out, _ = serial_run
    (tmp_path / "scores.csv").write_text((serial_out / "scores.csv").read_text())  # resumed: nothing to run
    frame = fig4(tmp_path, workers=0, progress=False, **SMALL)
    assert len(frame) == 16
    for program in ("continuous", "tokens"):
        png = (tmp_path / f"fig4_{program}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and 5_000 < len(png) < 150_000
    tables = (tmp_path / "tables.md").read_text()
    assert "| direct | *paper* | 89.2 (72–96) [92]" in tables
    assert "| direct | ours / linear_rnn / ideal / float64 | 0 |" in tables
    (tmp_path / "tables.md").unlink()
    from lsrl.experiments.cli import main
    assert main(["report", "--out", str(tmp_path)]) == 0  # the report alone, from scores.csv
    assert (tmp_path / "tables.md").read_text() == tables


def test_the_cli_names_a_users_mistake_in_one_line(tmp_path, capsys):
    # each was a traceback: an output path that is a file, a scheduler beside workers=0, a damaged scores file
    from lsrl.experiments.cli import main
    small = ["--workers", "0", "--no-progress", "--programs", "continuous", "--variants", "direct", "--compiles",
             "ours", "--sigmas", "0", "--seeds", "1"]
    (tmp_path / "file").write_text("")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "scores.csv").write_text("bad,header\n")
    for argv, message in ((["fig4", "--out", str(tmp_path / "file")] + small, "file: File exists"),
                          (["fig4", "--out", str(tmp_path / "x")] + small + ["--scheduler", "tcp://127.0.0.1:1"],
                           "cannot be combined with a scheduler address"),
                          (["report", "--out", str(tmp_path / "damaged")], "is not the scores header")):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("lsrl-experiments: error: ") and message in err and "Traceback" not in err
    with pytest.raises(SystemExit):  # argparse: an empty grid is a usage error
        main(["fig4", "--out", str(tmp_path / "y"), "--seeds", "0"])
    assert "'0' must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["linear_rnn", "lstm", "gru"])
def test_noise_touches_every_stored_nonzero_and_nothing_else(target):
    model = compile_model("tokens", "multiplicative", "ours", target, "ideal").model
    seed = Instance(ModelKey("tokens", "multiplicative", "ours", target), 1e-3, 0).noise_seed()
    noisy = perturb(model, 1e-3, seed)
    clean_entries, noisy_entries = parameter_entries(model.module), parameter_entries(noisy.module)
    assert [e[:3] for e in clean_entries] == [e[:3] for e in noisy_entries]  # same positions: zeros stay zero
    # every non-zero got its own draw of the instance's stream, in the module's order
    draws = np.random.default_rng(seed).standard_normal(len(clean_entries))
    clean_values = np.array([e[3] for e in clean_entries])
    np.testing.assert_array_equal(np.array([e[3] for e in noisy_entries]), clean_values + 1e-3 * draws)
    initial = {"init", "h0", "c0"}
    for clean_op, noisy_op in zip(model.module.ops, noisy.module.ops):
        for name in initial & set(clean_op.attrs):
            assert clean_op.attrs[name] is noisy_op.attrs[name]
    init_nnz = sum(op.attrs[name].nnz for op in model.module.ops for name in initial & set(op.attrs))
    assert len(clean_entries) + init_nnz == model.nnz  # what model.nnz counts, less the initial states


def test_noise_depends_only_on_the_instance_coordinates():
    key = ModelKey("continuous", "direct", "reference")
    a, b = Instance(key, 1e-9, 3), Instance(key, 1e-9, 3)
    assert a.noise_seed().entropy == b.noise_seed().entropy
    other_compile = ModelKey("continuous", "direct", "ours")
    others = [Instance(key, 1e-7, 3), Instance(key, 1e-9, 4), Instance(other_compile, 1e-9, 3)]
    assert len({i.noise_seed().entropy for i in others + [a]}) == 4


@pytest.mark.parametrize("target,activations,dtype,backend", [
    ("linear_rnn", "ideal", "float64", "kernel"), ("linear_rnn", "ideal", "float64", "numpy"),
    ("linear_rnn", "ideal", "float32", "kernel"), ("lstm", "standard", "float64", "kernel"),
    ("lstm", "ideal", "float64", "numpy"), ("gru", "ideal", "float64", "kernel"),
    ("relu_rnn", "ideal", "float64", "numpy")])
def test_sigma_zero_reproduces_the_unperturbed_model(target, activations, dtype, backend):
    model = compile_model("tokens", "direct", "ours", target, activations).model
    task = make_task("tokens", 5)
    clean, states = record_clean_states(model, task.xs, task.scored_steps, dtype, backend)
    pinned = pinned_outputs(perturb(model, 0.0, None), task.xs, task.scored_steps, states, dtype, backend)
    full, _ = run_kernel(model.module, task.xs, dtype=np.dtype(dtype))
    assert np.array_equal(pinned, clean)
    np.testing.assert_allclose(pinned, full[:, task.scored_steps], rtol=0, atol=1e-9 if dtype == "float64" else 0)
    assert score(task, pinned) == 0.0


@pytest.mark.parametrize("target", ["linear_rnn", "hawk", "mamba"])  # block states: windows, positions
def test_pinning_overrides_every_state_before_every_scored_step(target):
    model = compile_model("continuous", "direct", "ours", target, "ideal").model
    task = make_task("continuous", 1)
    steps = np.array([3, 4, 40, 64])
    _, states = record_clean_states(model, task.xs, steps)
    noisy = perturb(model, 1e-4, Instance(ModelKey("continuous", "direct", "ours"), 1e-4, 1).noise_seed())
    pinned = pinned_outputs(noisy, task.xs, steps, states)
    for i, step in enumerate(steps):  # one step at a time from the clean state: the protocol's definition
        y, _ = run_kernel(noisy.module, task.xs[:, step:step + 1], states[i])
        np.testing.assert_array_equal(pinned[:, i], y[:, 0])
    free, _ = run_kernel(noisy.module, task.xs)  # without pinning errors accumulate: the outputs differ
    assert not np.array_equal(free[:, steps], pinned)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown target"):
        ModelKey("tokens", "direct", "ours", target="transformer")
    with pytest.raises(ValueError, match="unknown conditional"):
        ModelKey("tokens", "maybe", "ours")
    with pytest.raises(ValueError, match="sigma"):
        Instance(ModelKey("tokens", "direct", "ours"), -1.0, 0)
    with pytest.raises(ValueError, match="numpy backend"):
        record_clean_states(lsrl.compile(lsrl.programs.more_ones()), np.zeros((1, 3, 1)), [2], "float32", "numpy")
    with pytest.raises(ValueError, match="steps"):
        record_clean_states(lsrl.compile(lsrl.programs.more_ones()), np.zeros((1, 3, 1)), [2, 1])
    with pytest.raises(ValueError, match="workers"):
        run_grid(grid(**SMALL), None, workers=-1)
    done = subprocess.run([sys.executable, "-m", "lsrl.experiments.cli", "fig4", "--out", "x", "--targets", "tpu"],
                          capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 2 and "tpu" in done.stderr


def test_exact_dtype_evaluates_in_rationals_at_sigma_zero_only():
    """dtype "exact" (the paper's finding 7): exact weights, a rational run, no noise.  Our compile's
    continuous model answers the program's value exactly, so its score is the float64 one up to rounding
    (both are the discretisation error of the approximator)."""
    instances = grid(programs=("continuous",), variants=("multiplicative",), compiles=("ours",),
                     dtypes=("exact", "float64"), sigmas=(0.0, 1e-7), seeds=range(1))
    assert {(i.model.dtype, i.sigma) for i in instances} == {("exact", 0.0), ("float64", 0.0), ("float64", 1e-7)}
    rows = {(r["dtype"], r["sigma"]): r["score"] for r in run_grid(instances, workers=0, progress=False).rows}
    assert abs(rows[("exact", 0.0)] - rows[("float64", 0.0)]) <= 1e-15
    assert 0 < rows[("exact", 0.0)] < 0.1
    with pytest.raises(ValueError, match="exact.*σ = 0"):
        Instance(ModelKey("continuous", "direct", "ours", dtype="exact"), 1e-9, 0)


def test_a_serial_run_compiles_each_model_once(tmp_path, monkeypatch):
    import lsrl.experiments.runner as runner
    compiled = []

    def counting(*args):
        compiled.append(args)
        return compile_model(*args)
    monkeypatch.setattr(runner, "compile_model", counting)
    small = dict(SMALL, programs=("continuous",))
    run_grid(grid(**small), tmp_path, workers=0, progress=False)
    assert len(compiled) == len(set(compiled)) == 2


def test_expensive_models_run_one_after_the_other():
    from lsrl.experiments.runner import _blocks
    instances = grid(programs=("continuous", "tokens"), variants=("direct", "multiplicative"),
                     compiles=("reference",), sigmas=(0.0,), seeds=range(3))
    order = [(key.program, key.variant, seed) for key, seed in _blocks(instances)]
    cheap = [(v, s) for p, v, s in order if p == "continuous"]
    assert order[:6] == [("continuous", v, s) for v, s in cheap]
    assert cheap == [(v, s) for s in range(3) for v in ("direct", "multiplicative")]  # seed by seed
    assert order[6:] == [("tokens", v, s) for v in ("direct", "multiplicative") for s in range(3)]  # model by model
