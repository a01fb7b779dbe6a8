"""Running a grid of instances: serially in this process, or as tasks on a Dask cluster.

Work is split into one compile task per compiled model and one *block* task per (model, seed): a block records
the clean model's states once and then scores every missing σ of that seed against them (the clean run is the
expensive part and does not depend on σ).  Compile results stay on the workers and are handed to the block
tasks that need them by Dask, so each model is compiled once per run.  Rows reach ``scores.csv`` as blocks
finish; a worker that dies loses only its in-flight tasks, which Dask retries.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from ..compiler import compile as compile_program
from ..errors import CompileError
from ..model import Model
from .perturbation import perturb, pinned_outputs, record_clean_states
from .protocol import COMPILES, SEQUENCE_LENGTH, Instance, ModelKey, build_program, make_task, score
from .scores import append_rows, read_scores, row_instance, write_sorted

__all__ = ["CompiledModel", "compile_model", "evaluate_block", "run_grid", "GridResult"]


@dataclasses.dataclass
class CompiledModel:
    """A compiled model, or why its key cannot be compiled (e.g. a target that cannot multiply)."""
    model: Model | None
    problem: str | None
    seconds: float


def compile_model(program: str, variant: str, compile: str, target: str, activations: str,
                  dtype: str = "float64") -> CompiledModel:
    """Compile the model of a grid point for its dtype (``"exact"``: rational weights; float32 refuses what
    cannot be right in float32)."""
    start = time.perf_counter()
    exact = dtype == "exact"
    try:
        model = compile_program(build_program(program, variant, activations), target, activations=activations,
                                pipeline=COMPILES[compile], t_max=SEQUENCE_LENGTH[program], exact=exact,
                                dtype="float64" if exact else dtype)
    except CompileError as error:
        return CompiledModel(None, f"{error}", time.perf_counter() - start)
    return CompiledModel(model, None, time.perf_counter() - start)


def compile_problem(compiled: CompiledModel) -> str | None:
    return compiled.problem


def evaluate_block(compiled: CompiledModel, key: ModelKey, seed: int, sigmas: tuple, backend: str) -> list:
    """The rows of instances ``(key, σ, seed)`` for every σ in ``sigmas``."""
    if compiled.model is None:
        return []
    model = compiled.model
    task = make_task(key.program, seed)
    stats = {"layers": len(model.layers), "widest": max(model.widths), "nnz": model.nnz}
    if key.dtype == "exact":
        return [_exact_row(model, key, task, seed, sigmas, stats)]
    _, clean_states = record_clean_states(model, task.xs, task.scored_steps, key.dtype, backend)
    rows = []
    for sigma in sigmas:
        start = time.perf_counter()
        instance = Instance(key, float(sigma), int(seed))
        noisy = perturb(model, instance.sigma, instance.noise_seed())
        with np.errstate(all="ignore"):  # blown-up outputs are results here, not errors
            outputs = pinned_outputs(noisy, task.xs, task.scored_steps, clean_states, key.dtype, backend)
        row = dict(zip(("program", "variant", "compile", "target", "activations", "dtype", "sigma", "seed"),
                       instance.coordinates()))
        row.update(score=score(task, outputs), **stats, seconds=round(time.perf_counter() - start, 3))
        rows.append(row)
    return rows


def _exact_row(model: Model, key: ModelKey, task, seed: int, sigmas: tuple, stats: dict) -> dict:
    """The σ = 0 row of an exact instance: the model run in rational arithmetic over the whole prompt."""
    if tuple(sigmas) != (0.0,):
        raise ValueError(f"{key.label()}: exact instances have σ = 0 only, got {sigmas}")
    start = time.perf_counter()
    instance = Instance(key, 0.0, int(seed))
    outputs = model(task.xs, exact=True, check_assumptions=False)[:, task.scored_steps]
    row = dict(zip(("program", "variant", "compile", "target", "activations", "dtype", "sigma", "seed"),
                   instance.coordinates()))
    row.update(score=score(task, np.vectorize(float, otypes=[np.float64])(outputs)), **stats,
               seconds=round(time.perf_counter() - start, 3))
    return row


def _expensive(key: ModelKey) -> bool:
    # the reference compile of the token program is 10^5-10^6 units wide: minutes per model, not milliseconds
    return key.compile == "reference" and key.program == "tokens"


def _blocks(missing: list) -> dict:
    """``{(model key, seed): (σ, ...)}`` of the missing instances, in the order they should run: cheap models
    first, seed by seed, so that a run stopped early has every cell at (nearly) the same seed count; then the
    expensive models one after the other (each holds gigabytes while its blocks run: interleaving them kept
    all five token models of the reference compile alive in one worker, which was killed for memory)."""
    blocks: dict = {}
    for instance in sorted(missing):
        blocks.setdefault((instance.model, instance.seed), []).append(instance.sigma)

    def rank(block):
        key, seed = block
        return (True, key, seed) if _expensive(key) else (False, seed, key)
    order = sorted(blocks, key=rank)
    return {block: tuple(blocks[block]) for block in order}


def _compile_args(key: ModelKey) -> tuple:
    return key.program, key.variant, key.compile, key.target, key.activations, key.dtype


@dataclasses.dataclass
class GridResult:
    rows: list
    skipped: dict  # model key -> why it could not be compiled
    seconds: float


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, unit="instance", disable=not enabled, dynamic_ncols=True,
                desc="fig4")


def run_grid(instances: list, out: Path | None = None, *, scheduler: str | None = None, workers: int | None = None,
             backend: str = "kernel", resume: bool = True, progress: bool = True) -> GridResult:
    """Score every instance not already in ``out/scores.csv`` and return all rows of the grid.

    ``workers=0`` runs serially in this process; otherwise ``scheduler`` (an address) connects to an existing
    Dask cluster, or a ``LocalCluster`` with ``workers`` single-threaded processes starts (default: one per
    CPU).  ``resume=False`` starts ``scores.csv`` afresh."""
    start = time.perf_counter()
    if workers is not None and (int(workers) != workers or workers < 0):
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if workers == 0 and scheduler is not None:
        raise ValueError("workers=0 runs serially; it cannot be combined with a scheduler address")
    wanted = set(instances)
    path = None
    done_rows: list = []
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "scores.csv"
        if not resume and path.exists():
            path.unlink()
        done_rows = [row for row in read_scores(path) if row_instance(row) in wanted]
    done = {row_instance(row) for row in done_rows}
    blocks = _blocks([i for i in instances if i not in done])
    bar = _progress_bar(len(wanted), len(done), progress)
    new_rows: list = []
    skipped: dict = {}

    def finished(rows: list) -> None:
        if path is not None and rows:
            append_rows(path, rows)
        new_rows.extend(rows)
        bar.update(len(rows))

    try:
        if workers == 0:
            _run_serial(blocks, backend, finished, skipped)
        else:
            _run_dask(blocks, backend, finished, skipped, scheduler, workers)
    finally:
        bar.close()
    rows = done_rows + new_rows
    if path is not None:
        write_sorted(path, read_scores(path))
    return GridResult(sorted(rows, key=row_instance), skipped, time.perf_counter() - start)


def _run_serial(blocks: dict, backend: str, finished, skipped: dict) -> None:
    """One model at a time (compiled once, dropped before the next), its blocks in their order."""
    by_model: dict = {}
    for (key, seed), sigmas in blocks.items():
        by_model.setdefault(_compile_args(key), []).append((key, seed, sigmas))
    for args, model_blocks in by_model.items():
        compiled = compile_model(*args)
        for key, seed, sigmas in model_blocks:
            if compiled.problem is not None:
                skipped[key] = compiled.problem
            else:
                finished(evaluate_block(compiled, key, seed, sigmas, backend))
        del compiled


def _cluster_client(scheduler: str | None, workers: int | None):
    from dask.distributed import Client, LocalCluster
    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    return Client(cluster), cluster


def _run_dask(blocks: dict, backend: str, finished, skipped: dict, scheduler: str | None,
              workers: int | None) -> None:
    from dask.distributed import as_completed
    client, cluster = _cluster_client(scheduler, workers)
    try:
        compiles: dict = {}
        problems: dict = {}
        futures = {}
        # Dask runs ready tasks by priority (higher first): keep the order of ``blocks``
        for rank, ((key, seed), sigmas) in enumerate(blocks.items()):
            args = _compile_args(key)
            priority = len(blocks) - rank
            if args not in compiles:
                label = "-".join(map(str, args))
                compiles[args] = client.submit(compile_model, *args, key=f"compile-{label}", retries=2,
                                               priority=priority + 1)
                problems[args] = client.submit(compile_problem, compiles[args], key=f"problem-{label}")
            future = client.submit(evaluate_block, compiles[args], key, seed, sigmas, backend, priority=priority,
                                   key=f"block-{key.label()}-{seed}-{len(sigmas)}", retries=2)
            futures[future] = key
        for future in as_completed(list(futures)):
            finished(future.result())
        for args, problem in problems.items():
            reason = problem.result()
            if reason is not None:
                for key in set(futures.values()):
                    if _compile_args(key) == args:
                        skipped[key] = reason
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
