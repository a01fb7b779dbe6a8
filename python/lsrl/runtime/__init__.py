"""Execution runtime: the C++ kernel and its Python front ends (above ``lsrl.ir``: it reads modules).

* ``linear_scan(A, U, s0, backend="kernel"|"numpy")`` runs ``s_t = A s_{t-1} + u_t`` over a batch of sequences
  (:mod:`lsrl.scan`, below ``ir``: the ``linstate`` semantics use it); ``kernel_available()`` says whether
  ``lsrl._kernel`` is importable.
* ``executor.run(module, xs, states=None, dtype=np.float64)`` runs a whole compiled model's module or a program
  in one kernel call (``model(xs, backend="kernel")`` runs it too, checking what the model was compiled for);
  ``executor.stream`` carries the states across chunks.
"""

from . import executor
from ..scan import BACKENDS, STRUCTURES, kernel_available, linear_scan, scan_structure

__all__ = ["linear_scan", "kernel_available", "scan_structure", "BACKENDS", "STRUCTURES", "executor"]
