"""``debranch{mode=reference}``: the paper's local debranching rules (compile.md §3, §4).

Reference-faithful: fold → debranch → fold, where debranching repeatedly takes the **first op in
topological order with more than one distinct user** (the branch op ``v``; its users are the *children*)
and applies the first matching case in the reference order 1A, 1B, 2, 3, 4, 5A, 5B, 6, 7A, 7B, 8, 9, 10;
folding is re-run after cases 2, 3, 5A (non-Multi branch), 5B and 6.  No CSE, no range facts, no pruning:
every branching event makes its own carrier (passthrough state, ``f_relu_identity`` ± split, Multi
bypass), as in the reference — this mode exists to reproduce the reference's compiled form (experiments.md
D13), not to be good.

Decisions where the paper/reference leave a gap:

* **D6 (progress).**  Case 4 rewrites only Concats whose operands are all ``v``; when every child is a
  Concat and none qualifies, the reference stalls.  Here one Concat child that no other child depends on
  becomes the only reader of ``v``: every other child reads ``v`` as a Slice of it.  ``v`` has one child
  afterwards, so the step always makes progress.  (Falling through to the Case 8 bypass, the other
  option, can cycle: the bypass, 5B and 5A re-create a Concat child one op further down every round.)
* Case 5A with Slices feeding Multis: one pre-multiply Linear (left halves of those Multis and ``v``
  itself, then right halves and ones) and one Multi; the Multis become Slices of it and every other use of
  the Slices reads the passthrough part.
* The result is put into the layer form of debranch's contract: Slices → selection Linears, one-operand
  Concats removed, Lin∘Lin and Lin→LinState folded, a passthrough state first when the path does not start
  with one.  ``metadata["layout"]`` has role ``"opaque"`` entries (the local rules do not track values).
"""
from __future__ import annotations

from ..errors import PassError
from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector, matvec

DEFAULT_MAX_STEPS = 200_000
_FOLD_AFTER = {"2", "3", "5A", "5B", "6"}


class _Graph:
    def __init__(self, module: Module, exact: bool):
        self.exact = exact
        self.output = module.output
        self.input = module.input
        self.steps = 0
        self.cases: dict = {}
        self.refresh()

    # ------------------------------------------------------------------ helpers
    def refresh(self) -> None:
        self.ops = Module.from_output(self.output).ops
        users: dict = {id(op): [] for op in self.ops}
        for op in self.ops:
            seen = set()
            for o in op.operands:
                if id(o) not in seen:
                    seen.add(id(o))
                    users[id(o)].append(op)
        self.users = users

    def eye(self, n: int) -> Matrix:
        return Matrix.identity(n, exact=self.exact)

    def zeros(self, m: int, n: int) -> Matrix:
        return Matrix.zeros(m, n, exact=self.exact)

    def zvec(self, n: int) -> Vector:
        return Vector.zeros(n, exact=self.exact)

    def ones(self, n: int) -> Vector:
        from fractions import Fraction
        return Vector([Fraction(1)] * n, exact=True) if self.exact else Vector([1.0] * n)

    def select(self, start: int, end: int, dim: int) -> Matrix:
        return Matrix.from_entries((end - start, dim), range(end - start), range(start, end),
                                   [1] * (end - start), exact=self.exact)

    def linear(self, x: Op, a: Matrix, b: Vector | None = None) -> Op:
        return Op("linear", [x], {"A": a, "b": b if b is not None else self.zvec(a.shape[0])})

    def slice(self, x: Op, start: int, end: int) -> Op:
        return Op("slice", [x], {"start": start, "end": end})

    def relu_identity(self, v: Op) -> Op:
        """``f_relu_identity(v) = [I, −I]·[ReLU(v); ReLU(−v)]`` (language.md §7.6)."""
        d = v.dim
        neg = self.linear(v, self.eye(d).scale(-1))
        cat = Op("concat", [Op("relu", [v]), Op("relu", [neg])])
        return self.linear(cat, Matrix.hstack([self.eye(d), self.eye(d).scale(-1)]))

    def replace_operand(self, op: Op, old: Op, new: Op) -> None:
        op.operands = [new if o is old else o for o in op.operands]

    def replace_op(self, old: Op, new: Op) -> None:
        """Every use of ``old`` (users as of the last refresh) reads ``new``."""
        for u in self.users.get(id(old), ()):
            if u is not new:
                self.replace_operand(u, old, new)
        if self.output is old:
            self.output = new

    def substitute(self, mapping: dict) -> None:
        """Replace ops by id everywhere (new ops included): walk from the output, rewiring operands."""
        def resolve(o):
            while id(o) in mapping:
                o = mapping[id(o)]
            return o

        self.output = resolve(self.output)
        seen, stack = set(), [self.output]
        while stack:
            op = stack.pop()
            if id(op) in seen:
                continue
            seen.add(id(op))
            op.operands = [resolve(o) for o in op.operands]
            stack.extend(op.operands)

    def ensure_linear_output(self) -> None:
        if self.output.kind not in ("linear",):
            self.output = self.linear(self.output, self.eye(self.output.dim))

    # ------------------------------------------------------------------ folding (compile.md §3)
    def fold(self) -> None:
        """The folding rules to a fixed point; each pass rewrites every op that matches (the rules are
        semantics-preserving whatever the use counts, which only decide when Lin∘Lin applies)."""
        changed = True
        while changed:
            changed = False
            self.refresh()
            for op in self.ops:
                if op.kind == "linear":
                    (x,) = op.operands
                    if x.kind == "linear" and len(self.users.get(id(x), ())) == 1:
                        a2, b2 = op.attrs["A"], op.attrs["b"]
                        op.operands = [x.operands[0]]
                        op.attrs = {"A": a2 @ x.attrs["A"], "b": matvec(a2, x.attrs["b"]) + b2}
                        changed = True
                elif op.kind == "relu":
                    (x,) = op.operands
                    if x.kind == "relu":
                        op.operands = [x.operands[0]]
                        changed = True
                elif op.kind == "linstate":
                    (x,) = op.operands
                    if x.kind == "linear":
                        bmat = op.attrs["B"]
                        op.attrs = dict(op.attrs, B=bmat @ x.attrs["A"],
                                        bias=matvec(bmat, x.attrs["b"]) + op.attrs["bias"])
                        op.operands = [x.operands[0]]
                        changed = True
                elif op.kind == "concat" and len(op.operands) > 0:
                    first = op.operands[0]
                    if all(o is first for o in op.operands):
                        d = first.dim
                        new = self.linear(first, Matrix.vstack([self.eye(d)] * len(op.operands)))
                        self.replace_op(op, new)
                        changed = True

    # ------------------------------------------------------------------ the debranching loop
    def branch_op(self):
        for op in self.ops:
            if len(self.users[id(op)]) > 1:
                return op
        return None

    def run(self, max_steps: int) -> None:
        self.ensure_linear_output()
        self.fold()
        while True:
            self.ensure_linear_output()
            self.refresh()
            v = self.branch_op()
            if v is None:
                break
            self.steps += 1
            if self.steps > max_steps:
                raise PassError(f"debranch{{mode=reference}}: no path form after {max_steps} steps "
                                f"({len(self.ops)} ops; cases applied: {self.cases})")
            case = self.apply_case(v, list(self.users[id(v)]))
            self.cases[case] = self.cases.get(case, 0) + 1
            if case in _FOLD_AFTER:
                self.fold()
        self.fold()

    def apply_case(self, v: Op, children: list) -> str:
        kinds = {c.kind for c in children}
        lin = {"linear", "slice"}
        if "multi" in kinds:
            return self.case_1a(v, children) if kinds == {"multi"} else self.case_1b(v, children)
        if kinds == {"linstate"}:
            return self.case_2(v, children)
        if kinds == {"relu"}:
            return self.case_3(v, children)
        if kinds == {"concat"}:
            return self.case_4(v, children)
        if kinds == {"slice"}:
            return self.case_5a(v, children)
        if kinds <= lin:
            return self.case_5b(v, children)
        if "linstate" in kinds:
            return self.case_6(v, children)
        if kinds <= lin | {"relu"}:
            return self.case_7(v, children)
        if kinds <= lin | {"concat"}:
            return self.case_8(v, children)
        if kinds == {"relu", "concat"}:
            return self.case_9(v, children)
        if kinds <= lin | {"relu", "concat"}:
            return self.case_10(v, children)
        raise PassError(f"debranch{{mode=reference}}: {v.describe()}: no case for children {sorted(kinds)}")

    # ------------------------------------------------------------------ cases
    def case_1a(self, v, children):
        keep = children[0]
        for c in children[1:]:
            self.replace_op(c, keep)
        return "1A"

    def case_1b(self, v, children):
        h = v.dim // 2
        d = v.dim
        x1, x2 = self.select(0, h, d), self.select(h, d, d)
        # left = [x1; 1; 1], right = [x2; x1; x2]  →  Multi = [x1⊙x2; x1; x2]
        a = Matrix.vstack([x1, self.zeros(2 * h, d), x2, x1, x2])
        b = Vector.concat([self.zvec(h), self.ones(2 * h), self.zvec(3 * h)])
        pre = self.linear(v, a, b)
        multi = Op("multi", [pre])
        product = self.slice(multi, 0, h)
        passthrough = self.slice(multi, h, 3 * h)
        for c in children:
            if c.kind == "multi":
                self.replace_op(c, product)
            else:
                self.replace_operand(c, v, passthrough)
        return "1B"

    def case_2(self, v, children):
        fused = Op("linstate", [v], {
            "A": Matrix.block_diag([c.attrs["A"] for c in children]),
            "B": Matrix.vstack([c.attrs["B"] for c in children]),
            "bias": Vector.concat([c.attrs["bias"] for c in children]),
            "init": Vector.concat([c.attrs["init"] for c in children])})
        off = 0
        for c in children:
            self.replace_op(c, self.slice(fused, off, off + c.dim))
            off += c.dim
        return "2"

    def case_3(self, v, children):
        keep = children[0]
        for c in children[1:]:
            self.replace_op(c, keep)
        return "3"

    def case_4(self, v, children):
        rewritten = False
        for c in children:
            if all(o is v for o in c.operands):
                self.replace_op(c, self.linear(v, Matrix.vstack([self.eye(v.dim)] * len(c.operands))))
                rewritten = True
        if rewritten:
            return "4"
        # D6: route every other child through a Slice of one Concat child that no other child feeds
        hub = self._minimal_child(children)
        off = 0
        for o in hub.operands:
            if o is v:
                break
            off += o.dim
        part = self.slice(hub, off, off + v.dim)
        for c in children:
            if c is not hub:
                self.replace_operand(c, v, part)
        return "4-D6"

    def _minimal_child(self, children):
        """A child that does not depend on any other child (so others may read it without a cycle)."""
        ids = {id(c) for c in children}
        for c in children:
            seen, stack, clean = set(), list(c.operands), True
            while stack and clean:
                o = stack.pop()
                if id(o) in seen:
                    continue
                seen.add(id(o))
                if id(o) in ids:
                    clean = False
                stack.extend(o.operands)
            if clean:
                return c
        raise PassError("debranch{mode=reference}: the children of a branch op form a cycle")

    def case_5a(self, v, children):
        d = v.dim
        grandchildren = [(s, list(self.users[id(s)])) for s in children]
        multi_fed = [(s, g) for s, gs in grandchildren for g in gs if g.kind == "multi"]
        if multi_fed:
            lefts, rights = [], []
            for s, g in multi_fed:
                h = g.dim
                a = s.attrs["start"]
                lefts.append(self.select(a, a + h, d))
                rights.append(self.select(a + h, a + 2 * h, d))
            n_prod = sum(g.dim for _, g in multi_fed)
            pre = self.linear(v, Matrix.vstack(lefts + [self.eye(d)] + rights + [self.zeros(d, d)]),
                              Vector.concat([self.zvec(2 * n_prod + d), self.ones(d)]))
            multi = Op("multi", [pre])
            off = 0
            for s, g in multi_fed:
                self.replace_op(g, self.slice(multi, off, off + g.dim))
                off += g.dim
            for s, gs in grandchildren:
                for g in gs:
                    if g.kind != "multi":
                        self.replace_operand(g, s, self.slice(multi, n_prod + s.attrs["start"],
                                                              n_prod + s.attrs["end"]))
                if s is self.output:
                    self.output = self.slice(multi, n_prod + s.attrs["start"], n_prod + s.attrs["end"])
            return "5A-multi"
        slices = {id(s): s for s in children}
        mapping = {}
        for s, gs in grandchildren:
            for g in gs:
                if id(g) not in mapping:
                    mapping[id(g)] = self._push_slices(v, g, slices)
            if s is self.output:
                mapping[id(s)] = self.linear(v, self.select(s.attrs["start"], s.attrs["end"], d))
        self.substitute(mapping)
        return "5A"

    def _push_slices(self, v, g, slices) -> Op:
        """``g`` (a user of Slices of ``v``) rewritten to read ``v`` directly."""
        d = v.dim

        def sel(s):
            return self.select(s.attrs["start"], s.attrs["end"], d)

        if g.kind == "concat":
            ops = [v if id(o) in slices else o for o in g.operands]
            blocks = [sel(o) if id(o) in slices else self.eye(o.dim) for o in g.operands]
            return self.linear(Op("concat", ops), Matrix.block_diag(blocks))
        (s,) = g.operands
        a, e = s.attrs["start"], s.attrs["end"]
        if g.kind == "linear":
            return self.linear(v, g.attrs["A"] @ sel(s), g.attrs["b"])
        if g.kind == "linstate":
            return Op("linstate", [v], dict(g.attrs, B=g.attrs["B"] @ sel(s)))
        if g.kind == "relu":  # ReLU commutes with coordinate selections
            return self.slice(Op("relu", [v]), a, e)
        if g.kind == "slice":
            return self.slice(v, a + g.attrs["start"], a + g.attrs["end"])
        raise PassError(f"debranch{{mode=reference}}: cannot push a slice into {g.describe()}")

    def case_5b(self, v, children):
        mats, biases = [], []
        for c in children:
            if c.kind == "slice":
                mats.append(self.select(c.attrs["start"], c.attrs["end"], v.dim))
                biases.append(self.zvec(c.dim))
            else:
                mats.append(c.attrs["A"])
                biases.append(c.attrs["b"])
        merged = self.linear(v, Matrix.vstack(mats), Vector.concat(biases))
        off = 0
        for c in children:
            self.replace_op(c, self.slice(merged, off, off + c.dim))
            off += c.dim
        return "5B"

    def case_6(self, v, children):
        d = v.dim
        passthrough = Op("linstate", [v], {"A": self.zeros(d, d), "B": self.eye(d), "bias": self.zvec(d),
                                           "init": self.zvec(d)})
        for c in children:
            if c.kind != "linstate":
                self.replace_operand(c, v, passthrough)
        return "6"

    def _followed_by_single_relu(self, op) -> bool:
        us = self.users.get(id(op), [])
        return len(us) == 1 and us[0].kind == "relu"

    def case_7(self, v, children):
        linears = [c for c in children if c.kind != "relu"]
        bare = [c for c in linears if not self._followed_by_single_relu(c)]
        if not bare:  # 7A: an identity Linear before the bare ReLUs (one, shared)
            ident = self.linear(v, self.eye(v.dim))
            for c in children:
                if c.kind == "relu":
                    self.replace_operand(c, v, ident)
            return "7A"
        bypass = self.relu_identity(v)  # 7B
        for c in bare:
            self.replace_operand(c, v, bypass)
        return "7B"

    def case_8(self, v, children):
        ident = self.linear(v, self.eye(v.dim))  # one bypass shared by the Concats
        for c in children:
            if c.kind == "concat":
                self.replace_operand(c, v, ident)
        return "8"

    def case_9(self, v, children):
        bypass = self.relu_identity(v)
        for c in children:
            if c.kind == "concat":
                self.replace_operand(c, v, bypass)
        return "9"

    def case_10(self, v, children):
        bypass = self.relu_identity(v)
        for c in children:
            if c.kind == "concat" or (c.kind in ("linear", "slice") and not self._followed_by_single_relu(c)):
                self.replace_operand(c, v, bypass)
        return "10"


# ---------------------------------------------------------------------------- path → layer form

def _to_layer_form(path_ops: list, output: Op, inp: Op, exact: bool) -> Module:
    """Rebuild a path as debranch's layer form (one chain of linstate/linear/relu/multi)."""
    def eye(n):
        return Matrix.identity(n, exact=exact)

    chain = []  # (kind, attrs) after the input
    for op in path_ops:
        if op.kind == "input":
            continue
        if op.kind == "concat":
            continue  # a path concat has one distinct operand, and fold removed repeated ones
        if op.kind == "slice":
            sel = Matrix.from_entries((op.dim, op.operands[0].dim), range(op.dim),
                                      range(op.attrs["start"], op.attrs["end"]), [1] * op.dim, exact=exact)
            chain.append(("linear", {"A": sel, "b": Vector.zeros(op.dim, exact=exact)}))
        else:
            chain.append((op.kind, dict(op.attrs)))
    # fold Lin∘Lin and Lin→LinState, drop ReLU∘ReLU
    folded: list = []
    for kind, attrs in chain:
        if folded and folded[-1][0] == "linear":
            pk, pa = folded[-1]
            if kind == "linear":
                folded[-1] = ("linear", {"A": attrs["A"] @ pa["A"], "b": matvec(attrs["A"], pa["b"]) + attrs["b"]})
                continue
            if kind == "linstate":
                folded[-1] = ("linstate", dict(attrs, B=attrs["B"] @ pa["A"],
                                               bias=matvec(attrs["B"], pa["b"]) + attrs["bias"]))
                continue
        if folded and kind == "relu" and folded[-1][0] == "relu":
            continue
        folded.append((kind, attrs))
    while len(folded) > 1 and folded[-1][0] == "linear" and folded[-1][1]["A"].is_identity() \
            and folded[-1][1]["b"].is_zero():
        folded.pop()  # an identity readout (the output wrapper of the rewrite loop)
    if not folded or folded[0][0] != "linstate":
        d = inp.dim
        first = ("linstate", {"A": Matrix.zeros(d, d, exact=exact), "B": eye(d),
                              "bias": Vector.zeros(d, exact=exact), "init": Vector.zeros(d, exact=exact)})
        if folded and folded[0][0] == "linear":  # absorbed into B
            a = folded[0][1]
            first = ("linstate", {"A": Matrix.zeros(a["A"].shape[0], a["A"].shape[0], exact=exact), "B": a["A"],
                                  "bias": a["b"], "init": Vector.zeros(a["A"].shape[0], exact=exact)})
            folded = folded[1:]
        folded.insert(0, first)
    new_inp = Op("input", (), dict(inp.attrs, dim=inp.dim), name=inp.name)
    ops = [new_inp]
    for kind, attrs in folded:
        ops.append(Op(kind, [ops[-1]], attrs))
    module = Module(ops, ops[-1], "main")
    module.metadata["layout"] = [[{"role": "opaque"}] * op.dim for op in ops]
    stages, layer = [{"stage": "X", "index": 0, "layer": 0}], 0
    for i, op in enumerate(ops[1:], 1):
        layer += op.kind == "linstate"
        kind = {"linstate": "S", "relu": "R", "multi": "M"}.get(op.kind, "linear")
        stages.append({"stage": kind, "index": i, "layer": layer})
    module.metadata["stages"] = stages
    return module


def reference_debranch(module: Module, *, exact: bool = False, max_steps: int = DEFAULT_MAX_STEPS) -> Module:
    """The reference-faithful debranching of ``module`` (a new module; the argument is not modified)."""
    work = module.clone()
    for op in work.ops:
        if op.kind == "input":
            continue
        if op.kind not in ("linear", "relu", "linstate", "concat", "multi", "slice"):
            raise PassError(f"debranch{{mode=reference}}: {op.describe()}: only core ops can be debranched")
        for k, val in list(op.attrs.items()):
            if isinstance(val, (Matrix, Vector)):
                op.attrs[k] = val.to_exact() if exact else val.to_float()
    graph = _Graph(work, exact)
    graph.run(max_steps)
    graph.refresh()
    out = _to_layer_form(graph.ops, graph.output, graph.input, exact)
    out.name = module.name
    out.metadata["reference_steps"] = graph.steps
    out.metadata["reference_cases"] = dict(graph.cases)
    return out
