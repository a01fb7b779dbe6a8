"""``lsrl.Model``: a compiled program lowered to a target architecture (api.md "Compilation").

A model wraps the lowered IR module — a chain ``input → layer → … → layer → linear readout`` whose layers
are its target's ops (:mod:`lsrl.targets`) — and runs it layer by layer over whole sequences with every op's
one numpy semantics (``OpDef.run``) or the C++ executor.  Every layer keeps its recurrent state explicitly,
which is what :meth:`Model.stream` carries from one chunk to the next.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import cached_property
from typing import Iterable, Iterator

import numpy as np

from .assumptions import (OPT_OUT, InputBounds, check_dtype_range, check_finite_outputs, check_sequence_length,
                          recorded_t_max)
from .errors import CompileError, LsrlError, ModelFormatError, PrecisionError, ShapeError
from .inspection import has_exact_constants, op_dense_count, op_nnz
from .ir.core import Module, Op
from .ir.layer_form import check_chain
from .ir.matrix import as_exact_scalar
from .ir.semantics import EvalContext
from .ir.sequences import as_sequences
from .precision import PrecisionReport, dtype_of, measure
from .targets import Target, get_target, target_of_ops

__all__ = ["Model", "load"]

BACKENDS = ("numpy", "kernel")


class Model:
    """A lowered, runnable model.

    ``model(xs)`` maps ``(T, d_in)`` → ``(T, d_out)`` and ``(B, T, d_in)`` → ``(B, T, d_out)`` (a 1-D
    ``xs`` means ``(T, 1)`` when ``d_in == 1``); states start from the stored initial states on every call.
    """

    def __init__(self, module: Module, source: Module | None = None):
        if not isinstance(module, Module):
            raise TypeError(f"Model expects a lowered lsrl.ir.Module, got {type(module).__name__}")
        meta = module.metadata
        if meta.get("target") is None:
            meta = dict(meta, **_infer_target(module))
            module.metadata = meta
        if meta.get("target") is None:
            raise CompileError(f"Model: module @{module.name} is not a lowered module (no metadata 'target', and "
                               "its ops are not those of any registered target)")
        #: the :class:`lsrl.targets.Target` the module was lowered for (``target`` is its name)
        self.architecture: Target = get_target(meta["target"], "Model")
        self.target = self.architecture.name
        self.activations = meta.get("activations", "ideal")
        module.verify()
        check_chain(module, self.architecture.op_kinds, "Model", readout=True, error=CompileError)
        _check_metadata(module, self.architecture, self.activations)
        self.module = module
        self._ops = module.ops[1:]
        #: the program this model was compiled from (what :meth:`check` compares with); None once loaded
        self.source = source
        # the layer form the lowering started from (ideal activations; passes.lower): what error bounds analyse
        self._layer_form = getattr(module, "layer_form", None)
        self._error_bounds: dict[str, np.ndarray | None] = {}
        self._layer_form_ranges = None
        self._source_bound: np.ndarray | None = None
        self._error_tolerance: float | None = None

    # ------------------------------------------------------------------ facts
    @property
    def d_in(self) -> int:
        return self.module.input.dim

    @property
    def d_out(self) -> int:
        return self.module.output.dim

    @property
    def layout(self):
        """Which units of which layer hold which program value (docs/targets.md, "Layout")."""
        return self.module.metadata.get("layout")

    @property
    def dtype(self) -> str:
        """The precision the model was compiled for (``lsrl.compile(dtype=...)``): the default of its runs,
        :meth:`check` and exports."""
        return self.module.metadata.get("dtype", "float64")

    @property
    def dtype_limits(self) -> dict:
        """``{dtype: why}`` for each dtype this model cannot be right in (runs and exports in it raise
        :class:`lsrl.PrecisionError`)."""
        return dict(self.module.metadata.get("dtype_limits", {}))

    def _resolve(self, dtype, backend: str | None, exact: bool, who: str) -> tuple[np.dtype, str]:
        """``dtype`` (None: :attr:`dtype`, or float64 beside ``exact``) and ``backend`` (None: the kernel for
        float32, numpy for float64)."""
        if dtype is None:
            dtype = "float64" if exact else self.dtype
        dtype = dtype_of(dtype, who)
        if exact and backend == "kernel":  # rationals are the numpy semantics' alone
            raise ValueError(f"{who}: exact=True evaluates in rationals with numpy; backend='kernel' cannot")
        if backend is None:
            backend = "numpy" if dtype == np.float64 else "kernel"
        return dtype, backend

    def _check_dtype_limit(self, dtype: np.dtype, who: str) -> None:
        why = self.dtype_limits.get(dtype.name)
        if why is not None:
            raise PrecisionError(f"{who}: this model cannot be right in {dtype.name} (compiled for {self.dtype}): "
                                 f"{why}")
        tolerance = self._error_tolerance
        if tolerance is None:
            return
        bound = self.error_bound_in(dtype)
        if bound is None:
            raise PrecisionError(f"{who}: error_tolerance={tolerance:g} is set but this model has no error bound "
                                 f"in {dtype.name} ({self._no_bound_reason()})")
        worst = float(np.max(bound, initial=0.0))
        if not worst <= tolerance:
            coord = int(np.argmax(bound))
            raise PrecisionError(f"{who}: in {dtype.name} this model's error bound is {worst:.3g} (output {coord}), "
                                 f"above error_tolerance={tolerance:g}")

    # ------------------------------------------------------------------ error bounds
    def error_bound_in(self, dtype) -> np.ndarray | None:
        """A bound on |output − exact output| per output coordinate, for every input sequence inside the input
        bounds and up to :attr:`t_max` steps, the model run in ``dtype`` (docs/numerics.md, "Error bounds"):
        a float64 array of ``d_out`` entries (``inf`` where nothing could be proven), or None where the model
        has none — an activation mode whose lowering does not state the errors its constructions add (a
        third-party target's), or a model loaded or parsed without a saved bound."""
        dtype = dtype_of(dtype, "Model.error_bound_in").name
        if dtype not in self._error_bounds:
            saved = self.module.metadata.get("error_bound", {}).get(dtype)  # a loaded model: what save recorded
            if self._layer_form is not None:
                from .passes.error_bound import output_error_bounds
                from .passes.range_analysis import RangeAnalysis
                if self._layer_form_ranges is None:  # shared by both dtypes' analyses
                    self._layer_form_ranges = RangeAnalysis(self._layer_form, self._layer_form.metadata.get("t_max"))
                self._error_bounds[dtype] = np.array(output_error_bounds(self._layer_form, dtype,
                                                                         ranges=self._layer_form_ranges))
            else:
                self._error_bounds[dtype] = None if saved is None else np.array([float(v) for v in saved])
        bound = self._error_bounds[dtype]
        return None if bound is None else bound.copy()

    @property
    def error_bound(self) -> np.ndarray | None:
        """:meth:`error_bound_in` the model's :attr:`dtype`."""
        return self.error_bound_in(self.dtype)

    def _no_bound_reason(self) -> str:
        if self.activations != "ideal":
            return (f"{self.activations} activations add approximation errors that the {self.architecture.name} "
                    "lowering does not state")
        return "it has no layer form to analyse and was saved or parsed without one"

    @property
    def error_tolerance(self) -> float | None:
        """The largest :attr:`error_bound` (absolute) this model's runs, streams, checks and exports accept: with a
        tolerance set, one in a dtype whose bound exceeds it (or that has no bound) raises
        :class:`lsrl.PrecisionError`.  None (the default): no such check."""
        return self._error_tolerance

    @error_tolerance.setter
    def error_tolerance(self, value) -> None:
        if value is not None and not (isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
                                      and value >= 0):
            raise ValueError(f"Model.error_tolerance must be a number >= 0 or None, got {value!r}")
        self._error_tolerance = None if value is None else float(value)

    @property
    def exact(self) -> bool:
        """True when some weight is an exact rational that is not a float64."""
        return has_exact_constants(self._ops)

    def _layer_groups(self) -> list[list[Op]]:
        return self.architecture.layer_groups(self._ops[:-1])

    @property
    def layers(self) -> list[dict]:
        """One dict per target layer: ``kind``, ``input_size``, ``hidden_size`` (state/hidden width),
        ``stage`` (S/R/M for the recurrent targets), ``nnz``; linear RNN layers also list their ``ops``."""
        stages = self.module.metadata.get("stages") or []
        out = []
        for i, group in enumerate(self._layer_groups()):
            info = {"index": i, "input_size": group[0].operands[0].dim, "nnz": sum(op_nnz(op) for op in group)}
            info.update(self.architecture.layer_info(group))
            if not self.architecture.layer_form and i < len(stages) and isinstance(stages[i], dict):
                info["stage"] = stages[i].get("stage")
            out.append(info)
        return out

    @property
    def widths(self) -> list[int]:
        """The length of every vector computed per step: each state/hidden vector and every MLP vector
        (for a layer-form target every op's output), then the readout's output."""
        return [op.dim for op in self._ops]

    @property
    def parameter_count(self) -> int:
        """Stored non-zero parameters (weights, biases, initial states), the readout included."""
        return sum(op_nnz(op) for op in self._ops)

    @property
    def nnz(self) -> int:
        """Same as :attr:`parameter_count` (compile.md §8)."""
        return self.parameter_count

    @property
    def dense_parameter_count(self) -> int:
        """Entries of every matrix and vector as if stored densely (the reference's ``parameter_count``)."""
        return sum(op_dense_count(op) for op in self._ops)

    def summary(self, as_dict: bool = False):
        """A table with one row per target layer: index, target op, stage, input size, width, state size
        (numbers carried between tokens), dense and stored (nnz) parameters and the program values the layer
        holds (from :attr:`layout`), then the readout and the totals.  ``as_dict=True`` returns the same
        facts as a dict (``layers``, ``readout``, ``totals``, ...)."""
        from .inspection import summary_dict, summary_text
        return summary_dict(self) if as_dict else summary_text(self)

    def plot_weights(self, path, layers=None):
        """Draw every matrix of the model as a heatmap with named rows and columns into ``path`` (``.png``
        or ``.svg``) and return the path.

        ``layers``: the layer indices to draw (``"readout"`` for the readout), default all.  Needs the
        ``plot`` extra (matplotlib); see :func:`lsrl.viz.plot_weights`."""
        from .viz import plot_weights
        return plot_weights(self, path, layers=layers)

    def __repr__(self) -> str:
        return (f"<lsrl.Model target={self.target} activations={self.activations} "
                f"dtype={'exact' if self.exact else self.dtype}: {self.d_in} -> {self.d_out}, "
                f"{len(self.layers)} layers, widest {max(self.widths)}, nnz {self.parameter_count}>")

    # ------------------------------------------------------------------ running
    def _prepare(self, xs, exact: bool) -> tuple[np.ndarray, bool]:
        # exact: lists become object arrays, so Python ints and Fractions stay exact
        arr, batched = as_sequences(xs, self.d_in, who="Model", subject="the model's input", keep_exact=exact,
                                    copy=True, list_dtype=object if exact else None)
        if exact:
            conv = np.frompyfunc(as_exact_scalar, 1, 1)(arr) if arr.size else np.empty(arr.shape, dtype=object)
            return np.asarray(conv, dtype=object).reshape(arr.shape), batched
        return arr, batched

    def initial_states(self, batch: int = 1, exact: bool = False) -> list:
        """The state of every layer before the first step (``None`` for stateless ops)."""
        return [None for _ in self._ops]

    def _run(self, x: np.ndarray, states: list, exact: bool, backend: str,
             dtype: np.dtype = np.dtype(np.float64)) -> tuple[np.ndarray, list]:
        if backend not in BACKENDS:
            raise ValueError(f"Model: backend must be one of {BACKENDS}, got {backend!r}")
        if exact and self.activations not in self.architecture.exact_activations:
            raise LsrlError(f"Model: a {self.target} model with {self.activations} activations cannot run in exact "
                            f"arithmetic (exact modes of {self.target}: {', '.join(self.architecture.exact_activations) or 'none'})")
        if dtype != np.float64 and (exact or backend != "kernel"):
            raise ValueError(f"Model: dtype={dtype.name!r} runs in the C++ executor: use backend='kernel' "
                             "(the numpy backend and exact=True compute in float64 / rationals)")
        if backend == "kernel" and not exact:
            # the C++ executor runs the whole chain (all op kinds) with the time loop in C++; its states are
            # this class's states (one entry per op after the input)
            # a lazy import, the one place the model reaches the runtime layer above it (the executor runs any
            # module and never imports the model): the C++ extension loads on the first kernel run only
            from .runtime.executor import run as run_kernel
            y, new_states = run_kernel(self.module, x, states, dtype=dtype)
            return y, list(new_states)
        ctx = EvalContext(exact=exact, backend="numpy", batch=x.shape[0], length=x.shape[1])
        new_states = []
        for op, state in zip(self._ops, states):
            x, state = op.opdef.run(op, [x], state, ctx)
            new_states.append(state)
        return x, new_states

    @property
    def t_max(self) -> int | None:
        """The longest sequence the model was compiled for (None: any length)."""
        return recorded_t_max(self.module)

    @cached_property
    def _input_bounds(self) -> InputBounds:
        return InputBounds(self.module.input)

    def _check_inputs(self, x: np.ndarray, first_step: int, who: str) -> None:
        """The run's assumptions (docs/targets.md, "The Model"): length within ``t_max``, inputs in bounds."""
        check_sequence_length(self.t_max, x.shape[1], who, first_step=first_step, hint=OPT_OUT)
        self._input_bounds.check(x, who, first_step=first_step, hint=OPT_OUT)

    def __call__(self, xs, backend: str | None = None, *, exact: bool = False, check_assumptions: bool = True,
                 dtype=None):
        """Outputs for ``xs`` (``(T, d_in)`` or ``(B, T, d_in)``); ``exact=True`` evaluates in rationals
        (ideal-mode models only).  ``backend="kernel"`` runs the whole model in the C++ executor
        (``lsrl.runtime.executor``; a RuntimeError when the extension is not built); exact evaluation is
        always numpy.  ``dtype="float32"`` (kernel only) runs weights, inputs and arithmetic in float32 and
        returns float32; :meth:`check` says whether the model is right in it.  Defaults: ``dtype`` the model's
        :attr:`dtype`, ``backend`` numpy for float64 and the kernel for float32.

        ``check_assumptions`` (default True) raises :class:`lsrl.SequenceLengthError` for a sequence longer
        than :attr:`t_max`, :class:`lsrl.InputDomainError` for an input outside the input bounds,
        :class:`lsrl.NumericRangeError` when an output overflows to inf/NaN and :class:`lsrl.PrecisionError`
        for a dtype in :attr:`dtype_limits`; False skips the checks."""
        dtype, backend = self._resolve(dtype, backend, exact, "Model")
        x, batched = self._prepare(xs, exact)
        if check_assumptions:
            self._check_dtype_limit(dtype, "Model")
            self._check_inputs(x, 0, "Model")
            check_dtype_range(x, dtype, "Model", hint=OPT_OUT)
        y, _ = self._run(x, self.initial_states(), exact, backend, dtype)
        if check_assumptions:
            check_finite_outputs(y, "Model", hint=OPT_OUT)
        return y if batched else y[0]

    def stream(self, chunks: Iterable, backend: str | None = None, *, exact: bool = False,
               check_assumptions: bool = True, dtype=None) -> Iterator[np.ndarray]:
        """Run over a long sequence given in consecutive chunks, carrying every layer's state across chunk
        boundaries; yields each chunk's outputs.  Memory is independent of the total length.

        All chunks must have the same rank and batch size (``(T_i, d_in)`` or ``(B, T_i, d_in)``).
        ``check_assumptions`` checks every chunk as :meth:`__call__` does, against the running length;
        ``dtype`` and ``backend`` as in :meth:`__call__`."""
        dtype, backend = self._resolve(dtype, backend, exact, "Model.stream")
        if check_assumptions:
            self._check_dtype_limit(dtype, "Model.stream")
        states = self.initial_states()
        batch = None
        steps_done = 0
        for chunk in chunks:
            x, batched = self._prepare(chunk, exact)
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise ShapeError(f"Model.stream: chunks must keep the batch size {batch}, got {x.shape[0]}")
            if check_assumptions:
                self._check_inputs(x, steps_done, "Model.stream")
                check_dtype_range(x, dtype, "Model.stream", first_step=steps_done, hint=OPT_OUT)
            y, states = self._run(x, states, exact, backend, dtype)
            if check_assumptions:
                check_finite_outputs(y, "Model.stream", first_step=steps_done, hint=OPT_OUT)
            steps_done += x.shape[1]
            yield y if batched else y[0]

    def check(self, xs, *, dtype=None, backend: str | None = None, tolerance: float | None = None,
              program=None, raise_on_failure: bool = False, oracle: str = "float64") -> PrecisionReport:
        """How far the model's outputs on ``xs`` are from its program's, run in ``dtype`` (default: the model's
        :attr:`dtype`; a dtype in :attr:`dtype_limits` raises :class:`lsrl.PrecisionError`).

        The oracle is ``program`` (default: :attr:`source`, the program :func:`lsrl.compile` was given) in the
        float64 interpreter, or with ``oracle="exact"`` in exact rational arithmetic, rounded to float64 once
        (milliseconds per step: for short prompts; a float64 oracle is itself off by its own bound, which for a
        program that multiplies a rounded step by λ = 1e10 says nothing).  ``backend``: default ``"kernel"`` when
        the C++ extension is built (required for float32), else ``"numpy"``.  The report also holds the program's
        own error when run op by op in ``dtype`` (the C++ executor), the yardstick of what ``dtype`` allows.
        ``tolerance`` is relative to the largest oracle output (default :data:`lsrl.precision.DEFAULT_TOLERANCE`);
        ``raise_on_failure=True`` raises :class:`lsrl.PrecisionError` when the model is outside it.
        ``bool(report)`` is ``report.within``.  ``report.bound`` is the largest :meth:`error_bound_in` ``dtype``
        (widened by the float64 oracle's own bound, or by the exact oracle's rounding to float64) and
        ``report.within_bound`` whether every output is within its bound (None without a bound).
        """
        from .ir.core import as_module
        from .ir.interpreter import interpret
        from .runtime import kernel_available

        dtype = dtype_of(self.dtype if dtype is None else dtype, "Model.check")
        if oracle not in ("float64", "exact"):
            raise ValueError(f"Model.check: oracle must be 'float64' or 'exact', got {oracle!r}")
        program = self.source if program is None else as_module(program, "Model.check")
        if program is None:
            raise LsrlError("Model.check: this model does not know its program (it was loaded from a file or "
                            "built from a module); pass program=<the program it was compiled from>")
        if (program.input.dim, program.output.dim) != (self.d_in, self.d_out):
            raise ShapeError(f"Model.check: the program maps {program.input.dim} -> {program.output.dim} but the "
                             f"model maps {self.d_in} -> {self.d_out}")
        have_kernel = kernel_available()
        backend = ("kernel" if have_kernel else "numpy") if backend is None else backend
        model_out = self(xs, backend, dtype=dtype)
        exact = oracle == "exact"
        oracle = interpret(program, xs, exact=exact)
        oracle_bound = None
        if exact:  # rounded once to float64: off by at most an ulp where it is not a float64 value
            exact_out, oracle = oracle, np.asarray(oracle, dtype=np.float64)
            oracle_bound = np.array([0.0 if Fraction(o) == e else float(np.spacing(abs(o)))
                                     for o, e in zip(oracle.ravel().tolist(), exact_out.ravel().tolist())],
                                    dtype=np.float64).reshape(oracle.shape)
        program_out = None
        if have_kernel:
            from .runtime.executor import run as run_kernel
            program_out, _ = run_kernel(program, xs, dtype=dtype)
        bound = self.error_bound_in(dtype)
        if bound is not None:
            bound = bound + (oracle_bound if exact else self._oracle_bound(program))
        report = measure(model_out, oracle, program_out, dtype, tolerance, bound)
        if raise_on_failure and not report.within:
            raise PrecisionError(f"model @{self.module.name} ({self.target}, {self.activations}) is outside its "
                                 f"tolerance: {report.describe()}")
        return report

    def _oracle_bound(self, program) -> np.ndarray:
        """The error bound of ``program`` run by the float64 interpreter (the oracle's own rounding widens what
        :meth:`check` allows); analysed once for :attr:`source`."""
        from .passes.error_bound import output_error_bounds
        if program is self.source and self._source_bound is not None:
            return self._source_bound
        bound = np.array(output_error_bounds(program, "float64", self.t_max))
        if program is self.source:
            self._source_bound = bound
        return bound

    # ------------------------------------------------------------------ persistence and exports
    def save(self, path) -> None:
        """Write ``weights.safetensors`` + ``model.json`` (a directory, or ``path`` as a file prefix); the error
        bounds in both dtypes go with the metadata (a loaded model has no layer form to analyse)."""
        from .serialization import save_model
        bounds = {name: self.error_bound_in(name) for name in ("float64", "float32")}
        if all(b is not None for b in bounds.values()):
            self.module.metadata["error_bound"] = {name: b.tolist() for name, b in bounds.items()}
        save_model(self, path)

    def to_torch(self):
        """A ``torch.nn.Module`` in the model's :attr:`dtype` (one torch module per layer — the architecture's
        own recurrent module where torch has one — and the readout) taking ``(B, T, d_in)`` and returning
        ``(B, T, d_out)``."""
        from .targets.shared.torch_export import to_torch
        self._check_dtype_limit(np.dtype(self.dtype), "to_torch")
        module = to_torch(self)
        return module.float() if self.dtype == "float32" else module

    def to_hf(self, path) -> None:
        """Write a Hugging Face model directory (``config.json``, ``model.safetensors``, ``lsrl_io.json`` with the
        I/O contract) that ``transformers.AutoModel.from_pretrained(path)`` loads; targets with an HF model
        class only (docs/targets.md)."""
        self._check_dtype_limit(np.dtype(self.dtype), "to_hf")
        self.architecture.to_hf(self, path)

    def to_onnx(self, path, *, dtype=None, **options):
        """Write an ONNX model (input ``x`` ``[T, B, d_in]``, output ``y`` ``[T, B, d_out]``) in ``dtype``
        (default: the model's :attr:`dtype`): float32 uses the standard recurrent ops (standard-mode gated cells
        a ``Scan``, docs/targets.md), float64 ``Scan`` layers.  A dtype in :attr:`dtype_limits` raises
        :class:`lsrl.PrecisionError`."""
        from .targets.shared.onnx_export import to_onnx
        dtype = dtype_of(self.dtype if dtype is None else dtype, "to_onnx", LsrlError)
        self._check_dtype_limit(dtype, "to_onnx")
        return to_onnx(self, path, dtype=dtype.name, **options)


def load(path) -> Model:
    """Load a model saved by :meth:`Model.save` (validates everything; never executes code)."""
    from .serialization import model_paths, read_module
    module = read_module(path)
    try:
        return Model(module)
    except LsrlError as e:
        raise ModelFormatError(f"{model_paths(path)[0]}: model: {e}") from None


def _infer_target(module: Module) -> dict:
    """Target and activations of a lowered module whose metadata was lost (e.g. parsed from text)."""
    target = target_of_ops({op.kind for op in module.ops[1:-1]})
    if target is None:
        return {}
    modes = {op.attrs["activations"] for op in module.ops[1:-1] if "activations" in op.attrs}
    return {"target": target.name, "activations": modes.pop() if len(modes) == 1 else "ideal"}


def _check_metadata(module: Module, target: Target, activations: str) -> None:
    """The metadata must describe the ops: what ``Model`` reports (activations, ``layers``, ``summary``) and
    enforces (``t_max``) comes from it."""
    from .assumptions import validate_t_max

    def fail(where: str, message: str):
        raise CompileError(f"Model: metadata.{where}: {message}")

    if activations not in target.activations:
        fail("activations", f"unknown activations {activations!r} for target {target.name!r}")
    ops = module.ops
    layers = ops[1:-1]
    for i, op in enumerate(layers):
        if "activations" in op.attrs and op.attrs["activations"] != activations:
            fail("activations", f"the model says {activations!r} but {op.describe()} has activations "
                                f"{op.attrs['activations']!r}")
    meta = module.metadata
    if "standard" in meta and (activations != "standard" or activations in target.exact_activations):
        fail("standard", f"standard-mode constants in a {target.name}/{activations} model")
    validate_t_max(meta.get("t_max"), "Model: metadata", CompileError)
    if meta.get("dtype", "float64") not in ("float64", "float32"):
        fail("dtype", f"expected 'float64' or 'float32', got {meta['dtype']!r}")
    limits = meta.get("dtype_limits", {})
    if not isinstance(limits, dict) or not all(k in ("float64", "float32") and isinstance(v, str)
                                               for k, v in limits.items()):
        fail("dtype_limits", "expected an object mapping 'float64'/'float32' to a reason")
    if meta.get("dtype", "float64") in limits:
        fail("dtype_limits", f"the model's own dtype {meta['dtype']!r} is listed")
    bounds = meta.get("error_bound", {})
    if not isinstance(bounds, dict) or not all(
            k in ("float64", "float32") and isinstance(v, list) and len(v) == module.output.dim
            and all(e == "inf" or isinstance(e, (int, float)) and not isinstance(e, bool) and e >= 0 for e in v)
            for k, v in bounds.items()):
        fail("error_bound", f"expected an object mapping 'float64'/'float32' to {module.output.dim} numbers >= 0 "
                            "(or 'inf')")
    # a layer-form target records one stage per op (the input included); the others one per layer
    expected_stages = len(ops) if target.layer_form else len(layers)
    stages = meta.get("stages")
    if stages is not None:
        if not isinstance(stages, list) or len(stages) != expected_stages:
            fail("stages", f"expected a list of {expected_stages} stages (one per "
                           f"{'op' if target.layer_form else 'layer'})")
        for i, stage in enumerate(stages):
            if not isinstance(stage, dict) or not isinstance(stage.get("stage"), str):
                fail(f"stages[{i}]", "expected an object with a string 'stage'")
    layout = meta.get("layout")
    if layout is not None:
        if not isinstance(layout, list) or len(layout) != len(ops):
            fail("layout", f"expected a list of {len(ops)} entries (one per op, the input included)")
        _check_layout(layout, ops, fail)


_SLOT_KEYS = frozenset({"role", "terms", "of", "index", "constant"})
_LAYER_KEYS = frozenset({"stage", "values", "units", "decode"})


def _check_layout(layout: list, ops: list, fail) -> None:
    """Each entry of ``layout`` as inspection and the plots read it (docs/targets.md, "Layout"): an op's slots
    (a list of one slot per coordinate), or a target layer ``{"stage", "values", "units", "decode"}``."""
    def index(value, where: str, end: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (end is not None and value >= end):
            fail(where, f"expected an integer in [0, {end if end is not None else '∞'}), got {str(value)[:40]!r}"
                        + (" (there is nothing to refer to)" if end == 0 else ""))
        return value

    def coefficient(value, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or \
                (isinstance(value, float) and not math.isfinite(value)):
            fail(where, f"expected a number or a rational string, got {str(value)[:40]!r}")

    def slots(entry, where: str, next_width: int | None) -> None:
        if not isinstance(entry, list):
            fail(where, "expected a list of slots")
        for k, slot in enumerate(entry):
            at = f"{where}[{k}]"
            if not isinstance(slot, dict) or not isinstance(slot.get("role"), str) or set(slot) - _SLOT_KEYS:
                fail(at, f"expected a slot: an object with a string 'role' and only {sorted(_SLOT_KEYS)}")
            terms = slot.get("terms", [])
            if not isinstance(terms, list):
                fail(f"{at}.terms", "expected a list of [name, index, coefficient]")
            for n, term in enumerate(terms):
                if not isinstance(term, list) or len(term) != 3 or not isinstance(term[0], str):
                    fail(f"{at}.terms[{n}]", "expected [name, index, coefficient]")
                index(term[1], f"{at}.terms[{n}][1]")
                coefficient(term[2], f"{at}.terms[{n}][2]")
            if slot.get("constant") is not None:
                coefficient(slot["constant"], f"{at}.constant")
            if slot.get("index") is not None:
                index(slot["index"], f"{at}.index")
            if slot.get("of") is not None:  # a slot of the next op
                index(slot["of"], f"{at}.of", next_width)

    for i, (entry, op) in enumerate(zip(layout, ops)):
        where = f"layout[{i}]"
        following = layout[i + 1] if i + 1 < len(layout) else None
        if not isinstance(entry, dict):
            slots(entry, where, len(following) if isinstance(following, list) else 0)
            if len(entry) != op.dim:
                fail(where, f"{len(entry)} slots for {op.describe()} of {op.dim} coordinates")
            continue
        if set(entry) - _LAYER_KEYS or not isinstance(entry.get("stage", ""), str):
            fail(where, f"expected a layer: an object with only {sorted(_LAYER_KEYS)} and a string 'stage'")
        values = entry.get("values", [])
        slots(values, f"{where}.values", None)
        blocks = entry.get("units", [])
        if not isinstance(blocks, list):
            fail(f"{where}.units", "expected a list of unit blocks")
        for n, block in enumerate(blocks):
            at = f"{where}.units[{n}]"
            if not isinstance(block, dict) or set(block) != {"role", "start", "end"} or \
                    not isinstance(block["role"], str):
                fail(at, "expected {role, start, end}")
            if index(block["start"], f"{at}.start") > index(block["end"], f"{at}.end", op.dim + 1):
                fail(at, "start is past end")
        decode = entry.get("decode", [])
        if not isinstance(decode, list):
            fail(f"{where}.decode", "expected a list of [slot, unit, coefficient]")
        for n, triple in enumerate(decode):
            if not isinstance(triple, list) or len(triple) != 3:
                fail(f"{where}.decode[{n}]", "expected [slot, unit, coefficient]")
            index(triple[0], f"{where}.decode[{n}][0]", len(values))
            index(triple[1], f"{where}.decode[{n}][1]", op.dim)
            coefficient(triple[2], f"{where}.decode[{n}][2]")
