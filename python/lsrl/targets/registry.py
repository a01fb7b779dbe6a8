"""The target registry: what :func:`lsrl.compile`, :class:`lsrl.Model`, save/load, the executor, the exporters,
``lsrl-opt`` and the demo know about an architecture, and the only place they learn it.

A target is one module that subclasses :class:`Target` and calls :func:`register_target` with an instance.
The op kinds it lowers to are registered by the same module (:func:`lsrl.ir.core.register_op`, with their
numpy semantics and kernel descriptors).  Modules of the ``lsrl.targets`` package register when the package
is imported (:func:`import_package_targets`), modules of other packages by being imported or through the
``lsrl.targets`` entry-point group, loaded when the registry is first listed (docs/adding_a_target.md).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import ClassVar

from ..errors import CompileError, LsrlError
from ..ir.core import Module, Op

__all__ = ["Target", "register_target", "get_target", "available_targets", "default_target", "all_activations",
           "target_of_ops", "unregister_target", "ENTRY_POINT_GROUP", "import_package_targets"]

#: the entry-point group through which an installed package adds targets (each entry names a module to import)
ENTRY_POINT_GROUP = "lsrl.targets"


class Target:
    """One architecture: the op kinds of its lowered modules, its lowering and its exports.

    Class attributes a subclass sets:

    * ``name`` — what ``lsrl.compile(..., target=name)`` selects; ``summary`` — one line for tables.
    * ``op_kinds`` — the op kinds a lowered module holds between its input and its ``linear`` readout.
    * ``activations`` — the activation modes it implements; ``exact_activations`` — the modes whose models
      compute in exact rationals (``exact=True``); the others are approximate (float only).
    * ``layer_form`` — True when the lowered module is the layer form itself (layers are groups of core ops
      opened by a ``linstate``, and the layout and stages metadata have one entry per op); False when every op
      is one layer.
    * ``multiplies`` — whether it can compute a product of two values (``multi``).
    * ``clamp_limits`` — per mode, the largest weight with which a reader may read a step's 0/1 through its clamp
      ``gap − ReLU(gap − u)``; ``materialize-steps`` reads a step read louder as the difference of its units
      (:func:`lsrl.compile` sets its ``clamp_limit``): where a clamp costs more than it saves (the standard GRU
      holds each ReLU in a pair, which it refuses under λ-weights).
    * ``is_default`` — the target :func:`lsrl.compile` uses when none is named (exactly one has it).

    Methods: :meth:`lower` (required), :meth:`layer_groups`, :meth:`layer_info`, and the exports
    :meth:`torch_layer` / :meth:`onnx_layer` for the target's own op kinds (the readout ``linear`` is the
    exporters').
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    op_kinds: ClassVar[frozenset] = frozenset()
    activations: ClassVar[tuple] = ("ideal", "standard")
    exact_activations: ClassVar[tuple] = ("ideal",)
    layer_form: ClassVar[bool] = False
    multiplies: ClassVar[bool] = True
    clamp_limits: ClassVar[dict] = {}
    is_default: ClassVar[bool] = False

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        """The layer form (``debranch``'s output) as a chain of this target's ops ending in a ``linear``
        readout, with ``metadata`` ``target``, ``activations``, ``t_max``, ``stages`` and ``layout``."""
        raise NotImplementedError

    def lowering(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        """:meth:`lower` for an activation mode this target implements (what the ``lower`` pass calls)."""
        if activations not in self.activations:
            raise CompileError(f"{self.name}: activations must be one of {', '.join(map(repr, self.activations))}, "
                               f"got {activations!r}")
        return self.lower(module, activations=activations, t_max=t_max)

    def layer_groups(self, ops: list[Op]) -> list[list[Op]]:
        """The ops of each layer, given the lowered chain without its input and readout."""
        if not self.layer_form:
            return [[op] for op in ops]
        groups: list[list[Op]] = []
        for op in ops:
            if op.kind == "linstate" or not groups:
                groups.append([])
            groups[-1].append(op)
        return groups

    def layer_info(self, group: list[Op]) -> dict:
        """``kind``, ``hidden_size`` and ``output_size`` of one layer (:attr:`lsrl.Model.layers`)."""
        first = group[0]
        return {"kind": first.kind, "hidden_size": first.dim, "output_size": group[-1].dim}

    def torch_layer(self, op: Op, activations: str):
        """A ``torch.nn.Module`` mapping ``(B, T, d)`` to ``(B, T, op.dim)`` like ``op`` (float64)."""
        raise LsrlError(f"to_torch: target {self.name!r} has no torch export for {op.describe()}")

    def torch_layers(self, model) -> list:
        """The torch modules of ``model``'s layers (its readout excluded): :meth:`torch_layer` of each, unless a
        target needs to see the whole model to choose a layer's module."""
        return [self.torch_layer(op, model.activations) for op in model._ops[:-1]]

    def onnx_layer(self, builder, op: Op, x: str, activations: str) -> str:
        """Add ``op`` to the ONNX graph ``builder`` (:class:`lsrl.targets.onnx_export.OnnxBuilder`) reading the
        ``[T, B, d]`` value named ``x``; return the name of its ``[T, B, op.dim]`` output."""
        raise LsrlError(f"to_onnx: target {self.name!r} has no ONNX export for {op.describe()}")

    def to_hf(self, model, path) -> None:
        """Write ``model`` as a Hugging Face ``transformers`` model directory (config, safetensors weights and
        ``lsrl_io.json``) that ``AutoModel.from_pretrained(path)`` loads without lsrl."""
        raise LsrlError(f"to_hf: target {self.name!r} has no Hugging Face export")

    def __repr__(self) -> str:
        return f"<lsrl target {self.name!r}: {', '.join(sorted(self.op_kinds))}>"


_TARGETS: dict[str, Target] = {}
_ENTRY_POINTS_LOADED = False


def register_target(target: Target) -> Target:
    """Add ``target`` to the registry (and its lowering to the ``lower`` pass); returns it.  Registering the
    same class again (a module imported twice) is a no-op; a different target under a taken name is an
    error."""
    if not isinstance(target, Target):
        raise TypeError(f"register_target expects a Target instance, got {type(target).__name__}")
    if not target.name or not target.op_kinds:
        raise ValueError(f"{type(target).__name__}: a target needs a name and its op_kinds")
    existing = _TARGETS.get(target.name)
    if existing is not None:
        if type(existing).__qualname__ == type(target).__qualname__ and \
                type(existing).__module__ == type(target).__module__:
            return existing
        raise ValueError(f"target {target.name!r} is already registered by {type(existing).__module__}")
    from ..passes.lower import register_lowering
    _TARGETS[target.name] = target
    register_lowering(target.name, target.lowering, default=target.is_default)
    return target


def unregister_target(name: str) -> None:
    """Remove a registered target (and its lowering); its op kinds stay registered.  For tests and notebooks
    that register a target for a while."""
    from ..passes.lower import unregister_lowering
    if _TARGETS.pop(name, None) is None:
        raise KeyError(f"no target {name!r} is registered")
    unregister_lowering(name)


def import_package_targets() -> None:
    """Import every target module of this package (its top-level modules; sub-packages hold shared code).
    ``import lsrl.targets`` does it, so the built-in targets and their op kinds exist once lsrl is imported."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg and info.name != "registry":
            importlib.import_module(f"{__package__}.{info.name}")


def _load_entry_points() -> None:
    """Import the modules installed packages name in the ``lsrl.targets`` entry-point group (once)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def available_targets() -> dict[str, Target]:
    """Every registered target by name, in registration order."""
    _load_entry_points()
    return dict(_TARGETS)


def get_target(name: str, who: str = "lsrl") -> Target:
    """The target called ``name``, or a :class:`CompileError` listing the available ones."""
    if not isinstance(name, str):
        raise TypeError(f"{who}: target must be a str, got {name!r}")
    targets = available_targets()
    try:
        return targets[name]
    except KeyError:
        raise CompileError(f"{who}: unknown target {name!r}; available: {', '.join(targets)}") from None


def default_target() -> Target:
    """The target :func:`lsrl.compile` uses when none is named."""
    defaults = [t for t in available_targets().values() if t.is_default]
    if len(defaults) != 1:
        raise LsrlError(f"the registry needs exactly one default target, found {[t.name for t in defaults]}")
    return defaults[0]


def all_activations() -> tuple[str, ...]:
    """Every activation mode some registered target implements."""
    modes: dict[str, None] = {}
    for t in available_targets().values():
        modes.update(dict.fromkeys(t.activations))
    return tuple(modes)


def target_of_ops(kinds: set) -> Target | None:
    """The target whose op kinds cover ``kinds`` most narrowly (a lowered module whose metadata was lost)."""
    fits = [t for t in available_targets().values() if kinds and kinds <= t.op_kinds]
    return min(fits, key=lambda t: len(t.op_kinds)) if fits else None
