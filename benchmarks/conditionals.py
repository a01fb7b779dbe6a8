"""Does compilation lose precision on λ-conditional programs?  Random ones (``random_conditional_program``),
compiled for every target and mode in the dtype they run in, against the same programs run op by op in that dtype.

    python benchmarks/conditionals.py              # 100 programs per row: the table (markdown) on stdout
    python benchmarks/conditionals.py --smoke      # 3 programs, three modes (CI: the script works)

Per mode and dtype: ``compiled`` (the rest are refused with a reason: a target that cannot multiply, the standard
GRU's ReLU pair under λ-weights, Hawk's neutralised RMSNorm), ``worse`` = how many models are further from the
exact outputs than 16 times the program's own error run op by op in that dtype (at least one unit roundoff:
tests/test_precision.py's invariant), ``wrong`` = how many of those are off by more than 10⁻³ of the largest
output (an answer, not a rounding), ``largest ratio`` = the largest model error / that yardstick, and ``bound ≤
1e-4`` = how many ``model.error_bound`` are at most 10⁻⁴ of the largest output (the bound covers the model
against its layer form, which can hold debranch's float rounding of the program's own ill-conditioned
arithmetic: docs/numerics.md, "What is bounded").  The ``exact=True`` rows compile once with exact rational
weights (float64 only) and run the model in each dtype (``model(xs, dtype=...)``: its float image).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import lsrl  # noqa: F401
except ImportError:  # a development checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import lsrl  # noqa: E402
from lsrl.ir.interpreter import interpret  # noqa: E402
from lsrl.programs import random_conditional_program  # noqa: E402
from lsrl.runtime.executor import run as run_op_by_op  # noqa: E402

MODES = [("linear_rnn", "ideal"), ("relu_rnn", "ideal"), ("lstm", "ideal"), ("gru", "ideal"), ("hawk", "ideal"),
         ("mamba", "ideal"), ("lstm", "standard"), ("gru", "standard"), ("hawk", "standard"),
         ("mamba", "standard")]
#: modes that compile with exact=True (exact activations)
EXACT_MODES = [("linear_rnn", "ideal"), ("relu_rnn", "ideal"), ("lstm", "ideal"), ("gru", "ideal")]
DTYPES = ("float32", "float64")
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}
FACTOR = 16


def row(target: str, activations: str, dtype: str, cases: list, exact: bool = False) -> str:
    compiled = worse = wrong = small_bound = 0
    largest = 0.0
    for program, xs, oracle in cases:
        try:
            model = lsrl.compile(program, target, activations=activations, t_max=xs.shape[1],
                                 **({"exact": True} if exact else {"dtype": dtype}))
        except lsrl.CompileError:
            continue
        compiled += 1
        scale = max(1.0, float(np.max(np.abs(oracle))))
        program_error = float(np.max(np.abs(run_op_by_op(program, xs, dtype=np.dtype(dtype))[0] - oracle))) / scale
        error = float(np.max(np.abs(model(xs, backend="kernel", dtype=dtype) - oracle))) / scale
        ratio = error / max(program_error, UNIT_ROUNDOFF[dtype])
        largest = max(largest, ratio)
        worse += ratio > FACTOR
        wrong += ratio > FACTOR and error > 1e-3
        small_bound += bool(np.all(model.error_bound_in(dtype) <= 1e-4 * scale))
    mode = f"{activations}, exact=True" if exact else activations
    return (f"| {target} | {mode} | {dtype} | {compiled} / {len(cases)} | {worse} | {wrong} | {largest:.3g} "
            f"| {small_bound} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=100, help="random programs per row (seeds 0..N-1)")
    parser.add_argument("--smoke", action="store_true", help="3 programs, two modes")
    args = parser.parse_args(argv)
    count, modes = (3, MODES[:1] + MODES[6:7]) if args.smoke else (args.programs, MODES)
    exact_modes = EXACT_MODES[:1] if args.smoke else EXACT_MODES
    cases = []
    for seed in range(count):
        program, xs = random_conditional_program(np.random.default_rng(seed))
        cases.append((program, xs, np.asarray(interpret(program, xs, exact=True), dtype=np.float64)))
    print("| target | mode | dtype | compiled | worse | wrong | largest ratio | bound ≤ 1e-4 |")
    print("|---|---|---|---|---|---|---|---|")
    for target, activations in modes:
        for dtype in DTYPES:
            print(row(target, activations, dtype, cases), flush=True)
    for target, activations in exact_modes:
        for dtype in DTYPES:
            print(row(target, activations, dtype, cases, exact=True), flush=True)


if __name__ == "__main__":
    main()
