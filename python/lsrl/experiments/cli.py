"""``lsrl-experiments``: run the paper's noise-robustness study (Fig. 4) and write scores, tables and plots.

    lsrl-experiments fig4 --out results/                                # the paper's grid, local cluster
    lsrl-experiments fig4 --out results/ --targets all --dtypes float32,float64
    lsrl-experiments fig4 --out results/ --scheduler tcp://head:8786    # an existing Dask cluster
    lsrl-experiments fig4 --out results/ --quick                        # 3 seeds, σ ∈ {0, 1e-7}
    lsrl-experiments report --out results/                              # tables and plots of scores.csv as is
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..errors import LsrlError
from ..targets import all_activations, available_targets, default_target
from .protocol import (COMPILES, DTYPES, PAPER_SEEDS, PAPER_SIGMAS, PROGRAMS, QUICK_SEEDS, QUICK_SIGMAS, VARIANTS)

__all__ = ["main", "fig4"]


def fig4(out=None, *, quick: bool = False, programs=PROGRAMS, variants=VARIANTS, compiles=tuple(COMPILES),
         targets=None, activations=("ideal",), dtypes=("float64",), sigmas=None, seeds=None,
         scheduler: str | None = None, workers: int | None = None, backend: str = "kernel", resume: bool = True,
         progress: bool = True):
    """Run the Fig. 4 grid and return its scores as a pandas DataFrame (one row per instance).

    With ``out`` (a directory) the scores go to ``out/scores.csv`` as they finish (an interrupted run resumes
    there) and ``out/tables.md``, ``out/fig4_continuous.png`` and ``out/fig4_tokens.png`` are written.
    ``seeds``: a count (seeds 0..n−1) or an iterable of seeds; ``sigmas``: the noise levels; both default to
    the paper's (or ``quick``'s) values.  ``workers=0`` runs serially without Dask; see
    :func:`lsrl.experiments.runner.run_grid` for ``scheduler``, ``workers``, ``backend`` and ``resume``."""
    import pandas as pd

    from .protocol import grid
    from .runner import run_grid
    from .scores import COLUMNS

    if sigmas is None:
        sigmas = QUICK_SIGMAS if quick else PAPER_SIGMAS
    if seeds is None:
        seeds = QUICK_SEEDS if quick else PAPER_SEEDS
    if isinstance(seeds, int):
        seeds = range(seeds)
    instances = grid(programs, variants, compiles, targets, activations, dtypes, sigmas, seeds)
    result = run_grid(instances, None if out is None else Path(out), scheduler=scheduler, workers=workers,
                      backend=backend, resume=resume, progress=progress)
    frame = pd.DataFrame(result.rows, columns=list(COLUMNS))
    frame.attrs.update(skipped={key.label(): why for key, why in result.skipped.items()},
                       seconds=result.seconds)
    if out is not None and not frame.empty:
        write_report(frame, Path(out))
    return frame


def write_report(frame, out: Path) -> None:
    """``tables.md`` and the strip plots ``fig4_<program>.png`` of ``frame`` into ``out``."""
    from .plots import strip_plot
    from .tables import markdown_tables

    (out / "tables.md").write_text(markdown_tables(frame))
    for program in sorted(set(frame["program"])):
        strip_plot(frame, program, out / f"fig4_{program}.png")


def _list(valid, everything=None):
    def parse(text: str) -> tuple:
        if everything is not None and text == "all":
            return tuple(everything)
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in valid]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of "
                                             f"{', '.join(valid)}" + (" or 'all'" if everything else ""))
        return values
    return parse


def _sigmas(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 0,1e-9,1e-7") from None
    if any(not (v >= 0 and v < float("inf")) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every σ must be a finite number >= 0")
    return values


def _count(text: str, least: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= {least}")
    return value


def _positive(text: str) -> int:
    return _count(text, 1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsrl-experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("fig4", help="the paper's noise-robustness study (Fig. 4)")
    run.add_argument("--out", type=Path, required=True, help="directory for scores.csv, tables.md and plots")
    run.add_argument("--quick", action="store_true",
                     help=f"{QUICK_SEEDS} seeds and σ ∈ {{0, 1e-7}} (a minute-long look)")
    run.add_argument("--programs", type=_list(PROGRAMS), default=PROGRAMS)
    run.add_argument("--variants", type=_list(VARIANTS, VARIANTS), default=VARIANTS)
    run.add_argument("--compiles", type=_list(tuple(COMPILES), tuple(COMPILES)), default=tuple(COMPILES),
                     help="reference (debranch{mode=reference}, the paper's compile), ours (the default pipeline)")
    targets, modes = tuple(available_targets()), all_activations()
    run.add_argument("--targets", type=_list(targets, targets), default=(default_target().name,),
                     help=f"comma-separated targets or 'all' (default {default_target().name}, the paper's)")
    run.add_argument("--activations", type=_list(modes, modes), default=("ideal",),
                     help="ideal, standard or all")
    run.add_argument("--dtypes", type=_list(DTYPES, DTYPES), default=("float64",), help="float64, float32 or all")
    run.add_argument("--sigmas", type=_sigmas, default=None, help="noise levels (default the paper's five)")
    run.add_argument("--seeds", type=_positive, default=None, help=f"seeds 0..N-1 (default {PAPER_SEEDS})")
    run.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    run.add_argument("--workers", type=_count, default=None,
                     help="local cluster size (default one per CPU); 0 runs serially without Dask")
    run.add_argument("--backend", choices=("kernel", "numpy"), default="kernel",
                     help="executor (numpy runs float64 only)")
    run.add_argument("--no-resume", dest="resume", action="store_false",
                     help="start scores.csv afresh instead of resuming it")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    report = commands.add_parser("report", help="tables.md and plots from an existing scores.csv (runs nothing)")
    report.add_argument("--out", type=Path, required=True, help="the directory holding scores.csv")
    return parser


def _stop_on_sigterm(signum, frame):
    # SystemExit unwinds through the runner, which closes the local cluster; written rows are already on disk
    raise SystemExit(128 + signum)


def _report(out: Path) -> int:
    import pandas as pd

    from .scores import COLUMNS, read_scores

    rows = read_scores(out / "scores.csv")
    if not rows:
        print(f"lsrl-experiments: no scores in {out / 'scores.csv'}", file=sys.stderr)
        return 2
    write_report(pd.DataFrame(rows, columns=list(COLUMNS)), out)
    print(f"{len(rows)} instances; {out / 'tables.md'} and fig4_*.png written")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except OSError as e:  # an output folder that cannot be made, a scheduler that does not answer
        where = f"{e.filename}: " if e.filename else ""
        return _error(f"{where}{e.strerror or e}")
    except (LsrlError, ValueError) as e:  # the user's grid, scores file or cluster options
        return _error(str(e))


def _error(message: str) -> int:
    print(f"lsrl-experiments: error: {message}", file=sys.stderr)
    return 1


def _run(args) -> int:
    if args.command == "report":
        return _report(args.out)
    if args.backend == "numpy" and "float32" in args.dtypes:
        print("lsrl-experiments: the numpy backend runs float64 only; use --backend kernel for float32",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    frame = fig4(args.out, quick=args.quick, programs=args.programs, variants=args.variants,
                 compiles=args.compiles, targets=args.targets, activations=args.activations, dtypes=args.dtypes,
                 sigmas=args.sigmas, seeds=args.seeds, scheduler=args.scheduler, workers=args.workers,
                 backend=args.backend, resume=args.resume, progress=args.progress)
    for label, why in frame.attrs["skipped"].items():
        print(f"skipped {label}: {why}", file=sys.stderr)
    print(f"{len(frame)} instances in {args.out / 'scores.csv'} ({frame.attrs['seconds']:.1f} s); tables.md and "
          f"fig4_*.png written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
