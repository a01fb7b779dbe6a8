"""``tables.md``: the paper's Fig. 4 tables (experiments.md §2, from the authors' raw data) beside ours."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .protocol import PAPER_SIGMAS, VARIANTS

__all__ = ["PAPER", "paper_median", "format_cell", "markdown_tables"]

# the paper's cells as experiments.md §2 gives them: continuous "mean / median (min–max)", tokens
# "mean (min–max) [median]"; the median is in brackets only where it differs from the mean
PAPER = {
    "continuous": {
        "direct": ("0.036 / 0.025 (0.008–0.22)", "0.038 / 0.025", "0.57 / 0.070 (0.011–3.5)",
                   "1.5e5 / 5.1e3 (0.011–1.3e6)", "7.7e10 / 0.042 (0.014–8.8e11)"),
        "optimized": ("0.033 / 0.025 (0.007–0.22)", "0.033 / 0.025", "0.50 / 0.245 (0.014–2.0)",
                      "0.53 / 0.25 (0.014–2.0)", "1.7e9 / 0.76 (0.014–1.1e10)"),
        "step_optimized": ("0.073 / 0.045 (0.015–0.44)", "2.4e4 / 0.045 (0.015–6.0e5)",
                           "2.9e9 / 9.0e8 (0.018–1.9e10)", "2.1e12 / 0.056 (0.015–1.7e13)",
                           "8.4e15 / 0.049 (0.015–1.0e17)"),
        "multiplicative": ("0.033 / 0.025 (0.007–0.22)", "0.033 / 0.025", "0.39 / 0.041 (0.011–2.0)",
                           "1.8 / 0.041 (0.011–18)", "1.4e3 / 0.037 (0.011–1.1e4)"),
        "multiplicative_optimized": ("0.033 / 0.025 (0.007–0.22)", "0.033 / 0.025", "0.36 / 0.042 (0.011–1.6)",
                                     "1.8 / 0.070 (0.011–11)", "2.7e3 / 0.037 (0.011–3.3e4)"),
    },
    "tokens": {
        "direct": ("89.2 (72–96) [92]", "89.8 (80–96)", "90.9 (82–100)", "99.5 (88–100)", "99.5 (94–100)"),
        "optimized": ("0", "0.24 (0–2) [0]", "69.7 (20–100)", "99.4 (96–100)", "99.6 (90–100)"),
        "step_optimized": ("0", "98.0 (94–100)", "98.9 (96–100)", "100", "96.7 (88–100)"),
        "multiplicative": ("0", "0", "68.8 (0–100) [70]", "99.8 (98–100)", "98.9 (94–100)"),
        "multiplicative_optimized": ("0", "0", "71.8 (8–100) [76]", "99.4 (96–100)", "99.2 (94–100)"),
    },
}


def paper_median(program: str, variant: str, sigma: float) -> float | None:
    """The paper's median of a cell (None for a σ outside the paper's grid)."""
    if sigma not in PAPER_SIGMAS or variant not in PAPER[program]:
        return None
    text = PAPER[program][variant][PAPER_SIGMAS.index(sigma)]
    if program == "continuous":
        return float(text.split(" / ")[1].split(" ")[0])
    if "[" in text:
        return float(text.split("[")[1].rstrip("]"))
    return float(text.split(" ")[0])


def _number(value: float) -> str:
    if not np.isfinite(value):
        return "inf"
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e3:
        return f"{value:.3g}"
    return f"{value:.1e}".replace("e+0", "e").replace("e-0", "e−").replace("e+", "e").replace("e-", "e−")


def format_cell(program: str, scores) -> str:
    """Our cell in the paper's notation."""
    scores = np.asarray(scores, dtype=np.float64)
    if not scores.size:
        return "—"
    mean, median = _number(float(np.mean(scores))), _number(float(np.median(scores)))
    low, high = _number(float(np.min(scores))), _number(float(np.max(scores)))
    if program == "continuous":
        return f"{mean} / {median} ({low}–{high})"
    if low == high:
        return mean
    return f"{mean} ({low}–{high}) [{median}]"


def _sigma_header(sigmas) -> str:
    return " | ".join("none" if s == 0 else _number(s) for s in sigmas)


def markdown_tables(frame: pd.DataFrame) -> str:
    """Markdown: per program, the paper's rows beside ours for every run configuration in ``frame``
    (compile, target, activations, dtype), with the number of seeds per cell."""
    out = ["# Fig. 4 — the paper's tables beside ours", "",
           "Continuous program: average L2 error, `mean / median (min–max)`.  Token program: % wrong tokens, "
           "`mean (min–max) [median]`.  *paper*: experiments.md §2 (25 seeds per cell).  Other rows: "
           "`compile / target / activations / dtype` of this run.", ""]
    configurations = ["compile", "target", "activations", "dtype"]
    for program in ("continuous", "tokens"):
        part = frame[frame["program"] == program]
        if part.empty:
            continue
        sigmas = sorted(part["sigma"].unique())
        seeds = part.groupby(configurations + ["variant", "sigma"])["seed"].nunique()
        out += [f"## {program} (seeds per cell: {int(seeds.min())}–{int(seeds.max())})", "",
                f"| variant | run | {_sigma_header(sigmas)} |", "|---|---|" + "---|" * len(sigmas)]
        for variant in VARIANTS:
            rows = part[part["variant"] == variant]
            if rows.empty:
                continue
            paper = PAPER[program][variant]
            cells = [paper[PAPER_SIGMAS.index(s)] if s in PAPER_SIGMAS else "—" for s in sigmas]
            out.append(f"| {variant} | *paper* | " + " | ".join(cells) + " |")
            for config, group in rows.groupby(configurations, sort=True):
                cells = [format_cell(program, group[group["sigma"] == s]["score"]) for s in sigmas]
                out.append(f"| {variant} | {' / '.join(config)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
