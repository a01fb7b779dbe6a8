"""Execution runtime: fast primitives shared by the interpreter and the compiled models.

``linear_scan(A, U, s0, backend="kernel"|"numpy")`` runs ``s_t = A s_{t-1} + u_t`` over a batch of sequences;
``kernel_available()`` says whether the C++ extension ``lsrl._kernel`` is importable.
"""

from .scan import BACKENDS, STRUCTURES, kernel_available, linear_scan, scan_structure

__all__ = ["linear_scan", "kernel_available", "scan_structure", "BACKENDS", "STRUCTURES"]
