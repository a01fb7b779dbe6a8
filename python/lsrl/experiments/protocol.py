"""The noise-robustness protocol of the paper's Fig. 4 (``shared/spec/experiments.md`` §1): the grid of
instances, their data, their noise seeds and their scores.

An *instance* is one cell of the grid: a compiled model (program, conditional variant, compile, target,
activations, dtype), a noise level σ and a seed.  The seed draws the data (the legacy NumPy generator, as the
paper's reference did); the noise stream is a separate :class:`numpy.random.SeedSequence` derived from a hash of
all the instance's coordinates, so that every instance gets the same noise however the grid is scheduled.

dtype ``"exact"`` compiles the model with exact rational weights and evaluates it in rational arithmetic (the
paper's finding 7); noise is not defined there, so exact instances exist at σ = 0 only.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import Iterable

import numpy as np

from ..targets import all_activations, available_targets, default_target
from ..programs import (CONDITIONALS, continuous_approximator, continuous_prompt, continuous_query,
                        create_test_target_function, draw_queries, random_token_map, token_map, token_prompt)

__all__ = ["PROGRAMS", "VARIANTS", "COMPILES", "DTYPES", "PAPER_SIGMAS", "QUICK_SIGMAS", "PAPER_SEEDS",
           "QUICK_SEEDS", "ModelKey", "Instance", "Task", "grid", "build_program", "make_task", "score"]

PROGRAMS = ("continuous", "tokens")
VARIANTS = CONDITIONALS
# the pipeline run before ``lower``: the paper's 13 debranching cases, or the default pipeline (None)
COMPILES = {"reference": "debranch{mode=reference}", "ours": None}
DTYPES = ("float64", "float32", "exact")
PAPER_SIGMAS = (0.0, 1e-9, 1e-7, 1e-5, 1e-3)
QUICK_SIGMAS = (0.0, 1e-7)
PAPER_SEEDS = 25
QUICK_SEEDS = 3

# experiments.md §1: μ = 1000, λ = 1e10; continuous 2 → 2 with N = 8 levels and 10 queries; tokens n = 10
# with 20 entries over a vocabulary of 10 and 5 distinct queries
SCALE = 1000
LARGE_CONSTANT = 1e10
CONTINUOUS_DIM = 2
CONTINUOUS_LEVELS = 8
CONTINUOUS_QUERIES = 10
TOKEN_LENGTH = 10
TOKEN_ENTRIES = 20
TOKEN_VOCAB = 10
TOKEN_QUERIES = 5
SEQUENCE_LENGTH = {"continuous": CONTINUOUS_LEVELS ** CONTINUOUS_DIM + 1,
                   "tokens": TOKEN_LENGTH + 2 * TOKEN_LENGTH * TOKEN_ENTRIES}


def _check_choice(what: str, value, valid: Iterable) -> None:
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")


@dataclasses.dataclass(frozen=True, order=True)
class ModelKey:
    """Everything that fixes a compiled model; one model is compiled per key and shared by its instances."""
    program: str
    variant: str
    compile: str
    target: str = dataclasses.field(default_factory=lambda: default_target().name)  # the paper's architecture
    activations: str = "ideal"
    dtype: str = "float64"

    def __post_init__(self):
        _check_choice("program", self.program, PROGRAMS)
        _check_choice("conditional variant", self.variant, VARIANTS)
        _check_choice("compile", self.compile, COMPILES)
        _check_choice("target", self.target, tuple(available_targets()))
        _check_choice("activations", self.activations, all_activations())
        _check_choice("dtype", self.dtype, DTYPES)

    def label(self) -> str:
        return "/".join(dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True, order=True)
class Instance:
    """One row of ``scores.csv``: a model, a noise level and a seed."""
    model: ModelKey
    sigma: float
    seed: int

    def __post_init__(self):
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.model.dtype == "exact" and self.sigma != 0:
            raise ValueError(f"dtype 'exact' runs without noise (σ = 0), got sigma={self.sigma!r}")

    def coordinates(self) -> tuple:
        return dataclasses.astuple(self.model) + (float(self.sigma), int(self.seed))

    def noise_seed(self) -> np.random.SeedSequence:
        """The noise stream's seed: a hash of the coordinates (``repr`` keeps every bit of σ), never of the
        order in which instances run."""
        text = "|".join(repr(c) for c in self.coordinates())
        digest = hashlib.sha256(text.encode()).digest()
        return np.random.SeedSequence(int.from_bytes(digest[:16], "little"))


def _axis(values) -> tuple:
    """A grid axis: one value (a string or a number) as a one-value axis, else the values of an iterable."""
    if isinstance(values, (str, bytes, int, float, np.integer, np.floating)):
        return (values,)
    return tuple(values)


def grid(programs=PROGRAMS, variants=VARIANTS, compiles=tuple(COMPILES), targets=None, activations=("ideal",), dtypes=("float64",), sigmas=PAPER_SIGMAS, seeds=range(PAPER_SEEDS)) -> list:
    """Every instance of the cross product, in the canonical (sorted) order of ``scores.csv``; ``targets``
    defaults to the paper's architecture (the default target).  Each axis is an iterable of values or one value
    (``programs="continuous"`` is that program, not its letters; ``seeds=3`` is seed 3)."""
    targets = (default_target().name,) if targets is None else targets
    programs, variants, compiles, targets, activations, dtypes, sigmas, seeds = (
        _axis(axis) for axis in (programs, variants, compiles, targets, activations, dtypes, sigmas, seeds))
    keys = [ModelKey(*combo) for combo in itertools.product(programs, variants, compiles, targets, activations,
                                                            dtypes)]
    instances = {Instance(key, float(sigma), int(seed)) for key in keys for sigma in sigmas for seed in seeds
                 if key.dtype != "exact" or sigma == 0}
    if not instances:
        raise ValueError("the grid is empty: every axis needs at least one value")
    return sorted(instances)


def build_program(program: str, variant: str, activations: str = "ideal"):
    """The program of a grid point.  Standard activations need bounded values (docs/targets.md), so for them the
    input declares the data's bounds (token ids 0..9, function values in [-3, 3]); the ideal runs keep the
    paper's undeclared inputs."""
    _check_choice("program", program, PROGRAMS)
    bounded = activations == "standard"
    if program == "continuous":
        return continuous_approximator(CONTINUOUS_DIM, CONTINUOUS_DIM, variant, scale=SCALE,
                                       large_constant=LARGE_CONSTANT, value_bound=3.0 if bounded else None)
    return token_map(TOKEN_LENGTH, variant, scale=SCALE, large_constant=LARGE_CONSTANT,
                     vocab_size=TOKEN_VOCAB if bounded else None)


@dataclasses.dataclass(frozen=True)
class Task:
    """An instance's data: the input batch ``xs`` ``(B, T, d_in)``, the steps whose outputs are scored and the
    expected outputs there (``(B, d_out)`` for the continuous program, ``(B, n)`` tokens for the map)."""
    program: str
    xs: np.ndarray
    scored_steps: np.ndarray
    expected: np.ndarray


def make_task(program: str, seed: int) -> Task:
    """The data of seed ``seed``, drawn in the reference's order from ``RandomState(seed)`` (programs.md §5)."""
    _check_choice("program", program, PROGRAMS)
    rng = np.random.RandomState(seed)
    if program == "continuous":
        f = create_test_target_function(CONTINUOUS_DIM, CONTINUOUS_DIM, 5, 1, rng=rng)
        queries = rng.rand(CONTINUOUS_QUERIES, CONTINUOUS_DIM)
        prompt = continuous_prompt(f, CONTINUOUS_DIM, CONTINUOUS_DIM, CONTINUOUS_LEVELS)
        xs = np.stack([np.vstack([continuous_query(q, CONTINUOUS_DIM), prompt]) for q in queries])
        return Task(program, xs, np.array([xs.shape[1] - 1]), f(queries))
    mapping = random_token_map(TOKEN_LENGTH, TOKEN_ENTRIES, TOKEN_VOCAB, rng=rng)
    queries = draw_queries(mapping, TOKEN_QUERIES, rng=rng)
    xs = np.stack([token_prompt(q, mapping) for q in queries])
    length = xs.shape[1]
    return Task(program, xs, np.arange(length - TOKEN_LENGTH, length),
                np.array([mapping[q] for q in queries], dtype=np.float64))


def score(task: Task, outputs: np.ndarray) -> float:
    """The instance score from the outputs at the scored steps (``(B, S, d_out)``): the mean L2 error over the
    queries (continuous) or the percentage of wrong answer tokens (tokens).  A non-finite output counts as
    wrong (tokens) or as an infinite error (continuous)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if task.program == "continuous":
        errors = np.linalg.norm(outputs[:, -1, :] - task.expected, axis=-1)
        return float(np.mean(np.where(np.isfinite(errors), errors, np.inf)))
    tokens = outputs[:, :, 0]
    with np.errstate(invalid="ignore"):
        right = np.isfinite(tokens) & (np.round(tokens) == task.expected)
    return float(100.0 * (1.0 - right.mean()))
