"""Compile benchmark: ``debranch`` + ``rescale-units`` + ``materialize-steps`` + ``separate-large-terms`` on the
paper's programs beside the reference figures
(compile.md §6).

    PYTHONPATH=python python benchmarks/compile.py            # the table (markdown) on stdout
    PYTHONPATH=python python benchmarks/compile.py --repeat 9 --json out.json
    PYTHONPATH=python python benchmarks/compile.py --smoke    # one program of each kind, one run (CI)

Per program: CPU seconds of ``debranch``, ``rescale-units``, ``materialize-steps`` and ``separate-large-terms`` (the
passes ``lsrl.compile`` runs before ``lower``; median and minimum of ``--repeat`` runs, ``time.process_time`` — the
reference's figures are CPU seconds too; the ratio uses the median; the shares of the last three passes are
columns, wall time is in the JSON), layers (linstate ops), widest (the
largest output dimension of any op after the input — as ``max(model.widths)``), nnz (stored non-zeros of
every matrix and vector: A, B, bias, init, b), dense params (the reference's ``parameter_count``: rows×cols
of every matrix plus the lengths of the linears' b and the states' bias), and the ratios reference/ours.
Every compiled program is also run against the interpreter on a prompt (``ok`` = same answer).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import lsrl
except ImportError:  # a development checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    import lsrl

from lsrl.ir import Matrix, Vector, interpret  # noqa: E402
from lsrl.passes.debranch import debranch  # noqa: E402
from lsrl.passes.materialize_steps import materialize_steps  # noqa: E402
from lsrl.passes.rescale_units import rescale_units  # noqa: E402
from lsrl.passes.separate_large_terms import separate_large_terms  # noqa: E402
from lsrl import programs as P  # noqa: E402

# compile.md §6 (reference implementation, numeric backend, μ = 1000, λ = 1e10): (CPU s, widest, nnz, dense)
REFERENCE = {
    ("more_ones", ""): (None, 2, None, 17),
    ("continuous 2->1", "direct"): (1.0, 290, 3073, 352398),
    ("continuous 2->1", "multiplicative"): (1.0, 114, 1396, 59117),
    ("continuous 2->2", "direct"): (0.8, 306, 3231, 386310),
    ("continuous 2->2", "multiplicative"): (0.4, 122, 1471, 65301),
    ("continuous 2->2", "multiplicative_optimized"): (0.8, 282, None, 343248),
    ("continuous 2->2", "step_optimized"): (0.8, 162, None, 108248),
    ("token_map n=3", "direct"): (30.4, 250470, 4007120, None),
    ("token_map n=3", "optimized"): (6.4, 47759, 771833, None),
    ("token_map n=3", "step_optimized"): (18.4, 1984, 49894, None),
    ("token_map n=3", "multiplicative"): (11.0, 3484, 81419, None),
    ("token_map n=3", "multiplicative_optimized"): (7.8, 5402, 126745, None),
    ("token_map n=10", "multiplicative_optimized"): (48.0, 15370, 365462, None),
}
CONDITIONALS = ("direct", "optimized", "step_optimized", "multiplicative", "multiplicative_optimized")
# programs checked against the exact interpreter: run op by op in float64, the chain of conditionals is 2.9·10⁻³ off
EXACT_ORACLE = {"40 conditionals on bumps"}


def stats(module) -> dict:
    widest = max(op.dim for op in module.ops[1:])
    nnz = dense = 0
    for op in module.ops[1:]:
        for value in op.attrs.values():
            if isinstance(value, (Matrix, Vector)):
                nnz += value.nnz
        if op.kind == "linear":
            dense += op.attrs["A"].shape[0] * op.attrs["A"].shape[1] + len(op.attrs["b"])
        elif op.kind == "linstate":
            dense += op.attrs["A"].shape[0] ** 2 + op.attrs["B"].shape[0] * op.attrs["B"].shape[1]
            dense += len(op.attrs["bias"])
    return {"layers": sum(op.kind == "linstate" for op in module.ops), "widest": widest, "nnz": nnz,
            "dense": dense, "path_ops": len(module.ops)}


def cases(smoke: bool = False):
    conditionals = CONDITIONALS[:1] if smoke else CONDITIONALS
    yield "more_ones", "", P.more_ones(), _more_ones_input, None
    for d_out in (1,) if smoke else (1, 2):
        for cond in conditionals:
            yield (f"continuous 2->{d_out}", cond, P.continuous_approximator(2, d_out, cond),
                   _continuous_input(2, d_out), None)
    for cond in conditionals:
        yield "token_map n=3", cond, P.token_map(3, cond), _token_input(3), 3
    if not smoke:
        yield "token_map n=10", "multiplicative_optimized", P.token_map(10, "multiplicative_optimized"), \
            _token_input(10), 10
        yield "40 conditionals on bumps", "", _conditional_chain(40), _chain_input, None


def _conditional_chain(n):
    """``n`` nested ``f_ifelse`` of bumps of one integer input: each reader row of a λ-conditional has λ-sized
    parts beside small ones, so separate-large-terms rewrites every stage (and asks range analysis for each)."""
    x = lsrl.Input(1, lower=-4, upper=4, integer=True)
    value = x
    for k in range(n):
        inside = lsrl.f_bump(x, -3 + 0.125 * (k % 20), 1.5 + 0.1 * (k % 7), scale=1000)
        value = lsrl.f_ifelse(inside, value, value * 0.5 + 1)
    return lsrl.ForEach(value)


def _chain_input():
    return np.arange(-4.0, 5.0).reshape(1, -1, 1), 1


def _more_ones_input():
    return np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=float).reshape(1, -1, 1), 1


def _continuous_input(d_in, d_out):
    def make():
        rng = np.random.default_rng(0)
        w = rng.uniform(-1, 1, size=(d_out, d_in))
        prompt = P.continuous_prompt(lambda x: np.tanh(w @ np.asarray(x)) * 2, d_in, d_out, 8)
        q = (np.array([3, 5])[:d_in] + 0.4) / 8
        return np.vstack([P.continuous_query(q, d_out)[None], prompt])[None], 1
    return make


def _token_input(n):
    def make():
        rng = np.random.default_rng(0)
        mapping = P.random_token_map(n, 20, 10, rng)
        query = P.draw_queries(mapping, 1, rng)[0]
        return P.token_prompt(query, mapping)[None], n
    return make


def _num(v):
    if v is None:
        return "–"
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def _ratio(ref, ours):
    if ref is None or not ours:
        return "–"
    return f"{ref / ours:,.0f}×"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per program (median reported)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="one program of each kind, one run (CI: the script works)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.repeat = 1
    rows = []
    for name, cond, program, make_input, n_answer in cases(args.smoke):
        module = program.ir
        compiled = separate_large_terms(materialize_steps(rescale_units(debranch(module))))  # warm-up (imports, caches)
        cpu, wall, rescale, materialize, separate = [], [], [], [], []
        for _ in range(args.repeat):
            t0, w0 = time.process_time(), time.perf_counter()
            compiled = debranch(module)
            t1 = time.process_time()
            compiled = rescale_units(compiled)
            t2 = time.process_time()
            compiled = materialize_steps(compiled)
            t3 = time.process_time()
            compiled = separate_large_terms(compiled)
            cpu.append(time.process_time() - t0)
            rescale.append(t2 - t1)
            materialize.append(t3 - t2)
            separate.append(time.process_time() - t3)
            wall.append(time.perf_counter() - w0)
        xs, n_last = make_input()
        want = np.asarray(interpret(module, xs, exact=name in EXACT_ORACLE), dtype=float)[:, -n_last:]
        got = interpret(compiled, xs)[:, -n_last:]
        ok = bool(np.array_equal(np.round(want), np.round(got))) if n_answer else \
            bool(np.allclose(got, want, rtol=1e-6, atol=1e-3))
        row = {"program": name, "conditional": cond, "dag_ops": len(module.ops), "cpu_s": statistics.median(cpu),
               "cpu_min_s": min(cpu), "rescale_cpu_s": statistics.median(rescale),
               "materialize_cpu_s": statistics.median(materialize), "separate_cpu_s": statistics.median(separate),
               "wall_s": statistics.median(wall),
               **stats(compiled), "answers_match": ok,
               "schedule": compiled.metadata.get("schedule")}
        ref = REFERENCE.get((name, cond), (None,) * 4)
        row.update(ref_cpu_s=ref[0], ref_widest=ref[1], ref_nnz=ref[2], ref_dense=ref[3])
        rows.append(row)
    print("| program | conditional | DAG ops | CPU s median (min) | of which rescale-units | of which materialize-steps "
          "| of which separate-large-terms | layers | widest | nnz | dense params | answers | ref CPU s | ref widest | ref nnz | ref dense | faster "
          "| narrower | fewer nnz |")
    print("|" + "---|" * 19)
    for r in rows:
        print(f"| {r['program']} | {r['conditional'] or '–'} | {r['dag_ops']} | {r['cpu_s']:.4f} ({r['cpu_min_s']:.4f}) "
              f"| {r['rescale_cpu_s']:.4f} | {r['materialize_cpu_s']:.4f} | {r['separate_cpu_s']:.4f} | {r['layers']} | {r['widest']:,} | {r['nnz']:,} | {r['dense']:,} "
              f"| {'ok' if r['answers_match'] else 'DIFFER'} "
              f"| {_num(r['ref_cpu_s'])} | {_num(r['ref_widest'])} | {_num(r['ref_nnz'])} | {_num(r['ref_dense'])} "
              f"| {_ratio(r['ref_cpu_s'], r['cpu_s'])} | {_ratio(r['ref_widest'], r['widest'])} "
              f"| {_ratio(r['ref_nnz'], r['nnz'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(r["answers_match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
