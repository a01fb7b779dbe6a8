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

Range analysis (``lsrl.passes.range_analysis.RangeAnalysis`` on the layer-form module: boxes, with groups of
ReLU units of one scalar bounded exactly, so f_step-like differences get [0, 1]) decides which values are
provably non-negative (no ± split), bounds product operands (the gate operand of a product unit) and chooses the
standard-mode scales.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from ...errors import CompileError
from ...ir.core import Module, Op
from ...ir.error_free import lowest_bit
from ...ir.layer_form import check_layer_form
from ...ir.matrix import Matrix, Vector, matvec
from ...passes.range_analysis import RangeAnalysis

__all__ = ["Stage", "LayerForm", "Decoder", "layer_stages", "sign_split", "pow2_at_most", "capped_scale",
           "MAX_WEIGHT_LOG2", "scale_rows",
           "vscale", "vneg", "vadd", "selection", "finish_module", "ensure_bounded", "StandardConstants",
           "STANDARD", "row_is_constant", "DelayLine", "delay_line", "dropped_taps_budget", "ConvSum",
           "conv_sum_fields", "SPLIT_PARTS_REACH",
           "kept_lags", "DROPPED_TAPS_SHARE", "WINDOW_SEARCH"]


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


#: every scaled weight stays below 2^MAX_WEIGHT_LOG2, and a scale's inverse above 2^-MAX_WEIGHT_LOG2: finite and
#: normal in float32 (whose range is 2^±126)
MAX_WEIGHT_LOG2 = 120


def magnitude_bound(lo, hi) -> float:
    """The largest ``|v|`` of ``v ∈ [lo, hi]``."""
    return float(max(abs(lo), abs(hi)))


def capped_scale(span: float, bound: float, largest_weight: float = 0.0, *, unbounded: float = 1.0) -> float:
    """The power of two ``s`` with ``s·bound ≤ span`` (``unbounded`` for an infinite ``bound``, 1 for 0), at most
    ``2^MAX_WEIGHT_LOG2`` and with ``s·largest_weight ≤ 2^MAX_WEIGHT_LOG2``: the weights it scales stay finite in
    float32 and ``1/s`` stays a normal float32."""
    if bound == 0:
        return 1.0
    scale = pow2_at_most(span / bound) if math.isfinite(bound) else unbounded
    if largest_weight > 0:
        scale = min(scale, pow2_at_most(2.0 ** MAX_WEIGHT_LOG2 / largest_weight))
    return min(scale, 2.0 ** MAX_WEIGHT_LOG2)


def pow2_at_least(x: float) -> float:
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"pow2_at_least: need a positive finite number, got {x}")
    p = pow2_at_most(x)
    return p if p == x else 2 * p


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
    #: the range analysis the bounds came from (for analyses of the same module that share it)
    ranges: RangeAnalysis | None = None


def layer_stages(module: Module, t_max: int | None = None) -> LayerForm:
    """Read a layer-form module as stages + readout, with bounds of every pre-activation and value."""
    chain = check_layer_form(module, "lower", CompileError)
    analysis = RangeAnalysis(module, t_max)
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
        lo, hi = analysis(op)
        plo, phi = analysis(prev)
        if op.kind == "linstate":
            b_mat, bias = op.attrs["B"], op.attrs["bias"]
            stage = Stage("S", op, b_mat if identity else b_mat @ W,
                          bias if identity else matvec(b_mat, c) + bias,
                          *analysis.drive(op), lo, hi, A=op.attrs["A"], init=op.attrs["init"])
        else:
            stage = Stage("R" if op.kind == "relu" else "M", op, W, c, plo, phi, lo, hi)
        stage.index = len(stages)
        stage.chain_index = position
        stages.append(stage)
        W, c, identity = Matrix.identity(op.dim), Vector.zeros(op.dim), True
        prev = op
    return LayerForm(inp, stages, W, c, dict(module.metadata), module.name, chain[-1].kind == "linear", analysis)


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
      (2^-40: below float64 rounding; a leak-cancelling pair leaves ≤ rho²/3·max|x| after a ReLU turns
      off, which conditionals with λ = 1e10 amplify — so rho must be tiny).
    * ``rho_gate`` — the gate operand of a product enters σ as ``ε_g g`` and ``2 ε_g g`` with
      ``|ε_g g| ≤ rho_gate``: with D(a) = σ(a) − σ(−a) = tanh(a/2), (8 D(a) − D(2a))/3 = a − a⁵/30, so the
      truncation error is ≤ rho_gate⁴/30 (1.2e-10 at 2^-7) and the cancellation costs ≈ 6·u/rho_gate·B_g|v|
      (u = unit roundoff: 1e-13 in float64, 5e-5 in float32 at 2^-7); :meth:`for_dtype` balances the two.
    * ``kappa_span`` — a ReLU's step gate is σ(κx) with ``κ·max|x| = kappa_span``: exact (saturated) for
      ``|x| ≥ 745·max|x|/kappa_span`` on the negative side and ``37·max|x|/kappa_span`` on the positive
      (float64; 89 and 17 in float32).  2^80 keeps weights ``κ W/ε`` below 2^120 (finite in float32).
    """
    gate: float = 1024.0
    rho: float = 2.0 ** -40
    rho_gate: float = 2.0 ** -7
    kappa_span: float = 2.0 ** 80
    max_weight_log2: int = MAX_WEIGHT_LOG2  # κ is also capped so that every gate weight stays below it

    def for_dtype(self, dtype: str) -> "StandardConstants":
        """The constants for a model compiled to run in ``dtype``.  float32: ``rho_gate = 2^-4``, where the
        product's truncation (2^-16/30 = 5e-7) and its cancellation (≈ 6·2^-24/2^-4 = 6e-6) are closest —
        measured 8–10× more accurate in float32 than 2^-7 (continuous program 1.4e-4 → 1.6e-5 relative), whose
        1.2e-10 truncation only float64 can use."""
        return replace(self, rho_gate=2.0 ** -4) if dtype == "float32" else self


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


# ------------------------------------------------------------------------------------------ layer assembly

def placement(m: int, offset: int, total: int) -> Matrix:
    """``m × total`` matrix with ones at ``(i, offset + i)``: places a block's columns in a wider layer."""
    return selection((m, total), [(i, offset + i, 1) for i in range(m)])


class UnitBlocks:
    """Assembles one recurrent target layer from blocks of units.

    Each block of ``size`` units gives, per gate, the rows reading the layer input (``W``, ``size × d_in``)
    and the input bias ``b``; optionally rows reading the layer's own previous hidden state
    (``rec[gate] = [(M, offset)]``, ``M`` of shape ``size × m`` reading units ``offset .. offset+m-1``) and
    recurrent biases ``b_rec`` (kept apart where a cell gates its recurrent term); initial ``h0``/``c0``; and its
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


# ------------------------------------------------------------------------------------------ delay lines

#: a delay line's window ends once the taps it drops move its state by at most this share of the state's bound
DROPPED_TAPS_SHARE = 2.0 ** -60
#: without t_max, how many powers of A a window is searched within
WINDOW_SEARCH = 8192


@dataclass
class DelayLine:
    """An S stage computed as a conv over its drives: row ``i`` sums taps ``(A^j)[i, :]`` for ``j < windows[i]``
    (None: no window found within the search).  For ``t > windows[i]`` the exact state is
    ``(A^w s_{t−w})_i + Σ_{j<w} (A^j (W h_{t−j} + c))_i`` and the window's constant part holds ``A^w s_0``, so the
    dropped taps move row ``i`` by ``(A^w (s_{t−w} − s_0))_i``, at most ``dropped[i]`` over the state's bounds
    (0 where ``(A^w)[i, :] = 0`` or the window is ``t_max``)."""
    powers: list            # A^0 … A^(longest window)
    windows: list           # per row: int | None
    dropped: np.ndarray     # per row


def delay_line(st: Stage, rows, t_max: int | None, most: int | None = None) -> DelayLine:
    """The windows of ``rows`` of S stage ``st``: the first power where the row of ``A^w`` vanishes or moves the
    state by at most :data:`DROPPED_TAPS_SHARE` of its bound (a contraction over bounded values), else ``t_max``;
    the search stops at ``t_max`` (:data:`WINDOW_SEARCH` without one) or past ``most`` powers, leaving the rows
    still open at None (``t_max`` bounds them only when reached)."""
    A = st.A.to_float().to_dense()
    k = A.shape[0]
    lo, hi = stage_state_bounds(st)
    s0 = st.init.to_float().values.astype(np.float64)
    spread = np.maximum(np.abs(lo - s0), np.abs(hi - s0))
    share = dropped_taps_budget(st)
    limit = t_max if t_max is not None else WINDOW_SEARCH
    stop = limit if most is None else min(limit, most + 1)
    powers = [np.eye(k)]
    windows: list = [None] * k
    dropped = np.zeros(k)
    open_rows = [int(i) for i in rows]
    w = 0
    while open_rows and w < stop:
        w += 1
        powers.append(powers[-1] @ A)
        row_powers = powers[-1]
        still = []
        for i in open_rows:
            reach = np.abs(row_powers[i])
            moved = float(np.sum(reach[reach > 0] * spread[reach > 0]))   # inf where an unbounded state is read
            if w == t_max:
                windows[i] = w   # exact for every t ≤ t_max
            elif not reach.any() or moved <= share[i]:
                windows[i], dropped[i] = w, moved
            else:
                still.append(i)
        open_rows = still
    longest = max([x for x in windows if x is not None], default=0)
    return DelayLine(powers[:longest + 1], windows, dropped)


#: a value read in a hi and a lo part: the parts reach at most this times the value (|lo| ≤ 2^-24·|value|)
SPLIT_PARTS_REACH = 1.0 + 2.0 ** -22


@dataclass
class ConvSum:
    """One state row that a target computes each step by sums of products ``tap·value`` over a delay line: its
    products — what each reaches (``tap·bound`` of its value; a value read in ``parts`` is that many products
    reaching it together), how far the partial sum it is added to may reach, and the lowest bit of its factors
    other than the value — and every weight it stores.  Constant taps read an exact 1 (``exact``: no value)."""
    reaches: list = field(default_factory=list)
    limits: list = field(default_factory=list)
    bits: list = field(default_factory=list)
    gain: float = 0.0          # Σ |tap| over the products of values (what their errors move the sum by)
    weights: list = field(default_factory=list)

    def products(self, taps, bounds, parts, limits, *, constant: bool = False, bits=None) -> None:
        """Add products (arguments broadcast together; zero taps are none); ``limits``: of the partial sums they
        are added to; ``bits``: the lowest bit of their factors other than the value (default: the tap's)."""
        bits = lowest_bit(np.asarray(taps, dtype=np.float64)) if bits is None else bits
        taps, bounds, parts, limits, bits = (np.ravel(a) for a in np.broadcast_arrays(taps, bounds, parts, limits,
                                                                                      bits))
        kept = taps != 0
        taps, bounds, parts, limits, bits = (taps[kept], bounds[kept], parts[kept].astype(np.int64), limits[kept],
                                             bits[kept])
        with np.errstate(invalid="ignore"):
            reach = np.abs(taps) * bounds * np.where(parts > 1, SPLIT_PARTS_REACH, 1.0) / parts
        self.reaches.extend(np.repeat(reach, parts).tolist())
        self.limits.extend(np.repeat(limits, parts).tolist())
        self.bits.extend(np.repeat(bits, parts).tolist())
        if not constant:
            self.gain += float(np.sum(np.abs(taps)))


def conv_sum_fields(dim: int, rows: dict) -> dict:
    """The conv fields of a state op's ``local_errors`` (``ErrorAnalysis._conv_rounding`` of
    :mod:`lsrl.passes.error_bound`) for the rows ``{row: ConvSum}`` a delay line computes: per row the number of
    products, what they reach together, the taps' sum, their lowest bit, whether float32 stores every weight, and
    per dtype what the sums may round with every value at its bound.  Adding a product ``y`` to a partial sum
    ``p`` rounds by at most ``min(u·|p + y|, |y|)`` (``p`` itself is a candidate), so a delay line's long tail of
    small taps costs what it adds, not ``u`` of the sum per tap; the partial sums stay within their limits plus
    the rounding so far; each product rounds ``u`` of itself, and a weight the dtype does not hold is off by
    ``u`` of it."""
    names = ("conv_terms", "conv_reach", "conv_gain", "conv_tap_bit", "conv_float32", "conv_rounding32",
             "conv_rounding64")
    fields = {name: np.zeros(dim) for name in names}
    for r, conv in rows.items():
        reaches, limits = np.asarray(conv.reaches, dtype=np.float64), np.asarray(conv.limits, dtype=np.float64)
        weights = np.asarray(conv.weights, dtype=np.float64)
        weights = weights[weights != 0]
        float32_weights = bool(np.all((weights.astype(np.float32) == weights)
                                      & (np.abs(weights) >= np.finfo(np.float32).tiny)))
        n, reach = reaches.size, float(np.sum(reaches))
        fields["conv_terms"][r] = n
        fields["conv_reach"][r] = reach
        fields["conv_gain"][r] = conv.gain
        fields["conv_tap_bit"][r] = min(conv.bits, default=0)
        fields["conv_float32"][r] = float(float32_weights)
        for name, dtype, stored in (("conv_rounding32", np.float32, float32_weights),
                                    ("conv_rounding64", np.float64, True)):
            u, step = float(np.finfo(dtype).eps) / 2, float(np.finfo(dtype).smallest_subnormal)
            grown = (1.0 + 2 * n * u) if n * u < 0.25 else math.inf
            with np.errstate(invalid="ignore"):
                added = np.minimum(u * (limits + reaches) * grown, reaches)
            fields[name][r] = float(np.sum(added)) + (1 if stored else 2) * u * reach + 2 * n * step
    return fields


def dropped_taps_budget(st: Stage) -> np.ndarray:
    """Per coordinate of S stage ``st``: how far dropped taps may move it (:data:`DROPPED_TAPS_SHARE` of its
    bound; 0 where it is unbounded)."""
    lo, hi = stage_state_bounds(st)
    size = np.maximum(np.abs(lo), np.abs(hi))
    return np.where(np.isfinite(size), DROPPED_TAPS_SHARE * size, 0.0)


def kept_lags(taps: np.ndarray, bound: float, budget: float) -> tuple[int, float]:
    """How many leading lags of one conv entry's ``taps`` to keep so that the lags dropped after them move its sum
    over an input within ``±bound`` by at most ``budget`` — and by how much they may (the window past which a
    row reading a state that does not decay still has entries that do)."""
    magnitudes = np.abs(np.asarray(taps, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        reach = np.where(magnitudes > 0, magnitudes * bound, 0.0)
    beyond = np.cumsum(reach[::-1])[::-1]       # beyond[m]: what lags m, m+1, … reach together
    keep = int(np.count_nonzero(~(beyond <= budget)))
    return keep, float(beyond[keep]) if keep < beyond.size else 0.0
