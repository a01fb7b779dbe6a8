"""Range-analysis tightness: how far the proven bounds are from the values programs really reach.

    python benchmarks/ranges.py            # the table (markdown) on stdout
    python benchmarks/ranges.py --smoke    # small programs and prompts (CI: the script works)

For every coordinate of every op, tightness = max(|lo|, |hi|) / max |observed value| over a batch of prompts
(1 = the bound is reached; coordinates that stay 0 are left out), for the program as written and for its layer
form after ``debranch`` (what the targets lower), with ``t_max`` = the prompt length.  Rows: the paper's programs
and random linear states whose blocks are rotations, contractions and counters (norm-bounded since the block
analysis).  "unbounded" counts coordinates left at ±inf.
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

from lsrl.ir import interpret  # noqa: E402
from lsrl.ir.core import Module, Op  # noqa: E402
from lsrl.ir.matrix import Matrix, Vector  # noqa: E402
from lsrl.passes.debranch import debranch  # noqa: E402
from lsrl.passes.range_analysis import compute_ranges  # noqa: E402
from lsrl import programs as P  # noqa: E402


def tightness(module, xs, t_max, kinds=None):
    ranges = compute_ranges(module, t_max=t_max)
    _, values = interpret(module, xs, return_values=True)
    ratios, unbounded, total = [], 0, 0
    for op in module.ops:
        if op.kind == "input" or (kinds and op.kind not in kinds):
            continue
        lo, hi = ranges[id(op)]
        bound = np.maximum(np.abs(lo), np.abs(hi))
        seen = np.max(np.abs(values[op]), axis=(0, 1))
        total += op.dim
        unbounded += int(np.sum(~np.isfinite(bound)))
        keep = np.isfinite(bound) & (seen > 0)
        ratios.extend((bound[keep] / seen[keep]).tolist())
    return ratios, unbounded, total


def token_case(n, conditional, count, seed=0):
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(count):
        mapping = P.random_token_map(n, 20, 10, rng)
        prompts.append(P.token_prompt(P.draw_queries(mapping, 1, rng)[0], mapping))
    return P.token_map(n, conditional, vocab_size=10).ir, np.stack(prompts)


def continuous_case(conditional, count, seed=0):
    rng = np.random.default_rng(seed)
    f = P.create_test_target_function(2, 2, rng=rng)
    prompt = P.continuous_prompt(f, 2, 2, 8)
    xs = np.stack([np.vstack([P.continuous_query(rng.uniform(0.05, 0.95, 2), 2), prompt]) for _ in range(count)])
    return P.continuous_approximator(2, 2, conditional, value_bound=4.0).ir, xs


def more_ones_case(count, length, seed=0):
    bits = np.random.default_rng(seed).integers(0, 2, size=(count, length, 1)).astype(float)
    return P.more_ones().ir, bits


def random_states_case(count, length, seed=0):
    """One linstate of 2x2 rotation blocks (radius 1), contractions (radius 0.9) and a counter reading them."""
    rng = np.random.default_rng(seed)
    blocks = []
    for radius in (1.0, 1.0, 0.9):
        theta = rng.uniform(0.1, 3.0)
        blocks.append(radius * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]))
    k = 2 * len(blocks) + 1
    A = np.zeros((k, k))
    for i, block in enumerate(blocks):
        A[2 * i:2 * i + 2, 2 * i:2 * i + 2] = block
    A[-1, 0], A[-1, -1] = 1.0, 1.0  # a counter summing the first rotation's coordinate
    x = Op("input", [], {"lower": Vector([-1.0]), "upper": Vector([1.0])}, dim=1)
    B = rng.normal(size=(k, 1))
    B[-1] = 0
    state = Op("linstate", [x], {"A": Matrix.from_dense(A), "B": Matrix.from_dense(B),
                                 "init": Vector(np.r_[rng.normal(size=k - 1), 0.0])})
    return Module.from_output(state), rng.choice([-1.0, 1.0], size=(count, length, 1))


def percentile(values, q):
    return f"{np.percentile(values, q):.3g}" if values else "–"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small programs and prompts (CI: the script works)")
    args = ap.parse_args(argv)
    count = 2 if args.smoke else 8
    cases = [("more_ones", *more_ones_case(count, 64)),
             ("continuous 2->2 multiplicative", *continuous_case("multiplicative", count)),
             ("token n=3 multiplicative", *token_case(3, "multiplicative", count))]
    if not args.smoke:
        cases += [("continuous 2->2 direct", *continuous_case("direct", count)),
                  ("token n=3 direct", *token_case(3, "direct", count)),
                  ("token n=10 multiplicative", *token_case(10, "multiplicative", count))]
    cases.append(("random states (rotations, contraction, counter)",
                  *random_states_case(count, 200 if args.smoke else 5000)))
    print("| program | form | t_max | coordinates | unbounded | linstate median | linstate max "
          "| all median | all 90% | all max |")
    print("|" + "---|" * 10)
    for name, module, xs in cases:
        t_max = xs.shape[1]
        for form, mod in (("program", module), ("layer form", debranch(module))):
            states, _, _ = tightness(mod, xs, t_max, kinds={"linstate"})
            every, unbounded, total = tightness(mod, xs, t_max)
            print(f"| {name} | {form} | {t_max} | {total} | {unbounded} | {percentile(states, 50)} "
                  f"| {max(states, default=float('nan')):.3g} | {percentile(every, 50)} | {percentile(every, 90)} "
                  f"| {max(every, default=float('nan')):.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
