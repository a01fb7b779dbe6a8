"""Target architectures: one module per architecture, found through the registry (:mod:`.registry`).

Each target module declares its op kinds (attributes, one numpy semantics, kernel descriptor), its ideal and
standard lowering of the layer form and its exports, and registers a :class:`Target`;
:func:`available_targets` lists them (every module of this package registers on import; modules named by
the ``lsrl.targets`` entry points of installed packages when the registry is first listed).  What the target modules share lives in
:mod:`lsrl.targets.shared`.  docs/adding_a_target.md walks through writing one.
"""
from .registry import (ENTRY_POINT_GROUP, Target, all_activations, available_targets, default_target, get_target,
                       import_package_targets, register_target, target_of_ops, unregister_target)

import_package_targets()

__all__ = ["Target", "register_target", "get_target", "available_targets", "default_target", "all_activations",
           "target_of_ops", "unregister_target", "ENTRY_POINT_GROUP"]
