"""Helpers for passes that rewrite modules: a use-tracking :class:`Rewriter`, a greedy pattern driver and
the canonical form of constants.

A :class:`Rewriter` wraps a module while it is being rewritten: it knows every op's users, creates ops
(remembering where they belong in the op order), redirects uses, and :meth:`Rewriter.finish` writes back a
topologically ordered op list without dead ops (the input op always stays).  Ops are never mutated in
place except for re-pointing operands, so an op keeps computing the same value for its whole life — which
is what lets analyses (ranges, constants) be memoised across rewrites.

**Constants** have one canonical form: ``linear %input {A = zeros<m x d_in>, b = value}``.  Any ``linear``
whose ``A`` has no non-zero entry is a constant, whatever its operand; :func:`constant_value` reads it.
"""
from __future__ import annotations

import heapq
from typing import Callable, Iterable

from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector
from . import forget_analyses

__all__ = ["Rewriter", "apply_patterns", "is_constant", "constant_value", "make_constant", "topological_order"]


def is_constant(op: Op) -> bool:
    """True for a ``linear`` with an all-zero ``A`` (its value is its bias at every step)."""
    return op.kind == "linear" and op.attrs["A"].nnz == 0


def constant_value(op: Op) -> Vector | None:
    return op.attrs["b"] if is_constant(op) else None


def make_constant(input_op: Op, value: Vector, **kw) -> Op:
    """The canonical constant op: ``linear input {A = 0, b = value}``."""
    return Op("linear", [input_op], {"A": Matrix.zeros(len(value), input_op.dim), "b": value}, **kw)


def topological_order(output: Op, input_op: Op | None, priority: dict[int, tuple]) -> list[Op]:
    """Ops reaching ``output`` (plus ``input_op``) in a topological order; among ready ops the one with the
    smallest ``priority[id(op)]`` comes first (ops without a priority go last, in discovery order)."""
    reach: dict[int, Op] = {}
    stack = [output] + ([input_op] if input_op is not None else [])
    while stack:
        op = stack.pop()
        if id(op) in reach:
            continue
        reach[id(op)] = op
        stack.extend(o for o in op.operands if id(o) not in reach)
    pending = {}
    users: dict[int, list[Op]] = {}
    for op in reach.values():
        distinct = {id(o) for o in op.operands}
        pending[id(op)] = len(distinct)
        for oid in distinct:
            users.setdefault(oid, []).append(op)
    fallback = (float("inf"),)
    heap = []
    for n, op in enumerate(reach.values()):
        if pending[id(op)] == 0:
            heapq.heappush(heap, (priority.get(id(op), fallback), n, op))
    order_n = {id(op): n for n, op in enumerate(reach.values())}
    out: list[Op] = []
    while heap:
        _, _, op = heapq.heappop(heap)
        out.append(op)
        for user in users.get(id(op), ()):
            pending[id(user)] -= 1
            if pending[id(user)] == 0:
                heapq.heappush(heap, (priority.get(id(user), fallback), order_n[id(user)], user))
    if len(out) != len(reach):
        from ..errors import VerifyError
        raise VerifyError("the rewritten graph has a cycle")
    return out


class Rewriter:
    """Use-tracking edits of a module (see the module docstring)."""

    def __init__(self, module: Module):
        self.module = module
        self.input = module.input
        self.users: dict[int, list[Op]] = {id(op): [] for op in module.ops}
        self._ops: dict[int, Op] = {id(op): op for op in module.ops}
        self._priority: dict[int, tuple] = {id(op): (float(i), 0) for i, op in enumerate(module.ops)}
        self._counter = 0
        self.anchor: Op | None = None  # new ops are placed just before this op
        self.changed = False
        self.created: list[Op] = []
        for op in module.ops:
            for o in op.operands:
                self.users.setdefault(id(o), []).append(op)

    # ------------------------------------------------------------------ queries
    def uses(self, op: Op) -> int:
        """Number of uses (an op reading ``op`` twice counts twice; being the output counts once)."""
        return len(self.users.get(id(op), ())) + (self.module.output is op)

    def single_use(self, op: Op) -> bool:
        return self.uses(op) == 1

    def alive(self, op: Op) -> bool:
        return id(op) in self._ops

    # ------------------------------------------------------------------ edits
    def create(self, kind: str, operands: Iterable[Op], attrs: dict | None = None, *, name: str | None = None,
               loc=None) -> Op:
        op = Op(kind, operands, attrs, name=name, loc=loc)
        return self.add(op)

    def add(self, op: Op) -> Op:
        """Register an op built by the caller (its operands must be alive)."""
        if id(op) in self._ops:
            return op
        self._ops[id(op)] = op
        self.users.setdefault(id(op), [])
        for o in op.operands:
            self.users.setdefault(id(o), []).append(op)
        self._counter += 1
        base = self._priority.get(id(self.anchor), (float("inf"), 0)) if self.anchor is not None else \
            (float("inf"), 0)
        self._priority[id(op)] = (base[0] - 0.5, self._counter)
        self.created.append(op)
        self.changed = True
        return op

    def constant(self, value: Vector, **kw) -> Op:
        return self.add(make_constant(self.input, value, **kw))

    def set_operands(self, op: Op, operands: list[Op]) -> None:
        for o in op.operands:
            self.users[id(o)].remove(op)
        op.operands = list(operands)
        for o in op.operands:
            self.users.setdefault(id(o), []).append(op)
        self.changed = True

    def replace(self, old: Op, new: Op) -> None:
        """Redirect every use of ``old`` (and the module output) to ``new``, then erase ``old`` when dead.
        ``new`` inherits ``old``'s name and location when it has none."""
        if old is new:
            return
        self.add(new)
        if new.name is None and old.name is not None:
            new.name, new.loc = old.name, new.loc or old.loc
        for user in list(dict.fromkeys(self.users.get(id(old), ()))):
            user.operands = [new if o is old else o for o in user.operands]
            n = sum(1 for o in user.operands if o is new)
            self.users[id(new)].extend([user] * n)
        self.users[id(old)] = []
        if self.module.output is old:
            self.module.output = new
        self.changed = True
        self.erase_if_dead(old)

    def erase_if_dead(self, op: Op) -> None:
        stack = [op]
        while stack:
            cur = stack.pop()
            if id(cur) not in self._ops or cur is self.input or self.uses(cur) > 0:
                continue
            del self._ops[id(cur)]
            for o in cur.operands:
                lst = self.users.get(id(o))
                if lst is not None and cur in lst:
                    lst.remove(cur)
                stack.append(o)
            self.changed = True

    def finish(self) -> Module:
        """Write the live ops back into the module in a topological order (original order where possible)."""
        order = topological_order(self.module.output, self.input, self._priority)
        if self.changed or len(order) != len(self.module.ops):
            self.module.ops = order
            forget_analyses(self.module)
        return self.module


Pattern = Callable[[Rewriter, Op], "Op | None"]


def apply_patterns(module: Module, patterns: list[Pattern], *, max_rewrites: int | None = None) -> bool:
    """Greedy rewriting to a fixpoint: each pattern gets ``(rewriter, op)`` and returns the op that replaces
    ``op`` (an existing op or one made with ``rewriter.create``) or ``None``.  Returns whether anything
    changed.  ``max_rewrites`` (default 50 × ops + 1000) stops a pattern set that does not terminate."""
    rw = Rewriter(module)
    limit = max_rewrites if max_rewrites is not None else 50 * len(module.ops) + 1000
    worklist = list(reversed(module.ops))  # pop() visits ops in program order
    queued = {id(op) for op in worklist}
    rewrites = 0
    while worklist:
        op = worklist.pop()
        queued.discard(id(op))
        if not rw.alive(op) or op.kind == "input":
            continue
        for pattern in patterns:
            rw.anchor = op
            n_created = len(rw.created)
            new = pattern(rw, op)
            if new is None or new is op:
                continue
            rewrites += 1
            if rewrites > limit:
                from ..errors import PassError
                raise PassError(f"pattern rewriting did not reach a fixpoint after {limit} rewrites "
                                f"(last pattern: {getattr(pattern, '__name__', pattern)})")
            users = list(rw.users.get(id(op), ()))
            rw.replace(op, new)
            # revisit the replacement, everything just created and the users of the replaced value
            for nxt in [*users, *rw.created[n_created:], new]:
                if rw.alive(nxt) and id(nxt) not in queued:
                    worklist.append(nxt)
                    queued.add(id(nxt))
            break
    rw.finish()
    return rw.changed
