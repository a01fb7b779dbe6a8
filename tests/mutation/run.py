"""Mutation testing of lsrl: does the test suite notice a small change of the compiler's code?

Each mutant is one textual change to one file of ``python/lsrl``.  It is applied to a private copy of the
checkout (``python/``, ``tests/``, ``passes/``, ``pyproject.toml``) in a temporary folder, never to the working
tree, and a selection of tests runs against that copy; the mutant is *killed* when a test fails.

    python tests/mutation/run.py seeded                  # the eight bugs of issue 14 (docs/testing.md)
    python tests/mutation/run.py operators --sample 80   # random operator/constant mutants of
                                                         # python/lsrl/{ir,passes,targets,runtime}
    python tests/mutation/run.py operators --list        # every candidate mutant, nothing run

Exit status 1 when a seeded bug survives (so CI can run ``seeded``), 0 otherwise.  The copy imports the
C++ extension of the current environment (``lsrl._kernel``), so ``csrc/`` is not mutated.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ir", "passes", "targets", "runtime")


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: str       # relative to the repository root
    old: str        # text replaced, once in the file; for an operator mutant "column:token" on ``line``
    new: str
    tests: tuple[str, ...]   # pytest node ids / paths to run
    label: str
    line: int | None = None  # 1-based line of an operator mutant


def seeded_bugs() -> list[Mutant]:
    """The bugs an audit seeded into main (issue 14; ``seeded.json``: what each changes, why it matters, and the
    tests of the default run that must catch it)."""
    rows = json.loads((Path(__file__).with_name("seeded.json")).read_text())
    return [Mutant(r["path"], r["old"], r["new"], tuple(r["tests"]), r["label"]) for r in rows]


SEEDED = seeded_bugs()

# The tests run against every operator mutant of a package: a fast selection (tens of seconds), since they run
# once per mutant.
OPERATOR_TESTS = {
    "ir": ("tests/test_interpreter.py", "tests/test_ir_text.py", "tests/test_oracles.py",
           "-k", "not large_sparse_module"),
    "passes": ("tests/test_passes.py", "tests/test_rewrite_coverage.py", "tests/test_debranch.py",
               "tests/test_rescale_units.py", "tests/test_materialize_steps.py", "tests/test_oracles.py"),
    "targets": ("tests/test_oracles.py", "tests/test_rewrite_coverage.py", "tests/test_targets.py",
                "tests/test_exports.py", "-k", "not n10 and not 5000_entries and not onnx and not paper_programs"),
    "runtime": ("tests/test_kernel_scan.py", "tests/test_kernel_executor.py", "tests/test_oracles.py"),
}

_SWAPS = {"+": "-", "-": "+", "*": "/", "<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==",
          "and": "or", "or": "and", "True": "False", "False": "True", "0": "1", "1": "0", "2": "3",
          "0.0": "1.0", "1.0": "0.0"}


def operator_mutants(package: str) -> list[Mutant]:
    """One mutant per swappable token (operators, comparisons, boolean connectives and small constants) in
    the code of ``python/lsrl/<package>`` — strings, comments and docstrings are left alone."""
    out = []
    for path in sorted((ROOT / "python" / "lsrl" / package).glob("*.py")):
        rel = str(path.relative_to(ROOT))
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for tok in tokens:
            if tok.type not in (tokenize.OP, tokenize.NAME, tokenize.NUMBER) or tok.string not in _SWAPS:
                continue
            line = tok.start[0]
            out.append(Mutant(rel, f"{tok.start[1]}:{tok.string}", _SWAPS[tok.string], OPERATOR_TESTS[package],
                              f"{rel}:{line}:{tok.start[1] + 1} {tok.string} -> {_SWAPS[tok.string]}", line))
    return out


def apply(mutant: Mutant, copy_root: Path) -> None:
    target = copy_root / mutant.path
    text = target.read_text()
    if mutant.line is None:
        if text.count(mutant.old) != 1:
            raise SystemExit(f"{mutant.label}: {mutant.old!r} occurs {text.count(mutant.old)} times in "
                             f"{mutant.path} (the source changed: update tests/mutation/run.py)")
        target.write_text(text.replace(mutant.old, mutant.new))
        return
    lines = text.splitlines(keepends=True)
    column, token = mutant.old.split(":", 1)
    column = int(column)
    line = lines[mutant.line - 1]
    assert line[column:column + len(token)] == token, (mutant.label, line)
    lines[mutant.line - 1] = line[:column] + mutant.new + line[column + len(token):]
    target.write_text("".join(lines))


def make_copy(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "Output", ".hypothesis", "*.so")
    for name in ("python", "tests", "passes"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    try:  # the built extension, next to the copied package
        import lsrl._kernel
        shutil.copy2(lsrl._kernel.__file__, dest / "python" / "lsrl")
    except ImportError:
        pass


# Runs pytest with the copy's python/ first on the path and the editable install's redirect removed.
_BOOT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, {python!r})
import pytest
sys.exit(pytest.main({args!r}))
"""


def killed(mutant: Mutant, timeout: float, *, every_failure: bool, tests=None) -> tuple[bool, str]:
    """Run the mutant's tests (or ``tests``) on a fresh copy; ``(killed, detail)``.  ``every_failure``: run all
    the tests and name every failing one (else stop at the first)."""
    with tempfile.TemporaryDirectory(prefix="lsrl-mutant-") as tmp:
        copy_root = Path(tmp)
        make_copy(copy_root)
        apply(mutant, copy_root)
        args = ["-q", "-p", "no:cacheprovider", "--no-header", "-rfE", *(() if every_failure else ("-x",)),
                *(tests or mutant.tests)]
        boot = _BOOT.format(python=str(copy_root / "python"), args=args)
        try:
            proc = subprocess.run([sys.executable, "-c", boot], cwd=copy_root, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return True, "timeout"
        if proc.returncode in (4, 5):  # usage error / no tests collected: the selection is wrong, not the mutant
            raise SystemExit(f"{mutant.label}: pytest could not run {mutant.tests}:\n{proc.stdout[-2000:]}")
        tail = (proc.stdout.strip().splitlines() or [""])[-1]
        failed = [ln.split(" ")[1] for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        return proc.returncode != 0, (", ".join(failed) if failed else tail)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["seeded", "operators"])
    parser.add_argument("--sample", type=int, default=0, help="operators: run this many random mutants (0: all)")
    parser.add_argument("--seed", type=int, default=14, help="operators: the sampling seed")
    parser.add_argument("--packages", default=",".join(PACKAGES), help="operators: comma-separated packages")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant (a timeout counts as killed)")
    parser.add_argument("--tests", nargs="+", help="run these tests instead of each mutant's own selection")
    parser.add_argument("--every-failure", action="store_true",
                        help="run every selected test and name each failing one (slow: failures shrink)")
    args = parser.parse_args(argv)

    if args.which == "seeded":
        mutants = SEEDED
    else:
        mutants = [m for p in args.packages.split(",") for m in operator_mutants(p)]
        if args.sample:
            mutants = random.Random(args.seed).sample(mutants, min(args.sample, len(mutants)))
    if args.list:
        for m in mutants:
            print(m.label)
        print(f"{len(mutants)} mutants")
        return 0

    survivors = []
    for m in mutants:
        start = time.monotonic()
        dead, detail = killed(m, args.timeout, every_failure=args.every_failure, tests=args.tests)
        print(f"{'killed ' if dead else 'SURVIVED'} {time.monotonic() - start:6.1f}s  {m.label}  [{detail}]",
              flush=True)
        if not dead:
            survivors.append(m)
    print(f"score: {len(mutants) - len(survivors)}/{len(mutants)} killed")
    return 1 if (survivors and args.which == "seeded") else 0


if __name__ == "__main__":
    sys.exit(main())
