"""Run pass pipelines on IR modules: ``lsrl.opt.run`` and the ``lsrl-opt`` command line tool.

``run`` clones its input, then applies each pass of the pipeline; after every pass it verifies the IR
(naming the pass that broke it), optionally prints the IR MLIR-style
(``// -----// IR Dump After <pass> //----- //``), times the passes, and in checking mode runs the
interpreter on random input sequences before and after every pass to name the first pass that changed
the program's meaning.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Iterable, TextIO

import numpy as np

from .assumptions import recorded_t_max
from .errors import LsrlError, PassError, VerifyError
from .ir.core import as_module
from .ir.parser import decode_source
from .passes import Pass, format_pipeline, load_passes, parse_pipeline, pass_options

__all__ = ["run", "passes", "main", "check_inputs"]


def passes() -> list[tuple[str, str, list[tuple[str, str, object]]]]:
    """Every registered pass as ``(name, summary, [(option, type, default), ...])``, sorted by name."""
    registry = load_passes()
    return [(name, cls.summary, [(o.name, o.type, o.default) for o in pass_options(cls)])
            for name, cls in sorted(registry.items())]


# ---------------------------------------------------------------------------- checking mode

def _timed_verify(module, failure: str, timings: list) -> None:
    """Verify ``module`` (a VerifyError says ``failure: why``) and time it as an ``(A) verifier`` entry."""
    t0 = time.perf_counter()
    try:
        module.verify()
    except VerifyError as e:
        raise VerifyError(f"{failure}: {e}") from None
    timings.append(("(A) verifier", time.perf_counter() - t0))


def check_inputs(module, *, batch: int = 4, steps: int = 6, seed: int = 0) -> np.ndarray:
    """Random input sequences ``(batch, steps, d)`` inside the input op's ``lower``/``upper`` bounds.

    Half of the sequences are uniform in the bounds (normal where unbounded); the other half use integers
    where the bounds allow it, since token programs are only specified on integer inputs — and all of them where
    the input is declared ``integer`` (a compiled model may rely on it: standard-mode selects), and every value of
    a feature with a declared ``grid`` on it.
    """
    inp = module.input
    declared_integer = bool(inp.attrs.get("integer", 0))
    d = inp.dim
    lo = inp.attrs["lower"].array().astype(np.float64)
    hi = inp.attrs["upper"].array().astype(np.float64)
    grid = inp.attrs["grid"].to_float().values if inp.attrs.get("grid") is not None else np.zeros(d)
    rng = np.random.default_rng(seed)
    xs = np.empty((batch, steps, d))
    for j in range(d):
        a, b = lo[j], hi[j]
        for i in range(batch):
            integral = declared_integer or i % 2 == 1
            if np.isfinite(a) and np.isfinite(b):
                if integral and np.ceil(a) <= np.floor(b):
                    vals = rng.integers(np.ceil(a), np.floor(b) + 1, size=steps).astype(np.float64)
                else:
                    vals = rng.uniform(a, b, size=steps)
            elif np.isfinite(a):
                vals = a + rng.exponential(2.0, size=steps)
            elif np.isfinite(b):
                vals = b - rng.exponential(2.0, size=steps)
            else:
                vals = rng.normal(0.0, 2.0, size=steps)
            if integral:
                vals = np.clip(np.round(vals), a, b)
            xs[i, :, j] = vals
        if grid[j] > 0:  # a declared grid: the values lower + k·step (its declaration keeps them exact)
            count = int(np.floor((hi[j] - lo[j]) / grid[j])) + 1
            xs[:, :, j] = lo[j] + grid[j] * rng.integers(0, count, size=(batch, steps))
    return xs


def _interpret(module, xs):
    from .ir.interpreter import interpret
    t_max = recorded_t_max(module)
    return np.asarray(interpret(module, xs[:, :t_max]), dtype=np.float64)


def _same(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(np.all(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)))


# ---------------------------------------------------------------------------- change detection

def _fingerprint(module) -> tuple:
    """A structural value equal for two modules exactly when they print the same (up to SSA names)."""
    index: dict[int, int] = {}
    ops = []
    for i, op in enumerate(module.ops):
        index[id(op)] = i
        attrs = tuple(sorted((k, v.key() if hasattr(v, "key") else (type(v).__name__, v))
                             for k, v in op.attrs.items()))
        ops.append((op.kind, op.dim, tuple(index.get(id(o), -1) for o in op.operands), attrs, op.name))
    return tuple(ops), index.get(id(module.output), -1), module.name


def _dump(module, header: str, out: TextIO) -> None:
    out.write(f"// -----// IR Dump After {header} //----- //\n")
    out.write(str(module))
    out.write("\n\n")
    out.flush()


def _timing_report(rows: list[tuple[str, float]], total: float, out: TextIO) -> None:
    bar = "===" + "-" * 73 + "==="
    out.write(f"{bar}\n{'... Execution time report ...':^79}\n{bar}\n")
    out.write(f"  Total Execution Time: {total:.4f} seconds\n\n")
    out.write("  ----Wall Time----  ----Name----\n")
    for name, secs in rows:
        pct = 100.0 * secs / total if total > 0 else 0.0
        out.write(f"  {secs:8.4f} ({pct:5.1f}%)  {name}\n")
    out.write(f"  {total:8.4f} (100.0%)  Total\n")
    out.flush()


# ---------------------------------------------------------------------------- run

#: checking tolerance (relative and absolute) for modules lowered to run in float32: their standard-mode constants
#: trade float64 accuracy for float32 accuracy (a product's truncation 2^-16/30 = 5e-7, measured 1.5e-6)
FLOAT32_CHECK_TOLERANCE = 1e-5


def run(module_or_program, pipeline: str | Iterable[Pass], *, verify: bool = True,
        print_ir_after_all: bool = False, print_ir_after_change: bool = False, time_passes: bool = False,
        check: bool = False, check_rtol: float = 1e-9, check_atol: float = 1e-9,
        out: TextIO | None = None):
    """Run a pass pipeline on a copy of ``module_or_program`` (a Module, or a program with ``.ir``).

    ``pipeline`` is pipeline text (``"canonicalize,cse{},dce"``) or a list of pass instances.  The
    caller's module is never mutated.  Raises :class:`PassError` for a malformed pipeline, a failing pass
    or (``check=True``) a pass that changed the outputs on the random check inputs beyond
    ``check_rtol``/``check_atol`` (at least :data:`FLOAT32_CHECK_TOLERANCE` once a pass lowered for float32);
    :class:`VerifyError` naming the pass when a pass leaves invalid IR.
    IR dumps and the timing report go to ``out`` (default ``sys.stderr``).
    """
    out = sys.stderr if out is None else out
    if not callable(getattr(out, "write", None)):
        raise TypeError(f"lsrl.opt.run: out must be a text stream (with write()), got {type(out).__name__}")
    if not isinstance(pipeline, (str, list, tuple)):
        raise TypeError(f"lsrl.opt.run: pipeline must be pipeline text or a list of passes, got "
                        f"{type(pipeline).__name__}")
    pass_list = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    for p in pass_list:
        if not isinstance(p, Pass):
            raise TypeError(f"pipeline entries must be lsrl.passes.Pass instances, got {type(p).__name__}")
    module = as_module(module_or_program, "lsrl.opt.run").clone()
    timings: list[tuple[str, float]] = []
    t_start = time.perf_counter()

    if verify:
        _timed_verify(module, "the input IR is invalid", timings)

    xs = reference = None
    if check:
        xs = check_inputs(module)
        reference = _interpret(module, xs)

    track_change = print_ir_after_change and not print_ir_after_all
    for position, p in enumerate(pass_list, start=1):
        label = p.pipeline_text()
        before = _fingerprint(module) if track_change else None
        t0 = time.perf_counter()
        try:
            result = p.run(module)
        except LsrlError as e:
            e.add_note(f"while running pass {label!r} (position {position} of pipeline "
                       f"{format_pipeline(pass_list)!r})")
            raise
        except Exception as e:  # a bug in the pass: report it as a pass failure naming the pass
            raise PassError(f"pass {label!r} failed: {type(e).__name__}: {e}") from e
        timings.append((label, time.perf_counter() - t0))
        if result is not None:
            module = result
        if verify:
            _timed_verify(module, f"pass {label!r} (position {position}) produced invalid IR", timings)
        if print_ir_after_all or (track_change and _fingerprint(module) != before):
            _dump(module, label, out)
        if check:
            got = _interpret(module, xs)
            reference = reference[:, :got.shape[1]]  # a pass that assumed t_max is checked on its first t_max steps
            # a model lowered for float32 (lower{dtype=float32}) may spend float32's precision on its constants
            rtol, atol = ((max(check_rtol, FLOAT32_CHECK_TOLERANCE), max(check_atol, FLOAT32_CHECK_TOLERANCE))
                          if module.metadata.get("dtype") == "float32" else (check_rtol, check_atol))
            if not _same(got, reference, rtol, atol):
                if got.shape != reference.shape:
                    detail = f"output shape {reference.shape} became {got.shape}"
                else:
                    err = np.abs(got - reference)
                    worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(err), np.inf, err))), err.shape)
                    detail = (f"at (sequence, step, coordinate) {tuple(int(i) for i in worst)} the output was "
                              f"{reference[worst]!r} before and {got[worst]!r} after")
                raise PassError(f"checking mode: pass {label!r} (position {position}) changed the program's "
                                f"meaning: {detail}")
            reference = got

    if time_passes:
        merged: dict[str, float] = {}
        for name, secs in timings:
            merged[name] = merged.get(name, 0.0) + secs
        _timing_report(list(merged.items()), time.perf_counter() - t_start, out)
    return module


# ---------------------------------------------------------------------------- command line

def _list_passes(out: TextIO) -> None:
    out.write("Available passes:\n")
    for name, summary, options in passes():
        out.write(f"  {name:<18} {summary}\n")
        for opt, typ, default in options:
            shown = "none" if default is None else (str(default).lower() if isinstance(default, bool) else default)
            out.write(f"      {opt}: {typ} = {shown}\n")


def _list_targets(out: TextIO) -> None:
    from .targets import available_targets
    out.write("Available targets (lower{target=...}):\n")
    for name, target in available_targets().items():
        marks = [f"activations {'/'.join(target.activations)}", f"ops {', '.join(sorted(target.op_kinds))}"]
        if target.is_default:
            marks.append("default")
        out.write(f"  {name:<18} {target.summary} [{'; '.join(marks)}]\n")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lsrl-opt",
        description="Read LSRL IR, run a pass pipeline on it and print the resulting IR.")
    ap.add_argument("file", nargs="?", default="-", help="input IR file ('-' or nothing: standard input)")
    ap.add_argument("-p", "--pipeline", "--pass-pipeline", dest="pipeline", action="append", default=None,
                    help='comma-separated passes with options, e.g. "canonicalize,cse,dce{}"; repeated, the '
                         'pipelines run in order')
    ap.add_argument("-o", "--output", default="-", help="output file ('-': standard output)")
    ap.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    ap.add_argument("--print-ir-after-change", action="store_true",
                    help="print the IR after every pass that changed it (stderr)")
    ap.add_argument("--time-passes", action="store_true", help="print the wall time of every pass (stderr)")
    ap.add_argument("--no-verify", action="store_true", help="do not verify the IR after each pass")
    ap.add_argument("--check", action="store_true",
                    help="interpret the program on random inputs after each pass and fail at the first pass "
                         "that changes its outputs")
    ap.add_argument("--list-passes", action="store_true", help="list the registered passes and their options")
    ap.add_argument("--list-targets", action="store_true", help="list the registered target architectures")
    ap.add_argument("--split-input-file", action="store_true",
                    help="treat '// -----' lines as separators of independent modules (each processed on its "
                         "own; outputs separated by '// -----')")
    ap.add_argument("--emit", choices=("ir", "dot"), default="ir",
                    help="what to print: the resulting IR (default) or its graph as DOT text (the op DAG of a "
                         "program; the layers of a layer-form or lowered module), e.g. for 'dot -Tsvg'")
    return ap


def _error(message: str, notes=()) -> int:
    first = message.split("\n", 1)[0]
    sys.stderr.write(message + "\n" if ": error:" in first else f"lsrl-opt: error: {message}\n")
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    sys.stderr.flush()
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list_passes:
        _list_passes(sys.stdout)
        return 0
    if args.list_targets:
        _list_targets(sys.stdout)
        return 0
    # repeated -p flags run one after the other (the last one alone used to run, silently); one is kept as
    # written, so that an error's column points into it
    pipelines = args.pipeline or [""]
    args.pipeline = pipelines[0] if len(pipelines) == 1 else ",".join(p.strip(" ,") for p in pipelines if p.strip(" ,"))
    if args.file == "-":
        data, filename = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            with open(args.file, "rb") as fh:
                data = fh.read()
        except OSError as e:
            return _error(f"cannot read {args.file}: {e.strerror}")
        filename = args.file
    try:
        text = decode_source(data, filename)
    except LsrlError as e:
        return _error(str(e))
    try:
        pass_list = parse_pipeline(args.pipeline)  # a bad pipeline is reported before the IR is read
    except LsrlError as e:
        return _error(str(e), getattr(e, "__notes__", ()))
    chunks = _split_chunks(text) if args.split_input_file else [text]
    outputs, status = [], 0
    for chunk in chunks:
        try:
            outputs.append(_process(chunk, filename, pass_list, args))
        except LsrlError as e:
            status = _error(str(e), getattr(e, "__notes__", ()))
    printed = "// -----\n".join(outputs)
    if args.output == "-":
        sys.stdout.write(printed)
        sys.stdout.flush()
    else:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(printed)
        except OSError as e:
            return _error(f"cannot write {args.output}: {e.strerror}")
    return status


def _split_chunks(text: str) -> list[str]:
    """Split at ``// -----`` lines; every chunk is padded with the newlines before it, so that error
    positions are lines of the whole file."""
    lines = text.splitlines(keepends=True)
    chunks, current, start = [], [], 0
    for i, line in enumerate(lines):
        if line.strip() == "// -----":
            chunks.append("\n" * start + "".join(current))
            current, start = [], i + 1
        else:
            current.append(line)
    chunks.append("\n" * start + "".join(current))
    return chunks


def _process(text: str, filename: str, pass_list: list, args) -> str:
    from .ir import parse
    module = parse(text, filename=filename)
    result = run(module, pass_list, verify=not args.no_verify, print_ir_after_all=args.print_ir_after_all,
                 print_ir_after_change=args.print_ir_after_change, time_passes=args.time_passes,
                 check=args.check, out=sys.stderr)
    if args.emit == "dot":
        from .viz import to_dot
        return to_dot(result)
    printed = str(result)
    return printed if printed.endswith("\n") else printed + "\n"


if __name__ == "__main__":
    sys.exit(main())
