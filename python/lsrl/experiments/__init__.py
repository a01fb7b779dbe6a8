"""The paper's noise-robustness experiment (Fig. 4, ``shared/spec/experiments.md``) and the machinery that
runs grids like it on a Dask cluster: ``lsrl.experiments.fig4(...)`` or the ``lsrl-experiments`` command.

Needs the ``experiments`` extra (dask[distributed], pandas, matplotlib, tqdm); see docs/experiments.md.
"""
from .cli import fig4
from .perturbation import perturb, pinned_outputs, record_clean_states
from .protocol import Instance, ModelKey, grid, make_task, score

__all__ = ["fig4", "grid", "Instance", "ModelKey", "make_task", "score", "perturb", "record_clean_states",
           "pinned_outputs"]
