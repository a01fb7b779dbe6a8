"""Strip plots of Fig. 4: one panel per σ, the variants side by side, every instance a dot, the paper's median
of each cell a black bar; log y for the continuous program.  One row of panels per run configuration."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .protocol import VARIANTS
from .tables import paper_median

__all__ = ["strip_plot"]

SHORT_NAMES = {"direct": "dir", "optimized": "opt", "step_optimized": "step", "multiplicative": "mul",
               "multiplicative_optimized": "mul-opt"}
CONFIGURATION = ["compile", "target", "activations", "dtype"]
# the continuous scores span 1e-3 .. 1e17; a blow-up beyond the float range is drawn at the top
CONTINUOUS_CEILING = 1e20


def strip_plot(frame: pd.DataFrame, program: str, path: Path) -> Path:
    """Draw ``program``'s rows of ``frame`` into ``path`` (PNG) and return the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = frame[frame["program"] == program]
    if part.empty:
        raise ValueError(f"strip_plot: no rows for program {program!r}")
    sigmas = sorted(part["sigma"].unique())
    configurations = list(part.groupby(CONFIGURATION, sort=True))
    variants = [v for v in VARIANTS if v in set(part["variant"])]
    figure, axes = plt.subplots(len(configurations), len(sigmas), squeeze=False, sharey=True,
                                figsize=(1.9 * len(sigmas) + 0.6, 2.0 * len(configurations) + 0.5))
    jitter = np.random.default_rng(0)  # dot placement only; does not touch any result
    for row, (config, rows) in enumerate(configurations):
        for column, sigma in enumerate(sigmas):
            ax = axes[row, column]
            for x, variant in enumerate(variants):
                scores = rows[(rows["variant"] == variant) & (rows["sigma"] == sigma)]["score"].to_numpy()
                if program == "continuous":
                    scores = np.clip(np.nan_to_num(scores, nan=CONTINUOUS_CEILING, posinf=CONTINUOUS_CEILING),
                                     1e-4, CONTINUOUS_CEILING)
                ax.scatter(x + jitter.uniform(-0.25, 0.25, len(scores)), scores, s=5, alpha=0.6,
                           color=f"C{x}", linewidths=0)
                median = paper_median(program, variant, float(sigma))
                if median is not None and config[0] == "reference":
                    ax.hlines(max(median, 1e-4) if program == "continuous" else median, x - 0.35, x + 0.35,
                              color="black", linewidth=1.2)
            if program == "continuous":
                ax.set_yscale("log")
            ax.set_xticks(range(len(variants)), [SHORT_NAMES[v] for v in variants], fontsize=6, rotation=45)
            ax.tick_params(axis="y", labelsize=6)
            if row == 0:
                ax.set_title("σ = none" if sigma == 0 else f"σ = {sigma:.0e}", fontsize=8)
            if column == 0:
                ax.set_ylabel(("L2 error" if program == "continuous" else "% wrong") + "\n" + "/".join(config),
                              fontsize=6)
    figure.suptitle(f"Fig. 4, {program} program (black bars: the paper's medians)", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
