"""Drawing benchmark: DOT text and pictures of large programs (docs/inspection.md, "Large programs").

    python benchmarks/viz.py                 # the table (markdown) on stdout: 1,000 and 10,000 ops
    python benchmarks/viz.py --ops 2000,20000 --json out.json
    python benchmarks/viz.py --smoke         # tiny sizes: checks everything still runs (CI)

The programs are chains of sugar blocks (a comparison feeding a conditional, plus a running sum every ten
blocks), as large as asked.  Per program: seconds for the DOT text of every op, for ``render`` with its
defaults (sugar collapsed; Graphviz when ``dot`` is installed and the graph has at most
``lsrl.viz.GRAPHVIZ_NODE_LIMIT`` nodes, matplotlib otherwise), for matplotlib PNGs of the collapsed graph and
of every op, and for a Graphviz PNG where ``render`` would use Graphviz (its layout time grows much faster than
the graph: a minute and more at 1,600 nodes).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

try:
    import lsrl  # noqa: F401
except ImportError:  # a development checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from lsrl import ForEach, Input, LinState, f_ifelse_mul, f_larger  # noqa: E402
from lsrl import viz  # noqa: E402


def sugar_chain(n_ops: int) -> ForEach:
    """A program of about ``n_ops`` live ops: blocks ``pick_k = f_ifelse_mul(f_larger(a, b), a, b)``, each
    reading the two previous picks, with a running sum (a LinState) of every tenth pick."""
    x = Input(2, lower=0, upper=1, name="x")
    a = LinState(x[0], A=[[1]], B=[[1]], name="count_a")
    b = LinState(x[1], A=[[1]], B=[[1]], name="count_b")
    k = 0
    while True:
        pick = f_ifelse_mul(f_larger(a, b, name=f"cmp{k}"), a, b, name=f"pick{k}")
        if k % 10 == 9:
            pick = LinState(pick, A=[[0.5]], B=[[1]], name=f"sum{k}")
        a, b = b, pick
        k += 1
        if k % 20 == 0:
            program = ForEach(b)
            if len(program.ir.ops) >= n_ops:
                return program


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(n_ops: int, folder: Path) -> dict:
    program = sugar_chain(n_ops)
    collapsed = len(viz.graph_of(program).nodes)
    row = {"ops": len(program.ir.live_ops()), "collapsed nodes": collapsed}
    row["DOT s (every op)"] = timed(lambda: viz.to_dot(program, collapse=False))
    # what render() does by default: sugar collapsed, Graphviz when installed and the graph small enough
    uses_graphviz = viz.graphviz_available() and collapsed <= viz.GRAPHVIZ_NODE_LIMIT
    row["render s (default)"] = timed(lambda: viz.render(program, folder / "default.png"))
    row["default engine"] = "graphviz" if uses_graphviz else "matplotlib"
    row["matplotlib s (collapsed)"] = timed(lambda: viz.render(program, folder / "collapsed.png",
                                                                engine="matplotlib"))
    row["matplotlib s (every op)"] = timed(lambda: viz.render(program, folder / "full.png", engine="matplotlib",
                                                               collapse=False))
    row["graphviz s (collapsed)"] = (timed(lambda: viz.render(program, folder / "gv.png", engine="graphviz"))
                                     if uses_graphviz else None)
    return row


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = ["-" if row[k] is None else f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k])
                 for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="1000,10000", help="comma-separated program sizes (live ops)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI: checks everything still runs)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    sizes = [100] if args.smoke else [int(s) for s in args.ops.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, Path(tmp)) for n in sizes]
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
