"""Shared machinery of the target lowerings (``targets.md`` §1).

Every lowering reads the *layer form* (the output of ``debranch``: a chain ``input → op → … → op`` of
``linstate`` / ``linear`` / ``relu`` / ``multi`` ops) as a list of **stages** — S (``linstate``), R
(``relu``), M (``multi``) — each preceded by the affine map that feeds it, plus a trailing affine
**readout** (:func:`layer_stages`).  Lowering then maps stage by stage to target layers (§1.2).

Values between target layers are *encoded*: a target layer outputs a hidden vector ``h`` and a
:class:`Decoder` ``(D, e)`` such that the stage's value is ``D h + e`` (± splits, scales ε, product pairs
are all linear decodings).  The next stage's input map is composed with the decoder
(:meth:`Decoder.compose`), so no extra layer is ever spent on decoding, and the readout absorbs the last
decoder.

Range analysis (``lsrl.passes.range_analysis.compute_ranges``, intersected with a simple interval analysis
of the chain) decides which values are provably non-negative (no ± split), bounds product operands
(GRU's leak-cancelling pair) and chooses the standard-mode scales.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..errors import CompileError
from ..ir.core import Module, Op
from ..ir.matrix import Matrix, Vector, matvec

__all__ = ["Stage", "LayerForm", "Decoder", "layer_stages", "sign_split", "pow2_at_most", "scale_rows",
           "vscale", "vneg", "vadd", "selection", "finish_module", "ensure_bounded", "StandardConstants",
           "STANDARD", "interval_affine", "row_is_constant", "LOWERED_OP_KINDS"]

# op kinds a lowered module may contain (besides its input and the final readout ``linear``)
LOWERED_OP_KINDS = {
    "linear_rnn": {"linstate", "linear", "relu", "multi"},
    "relu_rnn": {"rnn_relu"},
    "lstm": {"lstm"},
    "gru": {"gru"},
}


# ------------------------------------------------------------------------------------------ small algebra

def vscale(v: Vector, c) -> Vector:
    """``c · v`` (exact when either is exact and the product is not a float)."""
    if v.exact or isinstance(c, Fraction):
        return Vector([x * Fraction(c) for x in v.to_exact().values.tolist()], exact=True)
    return Vector(v.values * float(c))


def vneg(v: Vector) -> Vector:
    return Vector(-v.values, exact=v.exact) if not v.exact else Vector([-x for x in v.values.tolist()], exact=True)


def vadd(a: Vector, b: Vector) -> Vector:
    return a + b


def scale_rows(m: Matrix, scales) -> Matrix:
    """``diag(scales) @ m``."""
    scales = list(scales)
    if len(scales) != m.shape[0]:
        raise ValueError("scale_rows: one scale per row")
    return Matrix.diag(scales) @ m


def selection(shape, entries) -> Matrix:
    """A sparse matrix from ``(row, col, value)`` triples."""
    entries = list(entries)
    if not entries:
        return Matrix.zeros(*shape)
    r, c, v = zip(*entries)
    return Matrix.from_entries(shape, r, c, v)


def row_is_constant(m: Matrix) -> np.ndarray:
    """Boolean per row: the row has no non-zero entry."""
    rows, _, _ = m.coo()
    out = np.ones(m.shape[0], dtype=bool)
    out[np.asarray(rows, dtype=np.int64)] = False
    return out


def pow2_at_most(x: float) -> float:
    """The largest power of two ``≤ x`` (``x > 0``): scales by it are exact in floating point."""
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"pow2_at_most: need a positive finite number, got {x}")
    m, e = math.frexp(x)  # x = m · 2^e with 0.5 ≤ m < 1
    return math.ldexp(1.0, e - 1)


def pow2_at_least(x: float) -> float:
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"pow2_at_least: need a positive finite number, got {x}")
    p = pow2_at_most(x)
    return p if p == x else 2 * p


# ------------------------------------------------------------------------------------------ intervals

def interval_affine(m: Matrix, b: Vector, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``m x + b`` for ``lo ≤ x ≤ hi`` (infinite bounds allowed; ``0 · inf = 0``)."""
    csr = m.scipy()
    pos = csr.multiply(csr > 0).tocsr()
    neg = csr.multiply(csr < 0).tocsr()
    bv = b.to_float().values

    def prod(mat, v):
        # sparse @ vector where v may hold infinities: only stored entries contribute
        out = np.zeros(mat.shape[0])
        coo = mat.tocoo()
        if coo.nnz:
            terms = coo.data * v[coo.col]
            np.add.at(out, coo.row, terms)
        return out

    with np.errstate(invalid="ignore"):
        new_lo = prod(pos, lo) + prod(neg, hi) + bv
        new_hi = prod(pos, hi) + prod(neg, lo) + bv
    # inf - inf only arises when the bound is truly unknown
    new_lo = np.where(np.isnan(new_lo), -np.inf, new_lo)
    new_hi = np.where(np.isnan(new_hi), np.inf, new_hi)
    return new_lo, new_hi


def _interval_mul(alo, ahi, blo, bhi):
    with np.errstate(invalid="ignore"):
        cands = np.stack([alo * blo, alo * bhi, ahi * blo, ahi * bhi])
    cands = np.where(np.isnan(cands), 0.0, cands)  # 0 · inf: the factor really is 0
    return cands.min(axis=0), cands.max(axis=0)


_CHAIN_T_DEFAULT = 64  # steps iterated by the chain analysis when no T_max is given (then: widen)


def _linstate_bounds(op: Op, ulo_in, uhi_in, t_max: int | None, groups=None):
    """Bounds of ``s_t`` (t = 1..t_max, or all t) by iterating the interval recurrence.

    Without ``t_max`` the iteration stops at a fixed point; coordinates still moving after
    ``_CHAIN_T_DEFAULT`` steps, and every coordinate whose update reads one of them, are unbounded."""
    if groups is not None:
        ulo, uhi = _group_affine(op.attrs["B"], op.attrs["bias"], ulo_in, uhi_in, groups)
    else:
        ulo, uhi = interval_affine(op.attrs["B"], op.attrs["bias"], ulo_in, uhi_in)
    init = op.attrs["init"].to_float().values.astype(float)
    a = op.attrs["A"]
    zero = Vector.zeros(op.dim)
    slo, shi = init.copy(), init.copy()
    lo, hi = np.full(op.dim, np.inf), np.full(op.dim, -np.inf)
    steps = t_max if t_max is not None else _CHAIN_T_DEFAULT
    converged = False
    moving = np.zeros(op.dim, dtype=bool)
    for _ in range(max(int(steps), 1)):
        alo, ahi = interval_affine(a, zero, slo, shi)
        nlo, nhi = alo + ulo, ahi + uhi
        lo, hi = np.minimum(lo, nlo), np.maximum(hi, nhi)
        moving = (nlo != slo) | (nhi != shi)
        slo, shi = nlo, nhi
        if not moving.any():
            converged = True
            break
    if t_max is None and not converged:
        rows, cols, _ = a.coo()
        grow = moving.copy()
        while True:  # close under "reads a growing coordinate"
            new = grow.copy()
            if len(rows):
                new[np.asarray(rows)[grow[np.asarray(cols)]]] = True
            if np.array_equal(new, grow):
                break
            grow = new
        lo = np.where(grow, -np.inf, lo)
        hi = np.where(grow, np.inf, hi)
    return lo, hi, (ulo, uhi)


def _relu_groups(lin: Op, zlo: np.ndarray, zhi: np.ndarray, plo: np.ndarray, phi: np.ndarray):
    """ReLU units whose pre-activation rows are equal up to a positive scale and the bias are functions of
    one scalar: unit ``k = s_k·ReLU(y_g + o_k)``.  Returns ``(unit -> (g, s_k, o_k)), [(ylo, yhi) per g]``."""
    rows, cols, vals = lin.attrs["A"].coo()
    bias = lin.attrs["b"].to_float().values
    vals = np.asarray([float(v) for v in vals])
    by_row: dict[int, list] = {}
    for r, c_, v in zip(rows.tolist(), cols.tolist(), vals.tolist()):
        by_row.setdefault(r, []).append((c_, v))
    key_of: dict = {}
    units: dict[int, tuple] = {}
    groups: list[list] = []
    for r, entries in by_row.items():
        s = abs(entries[0][1])
        key = tuple((c_, v / s) for c_, v in entries)
        g = key_of.get(key)
        if g is None:
            g = len(groups)
            key_of[key] = g
            ncols = np.array([c_ for c_, _ in entries])
            nvals = np.array([v for _, v in entries])
            with np.errstate(invalid="ignore"):
                tlo = np.where(nvals > 0, nvals * zlo[ncols], nvals * zhi[ncols])
                thi = np.where(nvals > 0, nvals * zhi[ncols], nvals * zlo[ncols])
            tlo = np.where(np.isnan(tlo), -np.inf, tlo)
            thi = np.where(np.isnan(thi), np.inf, thi)
            groups.append([float(tlo.sum()), float(thi.sum())])
        o = bias[r] / s
        units[r] = (g, s, o)
        # the unit's own pre-activation bounds also bound y
        groups[g][0] = max(groups[g][0], plo[r] / s - o)
        groups[g][1] = min(groups[g][1], phi[r] / s - o)
    return units, groups


def _pwl_range(terms: list, ylo: float, yhi: float) -> tuple[float, float]:
    """Range of ``Σ a_k ReLU(y + o_k)`` over ``y ∈ [ylo, yhi]`` (exact up to rounding)."""
    if ylo > yhi:  # empty (rounding in the bounds): fall back to the hull
        ylo, yhi = yhi, ylo

    def f(y):
        return sum(a * max(y + o, 0.0) for a, o in terms)

    pts = [y for y in (ylo, yhi) if math.isfinite(y)]
    pts += [-o for _, o in terms if ylo <= -o <= yhi]
    vals = [f(y) for y in pts]
    lo = min(vals) if vals else np.inf
    hi = max(vals) if vals else -np.inf
    if not math.isfinite(yhi):  # all units active far right: slope Σ a
        slope = sum(a for a, _ in terms)
        if slope > 0:
            hi = np.inf
        elif slope < 0:
            lo = -np.inf
        elif not vals:
            lo = hi = f(max([-o for _, o in terms], default=0.0) + 1.0)
    if not math.isfinite(ylo):  # all units inactive far left: constant 0
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return lo, hi


def _group_affine(m: Matrix, b: Vector, lo: np.ndarray, hi: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``m x + b`` where some coordinates of ``x`` are ReLU units of shared scalars (see
    :func:`_relu_groups`): each scalar's contribution is bounded exactly, the rest by intervals."""
    units, gbounds = groups
    base_lo, base_hi = interval_affine(m, b, lo, hi)
    rows, cols, vals = m.coo()
    per_row: dict[int, dict] = {}
    for r, c_, v in zip(rows.tolist(), cols.tolist(), vals):
        u = units.get(c_)
        if u is not None:
            per_row.setdefault(r, {}).setdefault(u[0], []).append((float(v) * u[1], u[2], c_, float(v)))
    out_lo, out_hi = base_lo.copy(), base_hi.copy()
    bv = b.to_float().values
    for r, by_group in per_row.items():
        if not any(len(t) > 1 for t in by_group.values()):
            continue  # no two units of one scalar: intervals are already exact per unit
        acc_lo, acc_hi = bv[r], bv[r]
        grouped = set()
        for g, terms in by_group.items():
            glo, ghi = _pwl_range([(a, o) for a, o, _, _ in terms], *gbounds[g])
            acc_lo, acc_hi = acc_lo + glo, acc_hi + ghi
            grouped.update(c_ for _, _, c_, _ in terms)
        # the other columns of the row by intervals
        lo_r, hi_r = m.rows([r]).coo()[1], m.rows([r]).coo()[2]
        for c_, v in zip(lo_r.tolist(), hi_r):
            if c_ in grouped:
                continue
            v = float(v)
            a, bnd = (v * lo[c_], v * hi[c_]) if v > 0 else (v * hi[c_], v * lo[c_])
            acc_lo += 0.0 if np.isnan(a) else a
            acc_hi += 0.0 if np.isnan(bnd) else bnd
        if np.isnan(acc_lo):
            acc_lo = -np.inf
        if np.isnan(acc_hi):
            acc_hi = np.inf
        # widen by rounding of the evaluation
        pad = 1e-12 * max(abs(acc_lo) if math.isfinite(acc_lo) else 0.0, abs(acc_hi) if math.isfinite(acc_hi)
                          else 0.0)
        out_lo[r] = max(base_lo[r], acc_lo - pad)
        out_hi[r] = min(base_hi[r], acc_hi + pad)
    return out_lo, out_hi


def _chain_ranges(chain: list[Op], t_max: int | None, external: dict | None = None
                  ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """A sound interval analysis of a chain, tightened at every op by ``external`` bounds (the range-analysis
    pass) and, after ReLU stages, by evaluating ReLU units that share a scalar argument exactly (f_step-like
    differences ``μ ReLU(x) − μ ReLU(x − 1/μ)`` then get their true range [0, 1] instead of ±μ·|x|)."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    prev_lo = prev_hi = None
    groups = None
    for op in chain:
        new_groups = None
        if op.kind == "input":
            lo = op.attrs["lower"].to_float().values.astype(float)
            hi = op.attrs["upper"].to_float().values.astype(float)
        elif op.kind == "linear":
            if groups is not None:
                lo, hi = _group_affine(op.attrs["A"], op.attrs["b"], prev_lo, prev_hi, groups)
            else:
                lo, hi = interval_affine(op.attrs["A"], op.attrs["b"], prev_lo, prev_hi)
        elif op.kind == "relu":
            lo, hi = np.maximum(prev_lo, 0.0), np.maximum(prev_hi, 0.0)
            operand = op.operands[0]
            if operand.kind == "linear":
                zlo, zhi = out[id(operand.operands[0])]
                new_groups = _relu_groups(operand, zlo, zhi, prev_lo, prev_hi)
        elif op.kind == "multi":
            h = op.dim
            lo, hi = _interval_mul(prev_lo[:h], prev_hi[:h], prev_lo[h:], prev_hi[h:])
        elif op.kind == "linstate":
            lo, hi, drive = _linstate_bounds(op, prev_lo, prev_hi, t_max, groups)
            out[("drive", id(op))] = drive
        else:
            raise CompileError(f"{op.describe()}: op kind {op.kind!r} is not part of the layer form")
        lo = np.asarray(lo, dtype=float)
        hi = np.asarray(hi, dtype=float)
        if external is not None and id(op) in external:
            try:
                elo, ehi = _as_bounds(external[id(op)], op.dim)
                nlo, nhi = np.maximum(lo, elo), np.minimum(hi, ehi)
                if np.all(nlo <= nhi):  # both are sound; empty would mean a bug somewhere: keep ours
                    lo, hi = nlo, nhi
            except (ValueError, TypeError):
                pass
        out[id(op)] = (lo, hi)
        prev_lo, prev_hi = lo, hi
        groups = new_groups
    return out


def _pass_ranges(module: Module, t_max: int | None):
    try:
        from ..passes.range_analysis import compute_ranges
    except ImportError:
        return None
    try:
        return compute_ranges(module, t_max=t_max)
    except Exception as exc:  # noqa: BLE001 - the fallback analysis is sound on its own
        import warnings
        warnings.warn(f"range analysis failed ({exc}); using the chain interval analysis only")
        return None


def _as_bounds(value, dim: int):
    lo, hi = value
    lo = np.array([float(v) for v in np.asarray(lo, dtype=object).reshape(-1).tolist()], dtype=float)
    hi = np.array([float(v) for v in np.asarray(hi, dtype=object).reshape(-1).tolist()], dtype=float)
    if lo.shape != (dim,) or hi.shape != (dim,):
        raise ValueError("bounds of the wrong length")
    return lo, hi


# ------------------------------------------------------------------------------------------ the layer form

@dataclass
class Stage:
    """One stage of the layer form: ``kind`` S/R/M, the map from the previous stage's value to its
    pre-activation (S: ``B``/``bias`` with ``A``/``init``; R: the ReLU's argument; M: both halves),
    and bounds (float arrays, possibly infinite) of the pre-activation and of the stage's value."""
    kind: str
    op: Op
    W: Matrix
    c: Vector
    pre_lo: np.ndarray
    pre_hi: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    A: Matrix | None = None
    init: Vector | None = None
    index: int = 0
    chain_index: int = 0  # position of ``op`` in the layer-form chain (input = 0)

    @property
    def in_dim(self) -> int:
        return self.W.shape[1]

    @property
    def out_dim(self) -> int:
        return self.op.dim


@dataclass
class LayerForm:
    input: Op
    stages: list[Stage]
    readout_W: Matrix
    readout_c: Vector
    metadata: dict = field(default_factory=dict)
    name: str = "main"
    ends_with_linear: bool = False


def _chain(module: Module) -> list[Op]:
    chain = []
    op = module.output
    while True:
        chain.append(op)
        if op.kind == "input":
            break
        if len(op.operands) != 1:
            raise CompileError(f"lower: expected the layer form (a chain of single-operand ops, as produced by "
                               f"debranch), but {op.describe()} has {len(op.operands)} operands")
        op = op.operands[0]
    chain.reverse()
    allowed = {"input", "linstate", "linear", "relu", "multi"}
    for op in chain:
        if op.kind not in allowed:
            raise CompileError(f"lower: expected the layer form (only linstate/linear/relu/multi ops after the "
                               f"input), found {op.describe()}; run debranch first")
    users = module.users()
    for op in chain[:-1]:
        n = len(users.get(id(op), []))
        if n > 1:
            raise CompileError(f"lower: expected the layer form (a path graph), but {op.describe()} has {n} users; "
                               "run debranch first")
    return chain


def layer_stages(module: Module, t_max: int | None = None) -> LayerForm:
    """Read a layer-form module as stages + readout, with bounds of every pre-activation and value."""
    chain = _chain(module)
    ranges = _chain_ranges(chain, t_max, _pass_ranges(module, t_max))
    inp = chain[0]
    d = inp.dim
    W: Matrix = Matrix.identity(d)
    c: Vector = Vector.zeros(d)
    identity = True
    prev = inp
    stages: list[Stage] = []
    for position, op in enumerate(chain[1:], start=1):
        if op.kind == "linear":
            W = op.attrs["A"] if identity else op.attrs["A"] @ W
            c = op.attrs["b"] if identity else matvec(op.attrs["A"], c) + op.attrs["b"]
            identity = False
            prev = op
            continue
        lo, hi = ranges[id(op)]
        plo, phi = ranges[id(prev)]
        if op.kind == "linstate":
            b_mat, bias = op.attrs["B"], op.attrs["bias"]
            stage = Stage("S", op, b_mat if identity else b_mat @ W,
                          bias if identity else matvec(b_mat, c) + bias,
                          *ranges[("drive", id(op))], lo, hi, A=op.attrs["A"], init=op.attrs["init"])
        else:
            stage = Stage("R" if op.kind == "relu" else "M", op, W, c, plo, phi, lo, hi)
        stage.index = len(stages)
        stage.chain_index = position
        stages.append(stage)
        W, c, identity = Matrix.identity(op.dim), Vector.zeros(op.dim), True
        prev = op
    return LayerForm(inp, stages, W, c, dict(module.metadata), module.name, chain[-1].kind == "linear")


# ------------------------------------------------------------------------------------------ decoders

@dataclass
class Decoder:
    """The stage value carried by a target layer's hidden vector: ``value = D h + e``."""
    D: Matrix
    e: Vector

    @staticmethod
    def identity(d: int) -> "Decoder":
        return Decoder(Matrix.identity(d), Vector.zeros(d))

    def compose(self, W: Matrix, c: Vector) -> tuple[Matrix, Vector]:
        """``W value + c`` as an affine map of ``h``: ``(W D, W e + c)``."""
        return W @ self.D, matvec(W, self.e) + c


def sign_split(lo: np.ndarray, hi: np.ndarray, *, exact_zero_drop: bool = True):
    """For values with bounds ``lo..hi``: indices needing a positive part and a negative part.

    ``ReLU(v) = v`` where ``v ≥ 0`` is proven, ``ReLU(-v) = -v`` where ``v ≤ 0``; elsewhere both parts
    (Eq. 11).  Values proven to be exactly 0 need neither."""
    pos = [i for i in range(len(lo)) if hi[i] > 0 or (not exact_zero_drop and lo[i] >= 0)]
    neg = [i for i in range(len(lo)) if lo[i] < 0]
    return pos, neg


def split_rows(W: Matrix, c: Vector, pos: list[int], neg: list[int]) -> tuple[Matrix, Vector, Matrix]:
    """Rows ``[W[pos]; -W[neg]]`` (and biases) and the decoding matrix (``len(W) × len(pos)+len(neg)``)
    giving back ``W x + c`` from ``ReLU`` of those rows."""
    k = W.shape[0]
    npos, nneg = len(pos), len(neg)
    parts_w, parts_b = [], []
    if npos:
        parts_w.append(W.rows(pos))
        parts_b.append(c[np.asarray(pos)])
    if nneg:
        parts_w.append(-W.rows(neg))
        parts_b.append(vneg(c[np.asarray(neg)]))
    dec = selection((k, npos + nneg), [(i, j, 1) for j, i in enumerate(pos)]
                    + [(i, npos + j, -1) for j, i in enumerate(neg)])
    if not parts_w:
        return Matrix.zeros(0, W.shape[1]), Vector.zeros(0), dec
    return Matrix.vstack(parts_w), Vector.concat(parts_b), dec


def ensure_bounded(what: str, lo: np.ndarray, hi: np.ndarray) -> float:
    """``max |v|`` over the bounds, or a CompileError saying why a bound is needed."""
    m = float(max(np.max(np.abs(lo), initial=0.0), np.max(np.abs(hi), initial=0.0)))
    if not math.isfinite(m):
        raise CompileError(f"{what} is unbounded according to range analysis; standard activations need "
                           "bounded values: give the Input lower/upper bounds and compile with t_max=<longest "
                           "sequence>")
    return m


# ------------------------------------------------------------------------------------------ standard mode

@dataclass(frozen=True)
class StandardConstants:
    """Constants of the standard-mode constructions (targets.md §1.5, §5, §6); powers of two.

    * ``gate`` — saturation magnitude L: σ(±L) is exactly 1/0 in float64 and float32 (σ(−1024) = 0 since
      exp(1024) overflows; σ(1024) = 1).
    * ``rho`` — every value enters tanh as ``ε v`` with ``|ε v| ≤ rho``: tanh's relative error ≤ rho²/3
      (2^-40: below float64 rounding; the GRU's leak-cancelling pair leaves ≤ rho²/3·max|x| after a ReLU turns
      off, which conditionals with λ = 1e10 amplify — so rho must be tiny).
    * ``rho_gate`` — the gate operand of a product enters σ as ``ε_g g`` and ``2 ε_g g`` with
      ``|ε_g g| ≤ rho_gate``: with D(a) = σ(a) − σ(−a) = tanh(a/2), (8 D(a) − D(2a))/3 = a − a⁵/30, so the
      truncation error is ≤ rho_gate⁴/30 (1.2e-10 at 2^-7) and the cancellation costs ≈ 6·u/rho_gate·B_g|v|
      (u = unit roundoff: 1e-13 in float64, 5e-5 in float32).
    * ``kappa_span`` — a ReLU's step gate is σ(κx) with ``κ·max|x| = kappa_span``: exact (saturated) for
      ``|x| ≥ 745·max|x|/kappa_span`` on the negative side and ``37·max|x|/kappa_span`` on the positive
      (float64; 89 and 17 in float32).  2^80 keeps weights ``κ W/ε`` below 2^120 (finite in float32).
    """
    gate: float = 1024.0
    rho: float = 2.0 ** -40
    rho_gate: float = 2.0 ** -7
    kappa_span: float = 2.0 ** 80
    max_weight_log2: int = 120  # κ is also capped so that every gate weight stays below 2^120 (float32-safe)


STANDARD = StandardConstants()


def eps_for(bound: float, rho: float) -> float:
    """Power-of-two scale ε with ``ε · bound ≤ rho`` (1 for a value that is identically 0)."""
    if bound <= 0:
        return 1.0
    return pow2_at_most(rho / bound)


# ------------------------------------------------------------------------------------------ output

def finish_module(form: LayerForm, ops: list[Op], last: Op, decoder: Decoder, *, target: str, activations: str,
                  stages_meta: list[dict], extra_meta: dict | None = None) -> Module:
    """Append the readout (the layer form's trailing affine map composed with the last decoder) and build
    the lowered module with its metadata."""
    W, c = decoder.compose(form.readout_W, form.readout_c)
    readout = Op("linear", [last], {"A": W, "b": c}, name="readout")
    all_ops = [form.input] + ops + [readout]
    module = Module(all_ops, readout, name=form.name)
    meta = dict(form.metadata)
    meta.update({"target": target, "activations": activations, "stages": stages_meta,
                 "layout": lowered_layout(form, stages_meta)})
    if extra_meta:
        meta.update(extra_meta)
    module.metadata = meta
    return module.verify()


def json_number(v):
    """A JSON-safe number: ints and floats as such, other rationals as ``"p/q"`` strings."""
    if isinstance(v, Fraction):
        if v.denominator == 1:
            return int(v)
        return float(v) if float(v) == v else str(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return float(v)


def decode_triplets(D: Matrix) -> list:
    """``[[slot, unit, coeff], ...]`` of a decoding matrix."""
    rows, cols, vals = D.coo()
    return [[int(r), int(c), json_number(v)] for r, c, v in zip(rows.tolist(), cols.tolist(), vals)]


def lowered_layout(form: LayerForm, stages_meta: list[dict]) -> list | None:
    """The layout of a lowered module, one entry per op: the input's slots (from the layer form), then per
    target layer a dict ``{"stage", "values", "units", "decode"}`` — ``values`` are the layer form's slot
    descriptions of the stage's value, ``units`` the unit blocks (role, start, end) and ``decode`` the sparse
    map ``value[slot] += coeff · h[unit]`` — and finally the readout's output slots."""
    program = form.metadata.get("layout")
    if not isinstance(program, list) or not program:
        program = None
    out = [program[0] if program else [{"role": "input", "index": j} for j in range(form.input.dim)]]
    for st, meta in zip(form.stages, stages_meta):
        values = program[st.chain_index] if program and st.chain_index < len(program) else None
        out.append({"stage": st.kind, "values": values, "units": meta.get("units", []),
                    "decode": meta.pop("decode", [])})
    if program and form.ends_with_linear:
        out.append(program[-1])
    else:
        out.append([{"role": "output", "index": j} for j in range(form.readout_W.shape[0])])
    return out


def to_float_module(module: Module) -> Module:
    """Round every exact constant to float64 (in place)."""
    for op in module.ops:
        for k, v in list(op.attrs.items()):
            if isinstance(v, (Matrix, Vector)) and v.exact:
                op.attrs[k] = v.to_float()
    return module


# ------------------------------------------------------------------------------------------ layer assembly

def placement(m: int, offset: int, total: int) -> Matrix:
    """``m × total`` matrix with ones at ``(i, offset + i)``: places a block's columns in a wider layer."""
    return selection((m, total), [(i, offset + i, 1) for i in range(m)])


class UnitBlocks:
    """Assembles one recurrent target layer from blocks of units.

    Each block of ``size`` units gives, per gate, the rows reading the layer input (``W``, ``size × d_in``)
    and the input bias ``b``; optionally rows reading the layer's own previous hidden state
    (``rec[gate] = [(M, offset)]``, ``M`` of shape ``size × m`` reading units ``offset .. offset+m-1``) and
    recurrent biases ``b_rec`` (GRU's ``b_hn`` sits inside ``r ⊙ (·)``); initial ``h0``/``c0``; and its
    ``decode`` (``d_val × size``): its contribution to the stage value ``D h + e``.
    """

    def __init__(self, gates: tuple[str, ...], d_in: int, d_val: int):
        self.gates, self.d_in, self.d_val = gates, d_in, d_val
        self.blocks: list[dict] = []
        self.H = 0

    def add(self, size: int, *, W: dict | None = None, b: dict | None = None, rec: dict | None = None,
            b_rec: dict | None = None, h0: Vector | None = None, c0: Vector | None = None,
            decode: Matrix | None = None, role: str = "") -> int:
        """Add a block; returns its offset (the index of its first unit)."""
        if size == 0:
            return self.H
        for g in (W or {}):
            if g not in self.gates:
                raise ValueError(f"unknown gate {g!r}")
        offset = self.H
        self.blocks.append(dict(size=size, W=W or {}, b=b or {}, rec=rec or {}, b_rec=b_rec or {}, h0=h0, c0=c0,
                                decode=decode if decode is not None else Matrix.zeros(self.d_val, size),
                                role=role, offset=offset))
        self.H += size
        return offset

    def build(self) -> tuple[dict, Matrix, list[dict]]:
        """``(attrs, D, roles)``: the op's weight attributes (gates stacked in ``self.gates`` order), the
        decoding matrix (``d_val × H``) and the unit ranges of every block."""
        if self.H == 0:  # a layer needs at least one unit: an idle one (all weights 0)
            self.add(1, role="idle")
        H = self.H
        w_ih, w_hh, b_ih, b_hh = [], [], [], []
        for g in self.gates:
            for blk in self.blocks:
                n = blk["size"]
                w_ih.append(blk["W"].get(g, Matrix.zeros(n, self.d_in)))
                b_ih.append(blk["b"].get(g, Vector.zeros(n)))
                b_hh.append(blk["b_rec"].get(g, Vector.zeros(n)))
                rec = Matrix.zeros(n, H)
                for m, off in blk["rec"].get(g, []):
                    rec = rec + m @ placement(m.shape[1], off, H)
                w_hh.append(rec)
        attrs = {"W_ih": Matrix.vstack(w_ih), "W_hh": Matrix.vstack(w_hh), "b_ih": Vector.concat(b_ih),
                 "b_hh": Vector.concat(b_hh),
                 "h0": Vector.concat([blk["h0"] if blk["h0"] is not None else Vector.zeros(blk["size"])
                                      for blk in self.blocks])}
        if any(blk["c0"] is not None for blk in self.blocks):
            attrs["c0"] = Vector.concat([blk["c0"] if blk["c0"] is not None else Vector.zeros(blk["size"])
                                         for blk in self.blocks])
        D = Matrix.hstack([blk["decode"] for blk in self.blocks])
        roles = [{"role": blk["role"], "start": blk["offset"], "end": blk["offset"] + blk["size"]}
                 for blk in self.blocks]
        return attrs, D, roles


def const_vector(n: int, value) -> Vector:
    return Vector([value] * n)


def relu_vec(v: Vector) -> Vector:
    vals = v.values.tolist()
    return Vector([x if x > 0 else 0 * x for x in vals], exact=v.exact)


# ------------------------------------------------------------------------------------------ stage analysis

def signs_of(lo: float, hi: float) -> list[int]:
    """Signs a ReLU-based representation needs: ``[+1]`` for ``v ≥ 0``, ``[-1]`` for ``v ≤ 0``, both
    otherwise, none for ``v ≡ 0``."""
    if lo >= 0 and hi <= 0:
        return []
    if lo >= 0:
        return [1]
    if hi <= 0:
        return [-1]
    return [1, -1]


@dataclass
class ProductPlan:
    """An M stage split into constants, linear carriers (one operand constant) and true products.

    ``W, c`` is the stage's pre-map already composed with the incoming decoder (rows ``0..h-1`` = first
    operands ``u``, ``h..2h-1`` = second operands ``w``)."""
    h: int
    const: Vector                     # value of every coordinate that is constant (0 elsewhere)
    lin_rows: Matrix                  # carriers: rows (n_lin × d_in) ...
    lin_bias: Vector
    lin_slot: list[int]               # ... the value coordinate each carrier adds to (coefficient 1)
    lin_lo: np.ndarray
    lin_hi: np.ndarray
    prod: list[int]                   # value coordinates that are true products u_j · w_j
    U: Matrix
    cu: Vector
    V: Matrix
    cv: Vector
    ulo: np.ndarray
    uhi: np.ndarray
    vlo: np.ndarray
    vhi: np.ndarray


def plan_products(st: Stage, W: Matrix, c: Vector) -> ProductPlan:
    h = st.out_dim
    U, V = W.rows(range(h)), W.rows(range(h, 2 * h))
    cu, cv = c[np.arange(h)], c[np.arange(h, 2 * h)]
    ulo, uhi = st.pre_lo[:h], st.pre_hi[:h]
    vlo, vhi = st.pre_lo[h:], st.pre_hi[h:]
    u_const, v_const = row_is_constant(U), row_is_constant(V)
    const = [0] * h
    lin_parts, lin_bias, lin_slot, lin_lo, lin_hi = [], [], [], [], []
    prod = []
    cu_vals, cv_vals = cu.values.tolist(), cv.values.tolist()
    for j in range(h):
        if u_const[j] and v_const[j]:
            const[j] = cu_vals[j] * cv_vals[j]
        elif u_const[j] or v_const[j]:
            k, rows, bias, lo, hi = ((cu_vals[j], V, cv_vals[j], vlo[j], vhi[j]) if u_const[j]
                                     else (cv_vals[j], U, cu_vals[j], ulo[j], uhi[j]))
            if k == 0:
                continue
            lin_parts.append(rows.rows([j]).scale(k))
            lin_bias.append(bias * k)
            lin_slot.append(j)
            fk = float(k)
            lin_lo.append(min(fk * lo, fk * hi))
            lin_hi.append(max(fk * lo, fk * hi))
        else:
            prod.append(j)
    d = W.shape[1]
    return ProductPlan(
        h=h, const=Vector(const), lin_rows=Matrix.vstack(lin_parts) if lin_parts else Matrix.zeros(0, d),
        lin_bias=Vector(lin_bias) if lin_bias else Vector.zeros(0), lin_slot=lin_slot,
        lin_lo=np.asarray(lin_lo, dtype=float), lin_hi=np.asarray(lin_hi, dtype=float), prod=prod,
        U=U, cu=cu, V=V, cv=cv, ulo=ulo, uhi=uhi, vlo=vlo, vhi=vhi)


def slot_matrix(d_val: int, slots: list[int], coeffs) -> Matrix:
    """``d_val × len(slots)``: column i adds ``coeffs[i]`` times unit i to value coordinate ``slots[i]``."""
    coeffs = list(coeffs)
    return selection((d_val, len(slots)), [(s, i, coeffs[i]) for i, s in enumerate(slots)])


def stage_state_bounds(st: Stage) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of an S stage's state including ``s_0`` (the representation must also hold the initial state)."""
    init = st.init.to_float().values
    return np.minimum(st.lo, init), np.maximum(st.hi, init)
