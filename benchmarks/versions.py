"""This checkout against another git revision: full ``lsrl.compile`` time (every target and mode) and the
kernel's run time on the paper's programs, as ratios (this / that).

    python benchmarks/versions.py --against HEAD~1            # the table (markdown) on stdout
    python benchmarks/versions.py --against v0.1 --this HEAD --repeat 5
    python benchmarks/versions.py --against v0.1 --base-kernel /path/to/v0.1/lsrl/_kernel.cpython-311-x86_64-linux-gnu.so
    python benchmarks/versions.py --against HEAD --smoke      # one case, one run (CI)
    python benchmarks/versions.py --against 6deca40 --passes  # only the passes before lower, per pass

``--passes`` times the passes ``lsrl.compile`` runs before ``lower`` (``debranch``, ``rescale-units``,
``materialize-steps``, ``separate-large-terms``: those the revision has) on the continuous programs and the token
program (n = 3), pass by pass, as benchmarks/compile.py does; each figure is the minimum over its runs.

The other revision is checked out into a temporary git worktree.  Each side runs in its own subprocess that
imports lsrl from its tree (the editable install's import hook is bypassed), and the sides alternate
``--rounds`` times; every figure is the minimum over its runs (CPU seconds for compiling, wall seconds for the
kernel, batch 32 × 410 steps).  Both sides use the installed C++ extension (so this compares everything but the
C++ code) unless ``--base-kernel`` names the extension built from the other revision
(``lsrl/_kernel*.so`` of an install of it).  Rows a side cannot compile (a documented CompileError) are
left out; a model the kernel cannot run gets no kernel figure.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_MEASURE = r'''
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, sys.argv[1])
import json, time
import numpy as np
import lsrl
from lsrl.programs import continuous_approximator, token_map
assert lsrl.__file__.startswith(sys.argv[1]), lsrl.__file__
repeat, smoke = int(sys.argv[2]), sys.argv[3] == "1"
cases = [("token_map n=3 multiplicative", token_map(3, vocab_size=10, conditional="multiplicative")),
         ("token_map n=3 optimized", token_map(3, vocab_size=10, conditional="optimized")),
         ("token_map n=10 multiplicative", token_map(10, vocab_size=10, conditional="multiplicative")),
         ("continuous 2->1 multiplicative", continuous_approximator(2, 1, "multiplicative"))]
targets = sorted(lsrl.targets.available_targets()) if hasattr(lsrl.targets, "available_targets") else \
    ["gru", "linear_rnn", "lstm", "relu_rnn"]
if smoke:  # the default target (both revisions have one; older ones have no default_target())
    cases, targets = cases[3:], [None]
out = {}
for label, program in cases:
    for target in targets:
        for activations in ("ideal", "standard"):
            best, model = float("inf"), None
            for _ in range(repeat):
                start = time.process_time()
                try:
                    options = {} if target is None else {"target": target}
                    model = lsrl.compile(program, activations=activations, t_max=410, **options)
                except lsrl.CompileError:
                    model = None
                    break
                best = min(best, time.process_time() - start)
            if model is None:
                continue
            xs = np.random.default_rng(0).integers(0, 10, size=(32, 410, model.d_in)).astype(float)
            try:
                model(xs[:, :5], backend="kernel", check_assumptions=False)
            except lsrl.VerifyError:  # a target whose ops have no kernel descriptor yet
                out[f"{label} | {target or 'default'} | {activations}"] = [best, float("nan")]
                continue
            run = float("inf")
            for _ in range(3 * repeat):
                start = time.perf_counter()
                model(xs, backend="kernel", check_assumptions=False)
                run = min(run, time.perf_counter() - start)
            out[f"{label} | {target or 'default'} | {activations}"] = [best, run]
print(json.dumps(out))
'''


_MEASURE_PASSES = r'''
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, sys.argv[1])
import importlib, json, time
import lsrl
from lsrl.programs import continuous_approximator, token_map
assert lsrl.__file__.startswith(sys.argv[1]), lsrl.__file__
repeat, smoke = int(sys.argv[2]), sys.argv[3] == "1"
passes = []
for module, name in (("debranch", "debranch"), ("rescale_units", "rescale_units"),
                     ("materialize_steps", "materialize_steps"), ("separate_large_terms", "separate_large_terms")):
    try:
        passes.append((name, getattr(importlib.import_module("lsrl.passes." + module), name)))
    except (ImportError, AttributeError):  # a revision before the pass
        pass
conditionals = ("direct", "optimized", "step_optimized", "multiplicative", "multiplicative_optimized")
cases = [(f"continuous 2->{d} {c}", continuous_approximator(2, d, c)) for d in (1, 2) for c in conditionals]
cases += [(f"token_map n=3 {c}", token_map(3, c)) for c in conditionals]
if smoke:
    cases, repeat = cases[:1], 1
out = {}
for label, program in cases:
    best = {name: float("inf") for name, _ in passes}
    for _ in range(repeat):
        module = program.ir
        for name, run in passes:
            start = time.process_time()
            module = run(module)
            best[name] = min(best[name], time.process_time() - start)
    out[label] = best
print(json.dumps(out))
'''


def _installed_kernel() -> Path:
    import lsrl._kernel as kernel
    return Path(kernel.__file__)


def _measure(tree: Path, repeat: int, smoke: bool, script: str = _MEASURE) -> dict:
    done = subprocess.run([sys.executable, "-c", script, str(tree / "python"), str(repeat), "1" if smoke else "0"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="HEAD", help="the git revision to compare with (default HEAD)")
    parser.add_argument("--this", default=None, help="a git revision for this side (default: the working tree)")
    parser.add_argument("--base-kernel", type=Path, default=None,
                        help="the other revision's built lsrl._kernel (default: the installed one for both sides)")
    parser.add_argument("--repeat", type=int, default=3, help="compiles per case and side per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two sides")
    parser.add_argument("--smoke", action="store_true", help="one case, one run (CI)")
    parser.add_argument("--passes", action="store_true",
                        help="time only the passes before lower, per pass, on the paper's programs")
    args = parser.parse_args(argv)
    repeat, rounds = (1, 1) if args.smoke else (args.repeat, args.rounds)
    kernel = _installed_kernel()
    with tempfile.TemporaryDirectory(prefix="lsrl-versions-") as tmp:
        base, here = Path(tmp) / "base", Path(tmp) / "here"
        trees = [(base, args.against)] + ([(here, args.this)] if args.this else [])
        for tree, revision in trees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), revision],
                           check=True)
        try:
            if not args.this:
                shutil.copytree(ROOT / "python", here / "python")
            for tree in (base, here):
                source = args.base_kernel if tree is base and args.base_kernel else kernel
                shutil.copy(source, tree / "python" / "lsrl" / kernel.name)
            results = {"this": [], "base": []}
            script = _MEASURE_PASSES if args.passes else _MEASURE
            for _ in range(rounds):
                results["base"].append(_measure(base, repeat, args.smoke, script))
                results["this"].append(_measure(here, repeat, args.smoke, script))
        finally:
            for tree, _ in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    if args.passes:
        _print_passes(results, args.this or "this checkout", args.against)
        return 0
    best = {side: {k: [min(r[k][i] for r in runs if k in r) for i in (0, 1)] for k in runs[0]}
            for side, runs in results.items()}
    print(f"{args.this or 'this checkout'} / {args.against}: compile (CPU s, min) and kernel run (wall ms, min, batch 32 × 410)\n")
    print("| program | target | mode | compile base | compile this | ratio | kernel base | kernel this | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0, 0.0]
    for key in best["this"]:
        if key not in best["base"]:
            continue
        (cb, kb), (ct, kt) = best["base"][key], best["this"][key]
        totals[:2] = [totals[0] + cb, totals[1] + ct]
        if kb == kb and kt == kt:  # both sides ran it in the kernel
            totals[2:] = [totals[2] + kb, totals[3] + kt]
        print(f"| {key} | {cb:.3f} | {ct:.3f} | {ct / cb:.2f} | {kb * 1e3:.2f} | {kt * 1e3:.2f} | {kt / kb:.2f} |")
    if totals[0] and totals[2]:
        print(f"| total | | | {totals[0]:.3f} | {totals[1]:.3f} | {totals[1] / totals[0]:.2f} | "
              f"{totals[2] * 1e3:.2f} | {totals[3] * 1e3:.2f} | {totals[3] / totals[2]:.2f} |")
    return 0


def _print_passes(results: dict, this: str, against: str) -> None:
    """The per-pass table of ``--passes``: CPU ms, the minimum over every run of each side, and this / that."""
    best = {side: {label: {name: min(r[label][name] for r in runs) for name in runs[0][label]}
                   for label in runs[0]} for side, runs in results.items()}
    names = list(next(iter(best["this"].values())))
    print(f"{this} / {against}: CPU ms of the passes before lower (min over the runs; – : a pass {against} lacks)\n")
    print("| program | " + " | ".join(f"{n} base | {n} this" for n in names) + " | total base | total this | ratio |")
    print("|" + "---|" * (2 * len(names) + 4))
    for label, here in best["this"].items():
        there = best["base"][label]
        cells = [f"{there[n] * 1e3:.2f}" if n in there else "–" for n in names]
        row = " | ".join(f"{b} | {here[n] * 1e3:.2f}" for b, n in zip(cells, names))
        total_base, total_this = sum(there.values()), sum(here.values())
        print(f"| {label} | {row} | {total_base * 1e3:.2f} | {total_this * 1e3:.2f} | {total_this / total_base:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
