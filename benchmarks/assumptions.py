"""The cost of the run-time assumption checks of ``lsrl.Model`` (input bounds, ``t_max``, finite outputs)
against the C++ kernel's time, measured in one run (docs/performance.md, "Assumption checks").

    python benchmarks/assumptions.py             # token program n = 10 (410 tokens), every target
    python benchmarks/assumptions.py --smoke     # tiny sizes, one repeat (CI: checks the script still runs)

For each target the token program is compiled with ``t_max`` = the prompt length and run through the kernel
backend with ``check_assumptions=True`` (the default) and ``False``; the checks alone (``Model._check_inputs``
plus the output check) are also timed on their own, which is the stabler number on a loaded machine.
Timings are the best of several repeats (time.perf_counter).
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
from kernel import best_time, token_prompts  # benchmarks/kernel.py: the same timer and the same prompts

import lsrl
from lsrl.assumptions import check_finite_outputs
from lsrl.programs import token_map

TARGETS = (("linear_rnn", "multiplicative"), ("lstm", "multiplicative"), ("gru", "multiplicative"),
           ("relu_rnn", "optimized"))


def measure(n: int, batches: list[int], repeats: int, targets) -> list[dict]:
    rows = []
    xs_all = token_prompts(n, max(batches))
    length = xs_all.shape[1]
    for target, conditional in targets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lsrl.compile(token_map(n, conditional=conditional, vocab_size=10), target, t_max=length)
        for batch in batches:
            xs = np.ascontiguousarray(xs_all[:batch])
            ys = model(xs, backend="kernel")
            unchecked = best_time(lambda: model(xs, backend="kernel", check_assumptions=False), repeats)
            checked = best_time(lambda: model(xs, backend="kernel"), repeats)

            def checks_only():
                model._check_inputs(xs, 0, "Model")
                check_finite_outputs(ys, "Model")

            alone = best_time(checks_only, repeats)
            rows.append({"target": target, "T": length, "batch": batch, "kernel_ms": unchecked * 1e3,
                         "checked_ms": checked * 1e3, "checks_ms": alone * 1e3,
                         "checks_pct": 100 * alone / unchecked, "overhead_pct": 100 * (checked / unchecked - 1)})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (a few seconds)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    if args.smoke:
        rows = measure(3, [1], 1, TARGETS[:2])
    else:
        rows = measure(10, [1, 64], args.repeats, TARGETS)
    print("| target | T | batch | kernel (ms) | kernel + checks (ms) | checks alone (ms) | checks / kernel | "
          "measured overhead |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['T']} | {r['batch']} | {r['kernel_ms']:.3f} | {r['checked_ms']:.3f} | "
              f"{r['checks_ms']:.4f} | {r['checks_pct']:.2f} % | {r['overhead_pct']:+.1f} % |")


if __name__ == "__main__":
    main()
