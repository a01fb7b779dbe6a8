"""The main job: compile the paper's programs to every target and run a prompt through each model.

``python -m lsrl.demo`` prints one row per (program, target, activations): the compiled model's size, the
compile time, the answer it gives, the expected answer and its largest deviation from the interpreter.
``--plots DIR`` also writes the pictures of what it compiled (docs/inspection.md): per program its graph
(``<program>.program.svg``), per model its summary (``<program>.<target>.<mode>.summary.txt``), its layers
(``….layers.svg``) and its weights (``….weights.png``).  The pictures need the ``plot`` extra (matplotlib).
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from . import compile as compile_program
from .targets import available_targets
from .errors import CompileError
from .programs import (continuous_approximator, continuous_prompt, continuous_query, more_ones, token_map,
                       token_prompt)

__all__ = ["main", "paper_cases"]


def paper_cases(conditional: str):
    """``(label, program, prompt, expected answer, answer rows)`` for the paper's three programs."""
    bits = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1], dtype=float).reshape(-1, 1)
    expected_bits = (np.cumsum(bits) > np.cumsum(1 - bits)).astype(float)
    yield "more_ones", more_ones(), bits, expected_bits[-1:], 1

    def target(q):
        return [np.sin(3 * q[0]) + q[1] ** 2]

    n_levels = 8
    query = np.array([0.3, 0.71])
    cell_centre = (np.floor(query * n_levels) + 0.5) / n_levels
    prompt = np.vstack([continuous_query(query, 1), continuous_prompt(target, 2, 1, n_levels)])
    yield (f"continuous 2->1 ({conditional})", continuous_approximator(2, 1, conditional=conditional, value_bound=3),
           prompt, np.array(target(cell_centre)), 1)

    mapping = {(1, 2, 3): (4, 5, 6), (3, 2, 1): (7, 8, 9), (2, 2, 2): (0, 1, 0), (9, 9, 1): (3, 3, 3)}
    query_key = (3, 2, 1)
    yield (f"token_map n=3 ({conditional})", token_map(3, conditional=conditional, vocab_size=10),
           token_prompt(query_key, mapping), np.array(mapping[query_key], dtype=float), 3)


def _format_answer(values: np.ndarray) -> str:
    return " ".join(f"{v:.4g}" for v in np.ravel(values))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsrl.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", choices=("numpy", "kernel"))
    parser.add_argument("--plots", metavar="DIR", type=Path,
                        help="also write every program's graph and every model's summary, layers and weights "
                             "into DIR")
    args = parser.parse_args(argv)
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)

    header = (f"{'program':<38} {'target':<10} {'mode':<8} {'layers':>6} {'widest':>7} {'nnz':>8} "
              f"{'compile s':>9} {'answer':<16} {'expected':<16} {'max |model - interp|':>20}")
    print(header)
    print("-" * len(header))
    # A target that cannot multiply runs the programs built with the ReLU-based conditional.
    registered = available_targets().values()
    multiplying = tuple(t for t in registered if t.multiplies)
    for conditional, targets in (("multiplicative", multiplying),
                                 ("optimized", tuple(t for t in registered if not t.multiplies))):
        for label, program, prompt, expected, n_answer in paper_cases(conditional):
            if conditional == "optimized" and label == "more_ones":
                continue
            reference = program(prompt)
            if args.plots is not None:
                _write_program_picture(args.plots, label, program)
            for architecture in targets:
                target = architecture.name
                for activations in architecture.activations:
                    start = time.perf_counter()
                    try:
                        model = compile_program(program, target=target, activations=activations,
                                                t_max=len(prompt))
                    except CompileError as err:
                        print(f"{label:<38} {target:<10} {activations:<8} not compiled: {err}")
                        continue
                    seconds = time.perf_counter() - start
                    out = model(prompt, backend=args.backend)
                    answer = out[-n_answer:, 0] if n_answer > 1 else out[-1]
                    deviation = float(np.max(np.abs(out - reference)))
                    print(f"{label:<38} {target:<10} {activations:<8} {len(model.layers):>6} "
                          f"{max(model.widths):>7} {model.nnz:>8} {seconds:>9.3f} "
                          f"{_format_answer(answer):<16} {_format_answer(expected):<16} {deviation:>20.3g}")
                    if args.plots is not None:
                        _write_model_pictures(args.plots, label, target, activations, model)
    if args.plots is not None:
        print(f"\npictures and summaries written to {args.plots}/")
    return 0


def _file_stem(label: str) -> str:
    """``continuous 2->1 (multiplicative)`` → ``continuous_2_1_multiplicative``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")


def _write_program_picture(folder: Path, label: str, program) -> None:
    from . import viz
    viz.render(program, folder / f"{_file_stem(label)}.program.svg")


def _write_model_pictures(folder: Path, label: str, target: str, activations: str, model) -> None:
    from . import viz
    stem = f"{_file_stem(label)}.{target}.{activations}"
    (folder / f"{stem}.summary.txt").write_text(model.summary() + "\n", encoding="utf-8")
    viz.render(model, folder / f"{stem}.layers.svg")
    model.plot_weights(folder / f"{stem}.weights.png")


if __name__ == "__main__":
    raise SystemExit(main())
