"""Error-bound tightness: the a-priori bound of a compiled model against the error it really makes.

    python benchmarks/error_bounds.py            # the table (markdown) on stdout
    python benchmarks/error_bounds.py --smoke    # fewer programs and shorter prompts (CI: the script works)

For each program (the paper's, and random ones with real or integer inputs — these compiled for the dtype they
run in), compiled for ``linear_rnn`` (ideal) and run through the kernel in float64 and float32 — the paper's also
for the standard LSTM and GRU, compiled for each dtype: ``bound`` = the largest ``model.error_bound_in(dtype)``,
``measured`` = the largest |output − exact output| over a batch of prompts (exact: the layer form interpreted in
rationals, which is what the bound is stated against), ``bound / measured`` (— where nothing was measured), and
``relative`` = bound / the largest |exact output|.  Random programs: one row per dtype with the median and the
largest ratio, and how many bounds are finite and below 1e-4 relative; also compiled for the standard LSTM,
GRU, Hawk and Mamba, whose bounds add the local errors of their constructions (programs they refuse are left
out; Griffin's blocks are Hawk's).  Hawk and Mamba are also run by transformers (``to_hf``, when it is
installed), whose float64 models read values in float32 parts: ``measured`` is the larger deviation of the two.
The continuous programs on a declared grid are also run on the greedy prompts of their domain that err most
(``P.greedy_rounding_input``: the query's cell repeated, values rounding the running sum): bound / largest error.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import lsrl  # noqa: F401
except ImportError:  # a development checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import lsrl  # noqa: E402
from kernel import hf_runner  # noqa: E402  (benchmarks/kernel.py)
from lsrl.ir.interpreter import interpret  # noqa: E402
from lsrl import programs as P  # noqa: E402

DTYPES = ("float64", "float32")


def measure(model, xs, dtypes=DTYPES, executors: bool = False) -> dict:
    """Per dtype: the bound, the largest deviation from the exact layer form (the kernel's, and with
    ``executors`` also transformers' run of ``to_hf``) and the largest |exact output|."""
    exact = np.asarray(interpret(model._layer_form, xs, exact=True), dtype=np.float64)
    scale = float(np.max(np.abs(exact), initial=0.0)) or 1.0
    out = {}
    for dtype in dtypes:
        bound = float(np.max(model.error_bound_in(dtype)))
        error = float(np.max(np.abs(model(xs, backend="kernel", dtype=dtype) - exact)))
        if executors:
            with tempfile.TemporaryDirectory() as directory:
                outputs = hf_runner(model, directory, dtype)(xs)
            error = max(error, float(np.max(np.abs(outputs.astype(np.float64) - exact))))
        out[dtype] = (bound, error, scale)
    return out


def paper_cases(smoke: bool):
    rng = np.random.default_rng(0)
    batch = 2 if smoke else 4
    yield "more_ones", P.more_ones(), rng.integers(0, 2, (batch, 64, 1)).astype(float), 64
    conditionals = ("multiplicative",) if smoke else P.CONDITIONALS
    sizes = (3,) if smoke else (3, 10)
    for n in sizes:
        for conditional in conditionals if n == 3 else ("multiplicative", "direct"):
            mapping = P.random_token_map(n, 20, 10, rng)
            xs = np.stack([P.token_prompt(P.draw_queries(mapping, 1, rng)[0], mapping) for _ in range(batch)])
            # the paper's rotation counter (cos/sin weights float64 cannot hold), and the exact permutation one
            for counter in ("rotation", "permutation"):
                yield (f"token n={n} {conditional}, {counter} counter",
                       P.token_map(n, conditional, vocab_size=10, counter=counter), xs, xs.shape[1])
    for conditional in ("direct", "multiplicative"):
        f = lambda q: np.array([np.sin(3 * q[0]) * q[1]])  # noqa: E731
        prompt = P.continuous_prompt(f, 2, 1, 8)
        queries = rng.uniform(0, 1, (batch, 2))
        xs = np.stack([np.concatenate([P.continuous_query(q, 1)[None], prompt]) for q in queries])
        program = P.continuous_approximator(2, 1, conditional, value_bound=1.0)
        yield f"continuous 2→1 {conditional}", program, xs, xs.shape[1]
        # the queries at their cells' centres and the grid declared (Input(grid=1/16)): the steps are proven exact
        centred = np.stack([np.concatenate([P.continuous_query(P.cell_centre(q, 8), 1)[None], prompt])
                            for q in queries])
        program = P.continuous_approximator(2, 1, conditional, value_bound=1.0, n_levels=8)
        yield f"continuous 2→1 {conditional}, declared grid", program, centred, centred.shape[1]


def adversarial_rows(smoke: bool):
    """The continuous programs on a declared grid against the greedy prompts of their domain that err most
    (``P.greedy_rounding_input``: every token the query's cell; values just below ±1, which round the running
    sum, or tiny ones, which sit on a standard ReLU's gate ramp; both directions): ``(name, target, dtype, bound,
    error)``, the error the largest over those prompts against the exact layer form."""
    count, length = (4, 8) if smoke else (64, None)
    for conditional in ("multiplicative",) if smoke else ("direct", "multiplicative"):
        program = P.continuous_approximator(2, 1, conditional, value_bound=1.0, n_levels=8)
        for target, activations in (("linear_rnn", "ideal"),) if smoke else \
                (("linear_rnn", "ideal"), ("lstm", "standard"), ("gru", "standard")):
            for dtype in DTYPES:
                model = lsrl.compile(program, target, activations=activations, t_max=65,
                                     dtype=dtype if activations == "standard" else "float64")
                ulp = 2.0 ** (-24 if dtype == "float32" else -53)
                run = lambda xs: model(xs, backend="kernel", dtype=dtype)  # noqa: E731
                error = 0.0
                for values in (1 - ulp * np.arange(count), 10.0 ** np.linspace(-16, -8, count)):
                    for sign, direction in ((1, 1.0), (1, -1.0), (-1, 1.0), (-1, -1.0)):
                        xs = P.greedy_rounding_input(run, [0.4, 0.7], 8, sign * values, length, direction)
                        exact = np.asarray(interpret(model._layer_form, xs, exact=True), dtype=np.float64)
                        error = max(error, float(np.max(np.abs(run(xs) - exact))))
                yield (f"continuous 2→1 {conditional}, declared grid", f"{target} {activations}", dtype,
                       float(np.max(model.error_bound_in(dtype))), error)


def random_program(rng, integer: bool):
    """A chain of affine maps, ReLUs, contracting states and products over a bounded input."""
    d = 2
    x = lsrl.Input(d, lower=0 if integer else -1, upper=9 if integer else 1, integer=integer)
    v, size = x, 9.0 if integer else 1.0
    for _ in range(rng.integers(2, 6)):
        kind = rng.choice(["linear", "relu", "state", "multi"])
        if kind == "linear":
            m = int(rng.integers(1, 4))
            a = np.round(rng.normal(size=(m, v.dim)), 3) if not integer else rng.integers(-3, 4, (m, v.dim)) * 1.0
            v = lsrl.Linear(v, a, b=rng.uniform(-1, 1, m))
            size = float(np.max(np.abs(a).sum(axis=1))) * size + 1
        elif kind == "relu":
            v = lsrl.ReLU(v)
        elif kind == "state":
            k = v.dim
            q, _ = np.linalg.qr(rng.normal(size=(k, k)))
            v = lsrl.LinState(v, A=0.5 * q, B=np.eye(k))
            size *= 2 * np.sqrt(k)
        elif size * size < 1e3:
            v = lsrl.Multi(lsrl.Concat([v, v]))
            size *= size
    return lsrl.ForEach(v)


def random_rows(count: int, target: str = "linear_rnn", activations: str = "ideal"):
    executors = target in ("hawk", "mamba") and importlib.util.find_spec("transformers") is not None
    rows = []
    for integer in (False, True):
        ratios = {d: [] for d in DTYPES}
        useful = {d: 0 for d in DTYPES}
        compiled = 0
        for seed in range(count):
            rng = np.random.default_rng(seed)
            program = random_program(rng, integer)
            xs = rng.integers(0, 10, (2, 16, 2)).astype(float) if integer else rng.uniform(-1, 1, (2, 16, 2))
            try:  # compiled for the dtype it runs in (standard mode chooses its constants for it)
                models = {d: lsrl.compile(program, target, activations=activations, t_max=16, dtype=d)
                          for d in DTYPES}
            except lsrl.CompileError:
                continue
            compiled += 1
            for dtype, model in models.items():
                bound, error, scale = measure(model, xs, (dtype,), executors)[dtype]
                if error > bound:
                    raise SystemExit(f"the bound does not hold: {target} {activations} program {seed} {dtype}")
                if np.isfinite(bound) and bound <= 1e-4 * scale:
                    useful[dtype] += 1
                if error > 0:
                    ratios[dtype].append(bound / error)
        for dtype in DTYPES:
            r = np.array(ratios[dtype]) if ratios[dtype] else np.array([np.nan])
            rows.append((f"{target} {activations}{' (kernel and transformers)' if executors else ''}, random, "
                         f"{'integer' if integer else 'real'} inputs ({compiled} programs)", dtype,
                         f"min {np.nanmin(r):.3g}, median {np.nanmedian(r):.3g}", f"max {np.nanmax(r):.3g}",
                         f"{useful[dtype]}/{compiled} finite and ≤ 1e-4 relative"))
    return rows


def paper_row(name: str, dtype: str, bound: float, error: float, scale: float) -> str:
    ratio = f"{bound / error:.3g}" if error > 0 else "—"
    return f"| {name} | {dtype} | {bound:.3g} | {error:.3g} | {ratio} | {bound / scale:.3g} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="fewer programs and prompts (CI)")
    args = parser.parse_args()
    start = time.perf_counter()
    print("| program | dtype | bound | measured | bound / measured | relative |")
    print("|---|---|---|---|---|---|")
    for name, program, xs, t_max in paper_cases(args.smoke):
        model = lsrl.compile(program, t_max=t_max)
        for dtype, (bound, error, scale) in measure(model, xs).items():
            print(paper_row(name, dtype, bound, error, scale))
        for target in ("lstm", "gru"):  # compiled for the dtype they run in
            for dtype in DTYPES:
                try:
                    model = lsrl.compile(program, target, activations="standard", t_max=t_max, dtype=dtype)
                except lsrl.CompileError:  # the standard GRU's λ-conditionals in float32 (dtype_limits)
                    print(f"| {name}, {target} standard | {dtype} | refused | | | |")
                    continue
                print(paper_row(f"{name}, {target} standard", dtype, *measure(model, xs, (dtype,))[dtype]))
    print()
    print("| program, greedy prompts of its domain | compiled for | dtype | bound | largest error | bound / error |")
    print("|---|---|---|---|---|---|")
    for name, target, dtype, bound, error in adversarial_rows(args.smoke):
        print(f"| {name} | {target} | {dtype} | {bound:.3g} | {error:.3g} | {bound / error:.3g} |")
    print()
    print("| random programs | dtype | bound / measured | | bounds |")
    print("|---|---|---|---|---|")
    for target, activations in (("linear_rnn", "ideal"), ("lstm", "standard"), ("gru", "standard"),
                                ("hawk", "standard"), ("mamba", "standard")):
        for row in random_rows(4 if args.smoke else 40, target, activations):
            print("| " + " | ".join(row) + " |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
