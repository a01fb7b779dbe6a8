"""Target ``mamba`` (targets.md §9, decision D10): Hugging Face ``MambaModel`` blocks, one per stage of the layer
form.

Op ``mamba_block`` holds exactly the parameters of one HF ``MambaBlock`` (attributes named after its tensors) and
runs HF's equations (``transformers.models.mamba.modeling_mamba``, the sequential CPU path)::

    n      = norm_weight · r · rsqrt(mean(r²) + norm_eps)            RMSNorm (r: the residual stream, width H)
    u0, z  = split(in_proj_weight n + in_proj_bias)                   E channels each
    u      = act(conv1d(u0) + conv1d_bias)                            depthwise causal, width K, HF tap order
                                                                      (conv1d_weight[e, K-1] reads the current step)
    δ, B, C = split(x_proj_weight u)                                  R + N + N
    Δ      = softplus(dt_proj_weight δ + dt_proj_bias)                torch's softplus (identity above 20)
    S[e,n] = exp(Δ_e A[e,n]) S[e,n] + Δ_e B[n] u_e,   A = −exp(A_log)
    y_e    = Σ_n C[n] S[e,n] + D_e u_e
    r'     = r + out_proj_weight (y ⊙ gate(z)) + out_proj_bias

``act`` is the config's ``hidden_act``: ``relu`` in ideal mode, ``silu`` (the default) in standard mode.  HF's
gate is *always* SiLU (hard-coded in ``mamba_selective_scan``); ideal mode replaces it by ReLU (the paper's
"every SiLU becomes ReLU").  Every gate argument the lowering produces is ≥ 64, where float64/float32 SiLU is
exactly the identity, except a product's: a standard one's ``σ g`` with ``|σ g| ≤ 2^-56``, where
``silu(σ g) = σ g/2`` exactly, else ``±σ g``: ``relu(y) − relu(−y) = silu(y) − silu(−y) = y``, so both give the
product, up to the rounding of transformers' SiLU (which the error bound counts).  The first block also has
``embed`` (H × d): the program input placed in the residual stream (``lsrl_io.json``'s ``input_slots``; HF's
``inputs_embeds``).  State parts:
``conv`` (the last K − 1 conv inputs u0, ``(B, E, K−1)``) and ``ssm`` (``(B, E, N)``).  No exact arithmetic
(rsqrt, exp, softplus): ``exact=True`` raises.  The C++ kernel runs it (csrc/blocks/mamba.cpp), bit for bit as
here in float64: ``RMSNorm``'s mean and the read-out ``Σ_n C S`` sum in index order, the projections are sparse.

Construction (docs/mamba.md, which derives it and gives the error bounds): RMSNorms neutralised (eps = 2^120,
weight 2^60), every channel gated by a constant z = 64 (out_proj divides by 64); a *split* block before every stage
block and before ``norm_f`` copies fl32(v) of each value to a hi slot and leaves v − fl32(v) in place, so that
HF's float32 casts (its RMSNorm, the scan input, ``dt_proj.bias``) round nothing.  A linear value is carried by
``act(±a)`` channels in ideal mode, and in standard mode by one channel ``(2/ε)·silu(ε a)``, exact while
``|ε a| ≤ 2^-56`` (σ rounds to 1/2 there).  S stages: diagonal {0, 1} rows integrate in
the SSM (A_log = −1024 ⇒ decay exactly 1, the weight in Δ through ``dt_proj.weight``), every other row (rotations,
shifts, decays) in the depthwise conv with taps (A^j)[i, q] (window = the smallest L with A^L[i,:] = 0 or, for a
decay, whose dropped taps move the state by at most 2^-60 of its bound, else t_max).  R stages: ReLU or
SiLU(κx)/κ.  M stages: (u·act(σ v) − u·act(−σ v))/σ through the gate, in standard mode one exact channel
(2/ε)·silu(ε u) gated by silu(σ v) = σ v/2.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit

from ..errors import CompileError, LsrlError
from ..ir.core import AttrSpec, Module, Op, OpDef, ShapeProblem, register_op
from ..ir.error_free import lowest_bit
from ..ir.matrix import Matrix, Vector
from ..ir.semantics import relu_values
from ..passes.error_bound import local_error_entry, zero_safe_product
from .registry import Target, register_target
from .shared.cells import csr_arrays
from .shared.common import (
    MAX_WEIGHT_LOG2,
    WINDOW_SEARCH,
    ConvSum,
    capped_scale,
    conv_sum_fields,
    delay_line,
    dropped_taps_budget,
    kept_lags,
    layer_stages,
    magnitude_bound,
    plan_products,
    pow2_at_most,
    signs_of,
    stage_state_bounds,
)
from .shared.numerics import (FLOAT32_SQUARES, causal_conv, dense, mean_square, ordered_sum, stream_squares,
                              torch_softplus, vector)
from .shared.standard import ACTIVATION_ULPS, power_norm_sum

__all__ = ["KIND", "MambaTarget", "hf_config"]

KIND = "mamba_block"

NORM_EPS = 2.0 ** 120        # RMSNorm eps: rsqrt(mean + eps) = 2^-60 exactly while mean(r²) is small
NORM_WEIGHT = 2.0 ** 60      # ... and the weight undoes it
GATE = 64.0                  # constant gate argument: silu(64) = relu(64) = 64 exactly (float32 and float64)
SRC = 64.0                   # the constant channel feeding B and C
DT_ON = 32.0                 # softplus(32) = 32 exactly (torch: identity above 20)
DT_OFF = -1024.0             # softplus(−1024) = 0 exactly: the channel's SSM state stays 0
A_LOG_HOLD = -1024.0         # A = −exp(−1024) = −0 ⇒ exp(Δ A) = 1: an exact integrator
SILU_IDENTITY = 37.0         # silu(x) = x exactly for x ≥ 37 (float64; 17 in float32): 1 + exp(−x) rounds to 1
GATE_SPAN = 64.0             # a product's gate operand is scaled to |σ g| ≤ 64
KAPPA_SPAN = 2.0 ** 80       # standard-mode ReLU ≈ silu(κx)/κ with κ·max|x| = KAPPA_SPAN
SILU_RELU_ERROR = 0.2785     # max |silu(x) − relu(x)| (at x ≈ −1.28)
#: |y| ≤ 2^-56: exp(−y) rounds to 1 (within an ulp), so σ(y) = 1/2 and silu(y) = y/2 exactly in float64 and
#: float32 — a standard-mode channel reading ε·a (ε a power of two, ε|a| ≤ EXACT_SPAN) carries a bit for bit
EXACT_SPAN = 2.0 ** -56
#: ... unless ε·a is subnormal in float32: each of its roundings (the in_proj terms, the halving) is then at most
#: 2^-150, i.e. 2^-126 per float32 unit roundoff, 2/ε times that in the carried value
UNDERFLOW_ULPS = 2.0 ** -126
#: a value carried by silu(±κa)/κ rounds only where |κa| < 37 (silu is exact beyond): by a few ulps of at most
#: (37 + 2·SILU_RELU_ERROR)/κ; every value goes through at most this many such carries (split, read, clears)
SCALED_CARRIES = 8


# ------------------------------------------------------------------------------------------ the op

def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeProblem(message)


_ATTRS = {
    "norm_weight": AttrSpec("vector", doc="layers.k.norm.weight (H)"),
    "norm_eps": AttrSpec("number", doc="config.layer_norm_epsilon"),
    "in_proj_weight": AttrSpec("matrix", doc="mixer.in_proj.weight (2E × H): rows 0..E−1 the SSM input, E..2E−1 the gate"),
    "in_proj_bias": AttrSpec("vector", doc="mixer.in_proj.bias (2E)"),
    "conv1d_weight": AttrSpec("matrix", doc="mixer.conv1d.weight[:, 0, :] (E × K); column K−1 reads the current step"),
    "conv1d_bias": AttrSpec("vector", doc="mixer.conv1d.bias (E)"),
    "x_proj_weight": AttrSpec("matrix", doc="mixer.x_proj.weight ((R + 2N) × E): δ, B, C"),
    "dt_proj_weight": AttrSpec("matrix", doc="mixer.dt_proj.weight (E × R)"),
    "dt_proj_bias": AttrSpec("vector", doc="mixer.dt_proj.bias (E)"),
    "A_log": AttrSpec("matrix", doc="mixer.A_log (E × N)"),
    "D": AttrSpec("vector", doc="mixer.D (E)"),
    "out_proj_weight": AttrSpec("matrix", doc="mixer.out_proj.weight (H × E)"),
    "out_proj_bias": AttrSpec("vector", doc="mixer.out_proj.bias (H)"),
    "activations": AttrSpec("str", doc="'ideal' (hidden_act relu, gate relu) or 'standard' (silu)"),
    "embed": AttrSpec("matrix", False, "first block only: H × d placement of the program input (inputs_embeds)"),
}


def _infer(op: Op) -> int:
    a = op.attrs
    H = len(a["norm_weight"])
    e2, h2 = a["in_proj_weight"].shape
    _check(h2 == H and e2 % 2 == 0 and e2 > 0, f"in_proj_weight is {e2}x{h2}, expected 2E x {H}")
    E = e2 // 2
    _check(len(a["in_proj_bias"]) == e2, f"in_proj_bias has length {len(a['in_proj_bias'])}, expected {e2}")
    _check(a["conv1d_weight"].shape[0] == E and a["conv1d_weight"].shape[1] >= 1,
           f"conv1d_weight is {a['conv1d_weight'].shape}, expected {E} x K")
    _check(len(a["conv1d_bias"]) == E, "conv1d_bias must have length E")
    E_, N = a["A_log"].shape
    _check(E_ == E and N >= 1, f"A_log is {a['A_log'].shape}, expected {E} x N")
    R = a["dt_proj_weight"].shape[1]
    _check(a["dt_proj_weight"].shape[0] == E and R >= 1, f"dt_proj_weight is {a['dt_proj_weight'].shape}, expected {E} x R")
    _check(a["x_proj_weight"].shape == (R + 2 * N, E), f"x_proj_weight is {a['x_proj_weight'].shape}, expected "
                                                       f"{(R + 2 * N, E)}")
    _check(len(a["dt_proj_bias"]) == E and len(a["D"]) == E, "dt_proj_bias and D must have length E")
    _check(a["out_proj_weight"].shape == (H, E), f"out_proj_weight is {a['out_proj_weight'].shape}, expected {(H, E)}")
    _check(len(a["out_proj_bias"]) == H, "out_proj_bias must have length H")
    _check(a.get("activations") in ("ideal", "standard"), f"activations must be 'ideal' or 'standard', got "
                                                          f"{a.get('activations')!r}")
    d = op.operands[0].dim
    emb = a.get("embed")
    if emb is not None:
        _check(emb.shape == (H, d), f"embed is {emb.shape}, expected {(H, d)}")
    else:
        _check(d == H, f"the operand has dim {d} but the residual stream has width {H} (give embed)")
    return H


def _silu(x):
    return x * expit(x)


def decay_rates(op: Op) -> np.ndarray:
    """``A = −exp(A_log)`` (E × N), as the semantics and the kernel descriptor both use it."""
    return -np.exp(dense(op.attrs["A_log"]))


def initial_state(op: Op, batch: int) -> tuple:
    E, K = op.attrs["conv1d_weight"].shape
    N = op.attrs["A_log"].shape[1]
    return np.zeros((batch, E, K - 1)), np.zeros((batch, E, N))


def run(op: Op, inputs: list, state, ctx):
    if ctx.exact:
        raise LsrlError(f"{op.describe()}: a Mamba block computes rsqrt, exp and softplus, which have no exact "
                        "(rational) evaluation; run it with exact=False")
    (x,) = inputs
    x = np.asarray(x, dtype=np.float64)
    a = op.attrs
    batch, T = x.shape[0], x.shape[1]
    conv_state, S = initial_state(op, batch) if state is None else state
    emb = a.get("embed")
    r = emb.apply(x) if emb is not None else x
    E, K = a["conv1d_weight"].shape
    N = a["A_log"].shape[1]
    R = a["dt_proj_weight"].shape[1]
    act = relu_values if a["activations"] == "ideal" else _silu
    # RMSNorm (HF computes it in float32; see docs/mamba.md)
    n = vector(a["norm_weight"]) * (r * (1.0 / np.sqrt(mean_square(r) + float(a["norm_eps"]))))
    proj = a["in_proj_weight"].apply(n) + vector(a["in_proj_bias"])
    u0, z = proj[..., :E], proj[..., E:]
    # causal depthwise conv: position t reads u0 at t−K+1 .. t with taps 0 .. K−1
    full = np.concatenate([np.transpose(conv_state, (0, 2, 1)), u0], axis=1)  # (B, K−1+T, E)
    conv = causal_conv(full, dense(a["conv1d_weight"]), np.zeros((batch, T, E))) + vector(a["conv1d_bias"])
    new_conv = np.transpose(full[:, full.shape[1] - (K - 1):, :], (0, 2, 1)).copy() if K > 1 else conv_state
    u = act(conv)
    xp = a["x_proj_weight"].apply(u)
    delta, Bt, Ct = xp[..., :R], xp[..., R:R + N], xp[..., R + N:]
    dt = torch_softplus(a["dt_proj_weight"].apply(delta) + vector(a["dt_proj_bias"]))
    A = decay_rates(op)
    Dv = vector(a["D"])
    y = np.empty((batch, T, E))
    S = np.array(S, dtype=np.float64, copy=True)
    for t in range(T):
        dA = np.exp(dt[:, t, :, None] * A)
        S = dA * S + (dt[:, t, :, None] * Bt[:, t, None, :]) * u[:, t, :, None]
        y[:, t] = ordered_sum(S * Ct[:, t, None, :]) + u[:, t] * Dv
    gate = relu_values(z) if a["activations"] == "ideal" else _silu(z)
    out = a["out_proj_weight"].apply(y * gate) + vector(a["out_proj_bias"])
    return r + out, (new_conv, S)


def kernel_node(op: Op, dtype: np.dtype) -> dict:
    """The kernel's ``mamba_block`` node (csrc/blocks/mamba.cpp): in_proj and x_proj split at their row blocks
    (each row sums alone, so the split changes nothing), the dense conv taps and ``A`` flattened row-major."""
    a = op.attrs
    E, K = a["conv1d_weight"].shape
    N = a["A_log"].shape[1]
    R = a["dt_proj_weight"].shape[1]
    emb = a.get("embed")
    in_bias = vector(a["in_proj_bias"]).astype(dtype)
    return {"kind": KIND, "E": E, "N": N, "K": K, "R": R,
            "embed": None if emb is None else csr_arrays(emb, dtype),
            "in_x": csr_arrays(a["in_proj_weight"], dtype, slice(0, E)),
            "in_z": csr_arrays(a["in_proj_weight"], dtype, slice(E, 2 * E)),
            "x_dt": csr_arrays(a["x_proj_weight"], dtype, slice(0, R)),
            "x_B": csr_arrays(a["x_proj_weight"], dtype, slice(R, R + N)),
            "x_C": csr_arrays(a["x_proj_weight"], dtype, slice(R + N, R + 2 * N)),
            "dt_proj": csr_arrays(a["dt_proj_weight"], dtype), "out_proj": csr_arrays(a["out_proj_weight"], dtype),
            "norm_weight": vector(a["norm_weight"]).astype(dtype), "in_bias_x": in_bias[:E].copy(),
            "in_bias_z": in_bias[E:].copy(), "conv_weight": dense(a["conv1d_weight"]).astype(dtype).ravel(),
            "conv_bias": vector(a["conv1d_bias"]).astype(dtype), "dt_bias": vector(a["dt_proj_bias"]).astype(dtype),
            "A": decay_rates(op).astype(dtype).ravel(), "D": vector(a["D"]).astype(dtype),
            "out_bias": vector(a["out_proj_bias"]).astype(dtype), "norm_eps": float(a["norm_eps"]),
            "ideal": a["activations"] == "ideal", "init": np.zeros(E * (K - 1) + E * N, dtype=dtype),
            "state_layout": [((E, K - 1), np.float64), ((E, N), np.float64)]}


register_op(OpDef(KIND, "Hugging Face MambaBlock: RMSNorm, in_proj, causal depthwise conv, selective scan, gate, "
                        "out_proj, residual", _infer, attrs=_ATTRS, stateful=True, run=run, kernel=kernel_node,
                  state_parts=("conv", "ssm")))


# ------------------------------------------------------------------------------------------ lowering

@dataclass
class _Channel:
    u_row: dict = field(default_factory=dict)    # residual slot -> in_proj coefficient (SSM input half)
    u_bias: float = 0.0
    z_row: dict = field(default_factory=dict)    # residual slot -> in_proj coefficient (gate half)
    z_bias: float = GATE
    taps: dict = field(default_factory=lambda: {0: 1.0})  # lag -> conv weight
    conv_bias: float = 0.0
    ssm: bool = False                            # integrate (Δ = dt, A = −0) or not (Δ = 0)
    dt: float = DT_ON                            # Δ of an integrating channel (softplus(dt) = dt above 20)
    src: bool = False                            # the constant channel producing B and C
    D: float = 1.0
    out: dict = field(default_factory=dict)      # residual slot -> out_proj coefficient
    role: str = ""


class _Block:
    def __init__(self):
        self.channels: list[_Channel] = []
        self.out_bias: dict = {}
        self.src: _Channel | None = None

    def add(self, **kw) -> _Channel:
        ch = _Channel(**kw)
        self.channels.append(ch)
        return ch

    def bias(self, slot: int, value: float) -> None:
        if value:
            self.out_bias[slot] = self.out_bias.get(slot, 0.0) + value

    def source(self) -> _Channel:
        """The constant channel u = SRC driving B = 1/32, C = 1 (so that Δ B = 1)."""
        if self.src is None:
            self.src = self.add(u_bias=0.0, taps={}, conv_bias=SRC, ssm=True, src=True, D=0.0, role="source")
        return self.src

    @property
    def window(self) -> int:
        return max([max(ch.taps, default=0) + 1 for ch in self.channels], default=1)


def _row(vec: np.ndarray, slots: list, scale: float = 1.0) -> dict:
    """Coefficients over residual slots; a value held in several slots (hi and lo of a split) is read from
    all of them."""
    out: dict = {}
    for m, v in enumerate(vec):
        if v == 0:
            continue
        for slot in (slots[m] if isinstance(slots[m], (tuple, list)) else (slots[m],)):
            out[slot] = out.get(slot, 0.0) + scale * float(v)
    return out


class _Lowering:
    def __init__(self, activations: str, t_max: int | None):
        self.ideal = activations == "ideal"
        self.t_max = t_max
        self.notes: list[dict] = []
        self.read_lo = self.read_hi = np.zeros(0)   # bounds of the value the current stage reads
        # per stage index and coordinate: the SiLU ReLU gap (standard mode), and the rounding (per unit roundoff)
        # of the SiLU evaluations that carry the coordinate's value — the stage's local errors
        self.gaps: dict[int, dict[int, float]] = {}
        self.rounding: dict[int, dict[int, float]] = {}
        # per stage index and coordinate: what the conv's dropped taps move the state by (both modes), and the
        # sums that compute it (ConvSum)
        self.dropped: dict[int, dict[int, float]] = {}
        self.convs: dict[int, dict[int, ConvSum]] = {}

    def charge(self, st, j: int, rounding: float, *, both_modes: bool = False) -> None:
        """SiLU evaluations of stage ``st`` round coordinate ``j`` by ``rounding·u``: in standard mode, and in
        ideal mode too where transformers evaluates a SiLU that ideal mode does not (``both_modes``)."""
        if both_modes or not self.ideal:
            coordinates = self.rounding.setdefault(st.index, {})
            coordinates[j] = coordinates.get(j, 0.0) + rounding

    @staticmethod
    def pair_rounding(bound: float) -> float:
        """The SiLU pair ``silu(a) − silu(−a) = a`` of an unscaled value ``|a| ≤ bound``: both terms round a few
        ulps of at most ``bound + SILU_RELU_ERROR``."""
        return 2 * ACTIVATION_ULPS * (bound + SILU_RELU_ERROR)

    def exact_scale(self, bound: float, coefficients) -> float | None:
        """Standard mode's ε for a channel that carries ``a`` (``|a| ≤ bound``, read with ``coefficients``) as
        ``(2/ε)·silu(ε a)``, exact by :data:`EXACT_SPAN`; None where ε would need a coefficient or ``2/ε`` outside
        the weights' normal float32 range (the value is then carried by an unscaled pair)."""
        magnitudes = [abs(float(v)) for v in coefficients if v != 0]
        if self.ideal or not math.isfinite(bound) or not magnitudes:
            return None
        eps = capped_scale(EXACT_SPAN, bound, max(magnitudes))
        if eps * bound > EXACT_SPAN or eps * min(magnitudes) < 2.0 ** -MAX_WEIGHT_LOG2 \
                or 2.0 / eps > 2.0 ** MAX_WEIGHT_LOG2:
            return None
        return eps

    @staticmethod
    def exact_rounding(eps: float, terms: int) -> float:
        """What an exact channel of ``terms`` in_proj terms rounds, per unit roundoff: float32 underflow only."""
        return (terms + 1) * UNDERFLOW_ULPS * 2.0 / eps

    # -- a value carried linearly: coef · a · G, G the gate (constant GATE or a scaled operand)
    def linear(self, blk: _Block, row: dict, bias: float, lo: float, hi: float, slot: int | dict, coef: float,
               gate: tuple | None = None, role: str = "linear", kappa: float | None = None) -> float:
        """``slot`` may be a dict slot -> coefficient (one value written to several slots).  In standard mode a
        bounded value is one exact channel (:meth:`exact_scale`); ``kappa`` (a power of two) instead carries
        silu(±κa)/κ: exact once |κa| ≥ 746, so a float32 value read from one slot is copied bit for bit.  Returns
        what the carry rounds per unit roundoff (an explicit ``kappa``'s carries are counted by the caller)."""
        if (lo == 0 and hi == 0) or (not row and bias == 0):
            return 0.0
        z_row, z_bias, mult = ({}, GATE, coef / GATE) if gate is None else (gate[0], gate[1], coef)
        outs = slot if isinstance(slot, dict) else {slot: 1.0}
        bound = magnitude_bound(lo, hi)
        eps = self.exact_scale(bound, [*row.values(), bias]) if kappa is None else None
        if eps is not None:
            blk.add(u_row={q: eps * v for q, v in row.items()}, u_bias=eps * bias, z_row=dict(z_row),
                    z_bias=z_bias, D=2.0 / eps, out={o: mult * w for o, w in outs.items()}, role=role)
            return self.exact_rounding(eps, len(row))
        signs = signs_of(lo, hi) if self.ideal else [1, -1]
        k = 1.0 if self.ideal or kappa is None else kappa
        for s in signs:
            blk.add(u_row={q: k * s * v for q, v in row.items()}, u_bias=k * s * bias, z_row=dict(z_row),
                    z_bias=z_bias, D=1.0 / k, out={o: s * mult * w for o, w in outs.items()}, role=role)
        return 0.0 if self.ideal or kappa is not None else self.pair_rounding(bound)

    def kappa(self, bound: float) -> float:
        """Standard mode's scale for copying one slot exactly (see :meth:`linear`).  An unbounded value gets
        2^80 as if its bound were 1: κ·v stays finite in float32 while |v| < 2^47, inside the float32 norm's
        identity range anyway."""
        return 1.0 if self.ideal else capped_scale(KAPPA_SPAN, bound, unbounded=KAPPA_SPAN)

    def clear(self, blk: _Block, slots: list[int], lo: np.ndarray, hi: np.ndarray, role: str = "clear") -> None:
        """Subtract the value the block reads from its slots (the bank is reused two stages later)."""
        for m, slot in enumerate(slots):
            bound = magnitude_bound(lo[m], hi[m])
            self.linear(blk, {slot: 1.0}, 0.0, float(lo[m]), float(hi[m]), slot, -1.0, role=role,
                        kappa=self.kappa(bound))

    def split(self, blk: _Block, slots: list[int], hi_slots: list[int], lo: np.ndarray, hi: np.ndarray) -> None:
        """HF's RMSNorm hands the block fl32(v): move that part of each value to a fresh slot (``hi``), leaving
        ``v − fl32(v)`` (exact in float64) in place.  A consumer reads ``hi + fl32(lo)``: 2^-48·|v| off instead
        of 2^-24·|v|.  In the numpy semantics (no float32) hi = v and lo = 0."""
        for m, slot in enumerate(slots):
            self.linear(blk, {slot: 1.0}, 0.0, float(lo[m]), float(hi[m]), {hi_slots[m]: 1.0, slot: -1.0}, 1.0,
                        role="split", kappa=self.kappa(magnitude_bound(lo[m], hi[m])))

    def relu(self, blk: _Block, st, W: np.ndarray, c: np.ndarray, src: list[int], dst: list[int]) -> None:
        for j in range(st.out_dim):
            lo, hi = float(st.pre_lo[j]), float(st.pre_hi[j])
            if hi <= 0:
                continue
            row = _row(W[j], src)
            if self.ideal:
                blk.add(u_row=row, u_bias=float(c[j]), out={dst[j]: 1.0 / GATE}, role="relu")
                continue
            if lo >= 0:  # the identity: a linear value
                self.charge(st, j, self.linear(blk, row, float(c[j]), lo, hi, dst[j], 1.0, role="relu_identity"))
                continue
            bound = magnitude_bound(lo, hi)
            if not math.isfinite(bound):
                raise CompileError(f"mamba: ReLU argument {j} of {st.op.describe()} (stage {st.index}) is unbounded "
                                   "according to range analysis; standard activations (SiLU) need bounded ReLU "
                                   "arguments: give the Input lower/upper bounds and compile with t_max=<longest "
                                   "sequence>, or use activations='ideal'")
            kappa = capped_scale(KAPPA_SPAN, bound, max([abs(v) for v in row.values()] + [abs(float(c[j]))]))
            blk.add(u_row={k: kappa * v for k, v in row.items()}, u_bias=kappa * float(c[j]), D=1.0 / kappa,
                    out={dst[j]: 1.0 / GATE}, role="relu_silu")
            self.notes.append({"stage": st.index, "relu": j, "kappa": kappa, "error_bound": SILU_RELU_ERROR / kappa})
            self.gaps.setdefault(st.index, {})[j] = SILU_RELU_ERROR / kappa
            # silu(κx) = κx exactly from SILU_IDENTITY on, and |silu(κx)| ≤ SILU_IDENTITY below it: the SiLU
            # rounds a few ulps of SILU_IDENTITY/κ at most (the gap to ReLU is the on/off error above)
            self.charge(st, j, ACTIVATION_ULPS * SILU_IDENTITY / kappa)

    def product(self, blk: _Block, st, src: list[int], dst: list[int]) -> None:
        plan = plan_products(st, st.W, st.c)
        const = plan.const.to_float().values
        for j in range(plan.h):
            blk.bias(dst[j], float(const[j]))
        lin_rows = dense(plan.lin_rows) if plan.lin_slot else None
        lin_bias = plan.lin_bias.to_float().values
        for i, slot in enumerate(plan.lin_slot):
            self.charge(st, slot, self.linear(blk, _row(lin_rows[i], src), float(lin_bias[i]), float(plan.lin_lo[i]),
                                              float(plan.lin_hi[i]), dst[slot], 1.0, role="carrier"))
        if not plan.prod:
            return
        U, V = dense(plan.U), dense(plan.V)
        cu, cv = plan.cu.to_float().values, plan.cv.to_float().values
        for j in plan.prod:
            bu, bv = magnitude_bound(plan.ulo[j], plan.uhi[j]), magnitude_bound(plan.vlo[j], plan.vhi[j])
            # the gate operand is scaled to its bound: take the smaller one
            if bv <= bu:
                a_row, a_b, a_lo, a_hi, g_row, g_b, bg = U[j], cu[j], plan.ulo[j], plan.uhi[j], V[j], cv[j], bv
            else:
                a_row, a_b, a_lo, a_hi, g_row, g_b, bg = V[j], cv[j], plan.vlo[j], plan.vhi[j], U[j], cu[j], bu
            if bg == 0:
                continue  # the gate operand is identically 0
            a, g = _row(a_row, src), _row(g_row, src)
            ba = magnitude_bound(a_lo, a_hi)
            eps = self.exact_scale(ba, [*a.values(), a_b])
            sigma = self.exact_scale(bg, [*g.values(), g_b])
            if eps is not None and sigma is not None:
                # one channel: (2/ε)·silu(ε a) = a and silu(σ g) = σ g/2 exactly, so y·gate = fl(a·g)·σ/2 rounds
                # once, as the program's product does (and out_proj's 2/σ is exact) — or underflows in float32
                blk.add(u_row={q: eps * v for q, v in a.items()}, u_bias=eps * float(a_b), D=2.0 / eps,
                        z_row={q: sigma * v for q, v in g.items()}, z_bias=sigma * float(g_b),
                        out={dst[j]: 2.0 / sigma}, role="product")
                self.charge(st, j, ACTIVATION_ULPS * ba * bg + self.exact_rounding(eps, len(a)) * bg
                            + self.exact_rounding(sigma, len(g)) * ba + self.exact_rounding(sigma, 0))
                continue
            # a·g = (a·act(σ g) − a·act(−σ g))/σ: relu(y) − relu(−y) = silu(y) − silu(−y) = y in real arithmetic,
            # and each term is at most (|a| + 0.28)(|σ g| + 0.28)/σ, so the rounding stays a few ulps of |a|·|g| (a
            # gate shifted into SiLU's identity region instead, σ g + 256, cancelled the shift's 256·|a|/σ: 30× the
            # program's own float32 error, and needed a bounded gate).  σ (a power of two) scales a bounded gate
            # operand to |σ g| ≤ GATE_SPAN and stops where its weights stay finite and 1/σ normal in float32 (a
            # gate bounded by 1e-38 asked for 2^132)
            sigma = capped_scale(GATE_SPAN, bg, max(float(np.max(np.abs(g_row), initial=0.0)), abs(float(g_b))))
            # four terms, each two SiLU evaluations, their product and the sum; transformers gates with SiLU in
            # ideal mode too (where the kernel's ReLU gates are exact)
            self.charge(st, j, 16 * ACTIVATION_ULPS * (ba + SILU_RELU_ERROR) * (bg + SILU_RELU_ERROR / sigma),
                        both_modes=True)
            for sign in (1.0, -1.0):
                self.linear(blk, a, float(a_b), float(a_lo), float(a_hi), dst[j], sign / sigma,
                            gate=(_row(g_row, src, sign * sigma), sign * sigma * float(g_b)), role="product",
                            kappa=1.0)

    def state(self, blk: _Block, st, W: np.ndarray, c: np.ndarray, src: list[int], dst: list[int]) -> None:
        k = st.out_dim
        A = dense(st.A)
        s0 = st.init.to_float().values.astype(np.float64)
        conv_rows = []
        for i in range(k):
            off = A[i].copy()
            a_ii = off[i]
            off[i] = 0.0
            if np.any(off != 0) or a_ii not in (0.0, 1.0):
                conv_rows.append(i)
                continue
            lo, hi = float(st.pre_lo[i]), float(st.pre_hi[i])
            row = _row(W[i], src)
            if a_ii == 0.0:  # s_t = drive_t
                self.charge(st, i, self.linear(blk, row, float(c[i]), lo, hi, dst[i], 1.0, role="passthrough"))
                continue
            # integrator s_t = s_{t−1} + Σ_q W[i,q] v_q + c_i in the SSM (decay exactly 1).  HF's scan rounds
            # its input u to float32 (Δ stays float64), so u is one split part of one v_q — hi exactly, lo to
            # 2^-24 of itself — and the weight rides in Δ = |W[i,q]|·p ∈ (32, 64] (p a power of two)
            blk.source()
            for q in np.flatnonzero(W[i]):
                w = float(W[i, q])
                p = 2.0 * pow2_at_most(DT_ON / abs(w))
                vlo, vhi = float(self.read_lo[q]), float(self.read_hi[q])
                kappa = self.kappa(magnitude_bound(vlo, vhi))
                if not self.ideal:  # the output weight 1/(2pκ) must stay a normal float32 number
                    kappa = min(kappa, pow2_at_most(2.0 ** 125 / p))
                parts = src[q] if isinstance(src[q], (tuple, list)) else (src[q],)
                # every step integrates the SiLU terms of each part: t_max times their rounding, on w·v
                steps = math.inf if self.t_max is None else float(self.t_max)
                self.charge(st, i, steps * len(parts) * abs(w) * 2 * ACTIVATION_ULPS
                            * (magnitude_bound(vlo, vhi) + 38.0 / kappa))
                for n, part in enumerate(parts):
                    # the hi part has v's sign; the lo part either sign
                    signs = ([1, -1] if n else signs_of(vlo, vhi)) if self.ideal else [1, -1]
                    for s in signs:
                        blk.add(u_row={part: kappa * s}, ssm=True, dt=abs(w) * p, D=0.0,
                                out={dst[i]: s * math.copysign(DT_ON, w) / (p * kappa * GATE)}, role="integrator")
            if c[i] != 0:
                # the constant: u = act(SRC) = 64 exactly, Δ = |c|·p, so each step adds 2|c|·p
                p = 2.0 * pow2_at_most(DT_ON / abs(float(c[i])))
                blk.add(u_bias=0.0, taps={}, conv_bias=SRC, ssm=True, dt=abs(float(c[i])) * p, D=0.0,
                        out={dst[i]: math.copysign(1.0, float(c[i])) / (2.0 * p * GATE)}, role="integrator_bias")
            blk.bias(dst[i], float(s0[i]))
        if conv_rows:
            self.conv_state(blk, st, A, s0, W, c, conv_rows, src, dst)

    def conv_state(self, blk, st, A, s0, W, c, rows, src, dst) -> None:
        """Rows of A the diagonal SSM cannot hold: s_t[i] = f_i(t) + Σ_{j<L} Σ_q (A^j)[i,q] (W h_{t−j})[q] with
        f_i(t) = (A^t s0 + Σ_{j<t} A^j c)[i], exact for t ≤ L (and for every t when A^L[i,:] = 0)."""
        k = A.shape[0]
        line = delay_line(st, rows, self.t_max)
        powers = np.stack(line.powers)
        budget_of = dropped_taps_budget(st)
        for i in rows:
            L = line.windows[i]
            if L is None:
                raise CompileError(
                    f"mamba: state coordinate {i} of {st.op.describe()} (stage {st.index}) has a recurrence "
                    f"(row {np.array2string(A[i], precision=4)}) that Mamba's diagonal SSM (decays in [0, 1]) "
                    "cannot hold and whose powers neither vanish nor decay below its bound within "
                    f"{WINDOW_SEARCH} steps; it is realised by the depthwise conv, whose window must cover "
                    "the whole sequence: compile with t_max=<longest sequence> (the conv window becomes t_max)")
            self.notes.append({"stage": st.index, "conv_row": i, "window": L})
            driven = [q for q in range(k) if np.any(W[q]) and np.any(powers[:L, i, q])]
            # each entry's lags past its own window, and the constant's, may move the row by an equal share
            budget = budget_of[i] / (len(driven) + 1)
            moved = float(line.dropped[i])
            conv = self.convs.setdefault(st.index, {})[i] = ConvSum()
            channels: list[float] = []   # what each channel's conv reaches
            for q in driven:
                # the conv reads the drive (W h)_q (the bias c is in f); only the coordinates the row reads count
                # (an unread one may be unbounded)
                read = np.flatnonzero(W[q])
                bounds = np.maximum(np.abs(self.read_lo[read]), np.abs(self.read_hi[read]))
                drive = float(np.abs(W[q][read]) @ bounds)
                keep, tail = kept_lags(powers[:L, i, q], drive, budget)
                moved += tail
                taps = {j: float(powers[j][i, q]) for j in range(keep) if powers[j][i, q] != 0}
                if not taps:
                    continue
                row = _row(W[q], src)
                # each channel's conv sums tap·(W h)_q over the lags (its partial sums within what the lags before
                # reach); ideal mode's two channels sum it twice
                tap_list = np.array(list(taps.values()))
                carried = float(np.sum(np.abs(tap_list))) * drive
                eps = self.exact_scale(carried, row.values())   # None in ideal mode: a ± pair
                reached = np.concatenate([[0.0], np.cumsum(np.abs(tap_list) * drive)[:-1]])
                w_bit = int(np.min(lowest_bit(W[q][read])))
                for _ in range(1 if eps is not None else 2):
                    conv.products(tap_list, drive, 1, reached, bits=lowest_bit(tap_list) + w_bit)
                    channels.append(carried)
                conv.weights.extend(tap_list.tolist() + W[q][read].tolist())
                if not self.ideal:
                    if eps is not None:
                        blk.add(u_row={m: eps * v for m, v in row.items()}, taps=dict(taps), D=2.0 / eps,
                                out={dst[i]: 1.0 / GATE}, role="conv_state")
                        # the SiLU is exact; the conv's sum over the taps rounds (an unrolled recurrence)
                        self.charge(st, i, ACTIVATION_ULPS * carried
                                    + self.exact_rounding(eps, len(row) * len(taps)))
                        continue
                    self.charge(st, i, self.pair_rounding(carried))
                for s in (1, -1):
                    blk.add(u_row={m: s * v for m, v in row.items()}, taps=dict(taps), out={dst[i]: s / GATE},
                            role="conv_state")
            # f(t) for t = 1..L: taps w_0 = f(1), w_j = f(j+1) − f(j) on a constant input 1 (zero-padded before t=1)
            f, acc = [], 0.0
            for t in range(1, L + 1):
                acc = acc + float(powers[t - 1][i] @ c)
                f.append(float(powers[t][i] @ s0) + acc)
            steps = [f[0]] + [f[j] - f[j - 1] for j in range(1, L)]
            keep, tail = kept_lags(steps, 1.0, budget)
            moved += tail
            if moved:
                self.dropped.setdefault(st.index, {})[i] = moved
            taps = {j: steps[j] for j in range(keep) if steps[j] != 0}
            constant = not set(taps) <= {0}   # a tap past lag 0 (else a bias)
            if constant:
                # the constant channel's partial sums are f(1), f(2), … but for the float64 rounding of its taps
                # (the differences, ≤ 2^-53 of each)
                lags = np.array(list(taps))
                reached = np.abs(np.array([0.0] + f))[lags] + np.concatenate(
                    [[0.0], np.cumsum(np.abs(np.diff([0.0] + f)))])[lags] * 2.0 ** -52
                carried = float(np.sum(np.abs(list(taps.values()))))   # the conv of a constant input
                eps = self.exact_scale(carried, [1.0])
                copies = len(signs_of(min(f[:keep]), max(f[:keep]))) if self.ideal else 1 if eps is not None else 2
                for _ in range(copies):
                    conv.products(np.array(list(taps.values())), 1.0, 1, reached, constant=True)
                    channels.append(carried)
                conv.weights.extend(taps.values())
            # out_proj adds the channels up (powers of two: no bit lower than their own)
            conv.products(np.ones(len(channels)), np.array(channels), 1, float(np.sum(channels)), constant=True,
                          bits=1 << 20)
            if not constant:
                blk.bias(dst[i], taps.get(0, 0.0))
                continue
            f = f[:keep]
            if eps is not None:
                blk.add(u_bias=eps, taps=dict(taps), D=2.0 / eps, out={dst[i]: 1.0 / GATE}, role="conv_constant")
                self.charge(st, i, ACTIVATION_ULPS * carried + self.exact_rounding(eps, len(taps)))
                continue
            self.charge(st, i, self.pair_rounding(carried))
            signs = signs_of(min(f), max(f)) if self.ideal else [1, -1]
            for s in signs:
                blk.add(u_bias=float(s), taps=dict(taps), out={dst[i]: s / GATE}, role="conv_constant")


def _value_bounds(st) -> tuple[np.ndarray, np.ndarray]:
    if st.kind == "S":
        return stage_state_bounds(st)
    return np.asarray(st.lo, dtype=float), np.asarray(st.hi, dtype=float)


def _build(blocks: list[_Block], H: int, K: int, activations: str, first_embed: Matrix | None,
           input_op: Op) -> list[Op]:
    E_needed = max(max(len(b.channels) for b in blocks), 1)
    expand = max(1, -(-E_needed // H))
    E = expand * H
    ops, prev = [], input_op
    for n, blk in enumerate(blocks):
        Win = np.zeros((2 * E, H))
        bin_ = np.zeros(2 * E)
        Wc = np.zeros((E, K))
        bc = np.zeros(E)
        Wx = np.zeros((3, E))
        bdt = np.full(E, DT_OFF)
        Wdt = np.zeros((E, 1))
        A_log = np.zeros((E, 1))
        Dv = np.zeros(E)
        Wout = np.zeros((H, E))
        bout = np.zeros(H)
        for e, ch in enumerate(blk.channels):
            for slot, v in ch.u_row.items():
                Win[e, slot] += v
            bin_[e] = ch.u_bias
            for slot, v in ch.z_row.items():
                Win[E + e, slot] += v
            bin_[E + e] = ch.z_bias
            for lag, w in ch.taps.items():
                Wc[e, K - 1 - lag] = w
            bc[e] = ch.conv_bias
            if ch.ssm:
                # HF casts dt_proj.bias to float32 but computes dt_proj.weight · δ in float64: Δ goes in the
                # weight, read from δ = 1 (the source channel); the source channel's own Δ = 32 is float32-exact
                if ch.src:
                    bdt[e] = DT_ON
                else:
                    bdt[e] = 0.0
                    Wdt[e, 0] = ch.dt
                A_log[e, 0] = A_LOG_HOLD
            if ch.src:
                Wx[0, e] = 1.0 / SRC             # δ = 1
                Wx[1, e] = 1.0 / (DT_ON * SRC)   # B = 1/32 ⇒ Δ B = 1
                Wx[2, e] = 1.0 / SRC             # C = 1
            Dv[e] = ch.D
            for slot, v in ch.out.items():
                Wout[slot, e] += v
        for slot, v in blk.out_bias.items():
            bout[slot] += v
        attrs = {"norm_weight": Vector(np.full(H, NORM_WEIGHT)), "norm_eps": NORM_EPS,
                 "in_proj_weight": Matrix.from_dense(Win), "in_proj_bias": Vector(bin_),
                 "conv1d_weight": Matrix.from_dense(Wc), "conv1d_bias": Vector(bc),
                 "x_proj_weight": Matrix.from_dense(Wx), "dt_proj_weight": Matrix.from_dense(Wdt),
                 "dt_proj_bias": Vector(bdt), "A_log": Matrix.from_dense(A_log), "D": Vector(Dv),
                 "out_proj_weight": Matrix.from_dense(Wout), "out_proj_bias": Vector(bout),
                 "activations": activations}
        if n == 0 and first_embed is not None:
            attrs["embed"] = first_embed
        op = Op(KIND, [prev], attrs, name=f"L{n}")
        ops.append(op)
        prev = op
    return ops


def lower_mamba(module: Module, *, activations: str, t_max: int | None) -> Module:
    """One split block before every stage block and before ``norm_f`` (docs/mamba.md, "Construction"): HF's
    RMSNorms read the residual stream in float32, so every value is held as ``hi`` (float32-exact, in the hi
    bank) plus ``lo`` (in place) when a block reads it."""
    from ..passes.range_analysis import RangeAnalysis

    form = layer_stages(module, t_max)
    d_in = form.input.dim
    if not form.stages:
        raise CompileError("mamba: the program has no LinState, ReLU or Multi stage; there is no block to build")
    width = max(st.out_dim for st in form.stages)
    hi_bank = list(range(d_in, d_in + max(d_in, width)))
    base = hi_bank[-1] + 1
    banks = [list(range(base + b * width, base + (b + 1) * width)) for b in range(2)]
    H = base + 2 * width
    low = _Lowering(activations, t_max)
    blocks, stages_meta = [], []
    val = list(range(d_in))
    in_lo, in_hi = RangeAnalysis(module, t_max)(form.input)
    v_lo, v_hi = np.asarray(in_lo, dtype=float), np.asarray(in_hi, dtype=float)
    residue: list[int] = []
    unknown = np.inf     # bounds of a lo part or a rounding residue: any sign

    def split_block(values):
        blk = _Block()
        hi = hi_bank[:len(val)]
        low.split(blk, val, hi, v_lo, v_hi)
        if residue:
            # the previous stage block left fl32-rounding residues (≤ 2^-48·|v|) in the lo slots it cleared; this
            # bank is written again by the next stage block
            low.clear(blk, residue, np.full(len(residue), -unknown), np.full(len(residue), unknown), role="residue")
        blocks.append(blk)
        # stage "P" (one letter, like S/R/M): the hi/lo partition
        stages_meta.append({"stage": "P", "source": "split", "width": len(val), "channels": _roles(blk),
                            "values": values, "slots": [hi[0], hi[-1] + 1],
                            "decode": [[j, slot, 1] for j, slot in enumerate(hi)] +
                                      [[j, slot, 1] for j, slot in enumerate(val)]})
        return [(h, v) for h, v in zip(hi, val)]

    prev_values = None
    for st in form.stages:
        reads = split_block(prev_values)
        residue = []
        blk = _Block()
        dst = banks[st.index % 2][:st.out_dim]
        low.read_lo, low.read_hi = v_lo, v_hi
        if st.kind == "S":
            low.state(blk, st, dense(st.W), st.c.to_float().values.astype(float), reads, dst)
        elif st.kind == "R":
            low.relu(blk, st, dense(st.W), st.c.to_float().values.astype(float), reads, dst)
        else:
            low.product(blk, st, reads, dst)
        # clear what was read: the hi part exactly (it is float32), the lo part up to fl32 rounding
        low.clear(blk, [h for h, _ in reads], v_lo, v_hi)
        if prev_values is not None:  # the input slots are never written again: their lo may stay
            low.clear(blk, val, np.full(len(val), -unknown), np.full(len(val), unknown), role="clear_lo")
            residue = list(val)
        blocks.append(blk)
        stages_meta.append({"stage": st.kind, "source": st.op.name or st.op.kind, "width": st.out_dim,
                            "slots": [dst[0], dst[-1] + 1], "channels": _roles(blk), "values": st,
                            "decode": [[j, slot, 1] for j, slot in enumerate(dst)]})
        prev_values = st
        val = dst
        v_lo, v_hi = _value_bounds(st)
    final = split_block(prev_values)
    K = max(b.window for b in blocks)
    embed = Matrix.from_entries((H, d_in), list(range(d_in)), list(range(d_in)), [1.0] * d_in)
    ops = _build(blocks, H, K, activations, embed, form.input)
    RW = np.zeros((form.readout_W.shape[0], H))
    RW_form = dense(form.readout_W)
    for j, (h, v) in enumerate(final):
        RW[:, h] = RW_form[:, j]
        RW[:, v] = RW_form[:, j]
    readout = Op("linear", [ops[-1]], {"A": Matrix.from_dense(RW), "b": form.readout_c.to_float()}, name="readout")
    out = Module([form.input] + ops + [readout], readout, name=form.name)
    meta = dict(form.metadata)
    meta["layout"] = _layout(form, stages_meta)
    for m in stages_meta:
        m.pop("values", None)
    E = ops[0].attrs["conv1d_weight"].shape[0]
    meta.update({"target": "mamba", "activations": activations, "t_max": t_max, "stages": stages_meta,
                 "mamba": {"hidden_size": H, "intermediate_size": E, "conv_kernel": K, "state_size": 1,
                           "time_step_rank": 1, "num_hidden_layers": len(ops), "input_slots": list(range(d_in)),
                           "channels_used": max(len(b.channels) for b in blocks), "notes": low.notes}})
    meta["split_reads"] = "float32"  # a float64 transformers model reads the stream in float32 (the splits)
    # the RMSNorms compute x·2^-60 in float32 before the weight 2^60 scales back: a read resolves 2^-149·2^60
    meta["read_step"] = float(np.finfo(np.float32).smallest_subnormal) * NORM_WEIGHT
    squares = stream_squares(form)
    # a norm past its identity range drifts every read (error_bound adds it where values are read)
    meta["stream_norms"] = {"eps": NORM_EPS, "squares": squares, "width": H}
    if math.isfinite(squares) and not squares < FLOAT32_SQUARES:
        meta["dtype_limits"] = {"float32": (
            f"mamba: the RMSNorms' sum of squares of the stream may reach {squares:.3g}, past float32's range "
            "(transformers computes every norm in float32, the kernel a float32 model's): a float32 run would "
            "read NaN; tighten the Input bounds or t_max")}
    if activations == "standard":
        meta["standard"] = {"kappa_span": KAPPA_SPAN, "gate": GATE}
        meta["local_errors"] = _standard_local_errors(module, form, low)
    elif low.rounding or low.dropped or low.convs:
        meta["local_errors"] = _ideal_local_errors(module, form, low)
    out.metadata = meta
    return out.verify()


def _standard_local_errors(module: Module, form, low: "_Lowering") -> dict:
    """What the standard (SiLU) construction adds to each layer-form op (the ``local_errors`` of
    :mod:`lsrl.passes.error_bound`): a ReLU of an argument of either sign is ``silu(κx)/κ``, within
    ``SILU_RELU_ERROR/κ`` of ``ReLU(x)`` whether on or off; every SiLU evaluation that carries a value rounds
    what :meth:`_Lowering.charge` records (an exact channel's float32 underflow, an unscaled pair's few ulps of
    its magnitude, products, integrators over ``t_max`` steps, the sums of conv taps); the scaled carries
    (:data:`SCALED_CARRIES`, ``κ ≥ KAPPA_SPAN/max(bound, 1)``) round at most ``38/κ`` — counted with the largest
    bound of any value, since a clear leaves its residue in slots the next values reuse, and also through the rows
    of the value a stage reads (a state's over its steps, a product's times the other operand).  The norms'
    drift is the metadata ``read_drift``."""
    positions = {id(op): i for i, op in enumerate(module.ops)}
    scaled = SCALED_CARRIES * 2 * ACTIVATION_ULPS * 38.0 / KAPPA_SPAN
    local = {}
    largest = max([float(np.max(_carried_bound(form.input.attrs["lower"].to_float().values,
                                                form.input.attrs["upper"].to_float().values), initial=1.0))]
                  + [float(np.max(_carried_bound(st.lo, st.hi), initial=1.0)) for st in form.stages])
    for st, reads in _stage_reads(form, low.t_max):
        entry = local[positions[id(st.op)]] = local_error_entry(st.out_dim, on_u=scaled * (largest + reads))
        for j, rounding in low.rounding.get(st.index, {}).items():
            entry["on_u"][j] += rounding
        _add_delay_line(entry, st, low)
        for j, gap in low.gaps.get(st.index, {}).items():
            entry["on"][j] += gap
            entry["off"][j] += gap
            entry["off_u"][j] = ACTIVATION_ULPS * gap
    return local


def _add_delay_line(entry: dict, st, low: "_Lowering") -> None:
    """Add what stage ``st``'s conv rows drop (:class:`DelayLine`) and their sums (:func:`conv_sum_fields`) to its
    ``local_errors`` entry."""
    for j, moved in low.dropped.get(st.index, {}).items():
        entry["on"][j] += moved
    if st.index in low.convs:
        entry.update(conv_sum_fields(st.out_dim, low.convs[st.index]))


def _ideal_local_errors(module: Module, form, low: "_Lowering") -> dict:
    """Ideal mode computes the layer form's ops in the kernel, but transformers gates every channel with SiLU
    (hard-coded): a product's gates ``±σ g`` give ``a·(silu(σ g) − silu(−σ g))/σ = a·g`` there, whose terms round
    what :meth:`_Lowering.product` charges (the ``local_errors`` of :mod:`lsrl.passes.error_bound`); a conv's
    dropped taps move a state by what :class:`DelayLine` bounds."""
    positions = {id(op): i for i, op in enumerate(module.ops)}
    local = {}
    for st in form.stages:
        if st.index in low.rounding or st.index in low.dropped or st.index in low.convs:
            entry = local[positions[id(st.op)]] = local_error_entry(st.out_dim)
            if st.index in low.convs:
                entry.update(conv_sum_fields(st.out_dim, low.convs[st.index]))
            for j, rounding in low.rounding.get(st.index, {}).items():
                entry["on_u"][j] += rounding
            _add_delay_line(entry, st, low)
    return local


def _stage_reads(form, t_max: int | None):
    """Per stage of the layer form: the stage and what its rows read (``Σ |W|·bound`` of the value before it — a
    state's over its steps, a product's times the other operand), with the bounds :func:`_carried_bound` takes."""
    steps = math.inf if t_max is None else float(t_max)
    inputs = form.input.attrs
    read = _carried_bound(inputs["lower"].to_float().values, inputs["upper"].to_float().values)
    for st in form.stages:
        d = st.out_dim
        reads = np.asarray(abs(st.W.scipy()) @ read).ravel()
        if st.kind == "M":
            operand = np.maximum(np.abs(st.pre_lo), np.abs(st.pre_hi))
            # a constant operand (no row reads) times an unbounded one adds nothing
            reads = zero_safe_product(reads[:d], operand[d:]) + zero_safe_product(reads[d:], operand[:d])
        elif st.kind == "S" and st.A.nnz:
            reads = reads * power_norm_sum(st.A, steps)
        yield st, reads
        read = _carried_bound(st.lo, st.hi)


def _carried_bound(lo, hi) -> np.ndarray:
    """The bound :meth:`_Lowering.kappa` scales a carried value by: at least 1 (an unbounded value: 1)."""
    bound = np.maximum(np.abs(np.asarray(lo, dtype=float)), np.abs(np.asarray(hi, dtype=float)))
    return np.where(np.isfinite(bound), np.maximum(bound, 1.0), 1.0)


def _roles(blk: _Block) -> dict:
    roles: dict = {}
    for ch in blk.channels:
        roles[ch.role] = roles.get(ch.role, 0) + 1
    return roles


def _layout(form, stages_meta: list[dict]) -> list:
    """The lowered module's layout (docs/targets.md, "Layout"): the input's slots, one entry per block — a split
    block holds the value it split as hi + lo (two decode terms per coordinate), a stage block its stage's value
    — and the readout's output slots."""
    program = form.metadata.get("layout")
    if not isinstance(program, list) or not program:
        program = None
    inputs = program[0] if program else [{"role": "input", "index": j} for j in range(form.input.dim)]

    def values_of(st):
        if st is None:
            return list(inputs)
        vals = program[st.chain_index] if program and st.chain_index < len(program) else None
        if isinstance(vals, list):
            return list(vals)
        return [{"role": "value", "terms": [[st.op.name or st.op.kind, j, 1.0]]} for j in range(st.out_dim)]

    out = [inputs]
    for m in stages_meta:
        units: list = []
        for slot in sorted({slot for _, slot, _ in m["decode"]}):
            if units and units[-1]["end"] == slot:
                units[-1]["end"] = slot + 1
            else:
                units.append({"role": "value", "start": slot, "end": slot + 1})
        out.append({"stage": m["stage"], "values": values_of(m["values"]), "units": units,
                    "decode": m.pop("decode")})
    if program and form.ends_with_linear:
        out.append(program[-1])
    else:
        out.append([{"role": "output", "index": j} for j in range(form.readout_W.shape[0])])
    return out


# ------------------------------------------------------------------------------------------ Hugging Face

def hf_config(model_ops: list[Op], activations: str) -> dict:
    """The ``MambaConfig`` arguments of a lowered module's blocks."""
    first = model_ops[0]
    E, K = first.attrs["conv1d_weight"].shape
    H = first.dim
    return {"vocab_size": 1, "hidden_size": H, "state_size": first.attrs["A_log"].shape[1],
            "num_hidden_layers": len(model_ops), "layer_norm_epsilon": float(first.attrs["norm_eps"]),
            "expand": E // H, "conv_kernel": K, "use_bias": True, "use_conv_bias": True,
            "hidden_act": "relu" if activations == "ideal" else "silu", "residual_in_fp32": False,
            "time_step_rank": first.attrs["dt_proj_weight"].shape[1], "use_cache": False, "use_mambapy": False,
            "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": False}


def hf_state_dict(model_ops: list[Op]) -> dict:
    """``MambaModel`` parameter names → float64 numpy arrays."""
    sd = {}
    H = model_ops[0].dim
    sd["embeddings.weight"] = np.zeros((1, H))
    for k, op in enumerate(model_ops):
        a, p = op.attrs, f"layers.{k}."
        sd[p + "norm.weight"] = vector(a["norm_weight"])
        m = p + "mixer."
        sd[m + "in_proj.weight"] = dense(a["in_proj_weight"])
        sd[m + "in_proj.bias"] = vector(a["in_proj_bias"])
        sd[m + "conv1d.weight"] = dense(a["conv1d_weight"])[:, None, :]
        sd[m + "conv1d.bias"] = vector(a["conv1d_bias"])
        sd[m + "x_proj.weight"] = dense(a["x_proj_weight"])
        sd[m + "dt_proj.weight"] = dense(a["dt_proj_weight"])
        sd[m + "dt_proj.bias"] = vector(a["dt_proj_bias"])
        sd[m + "A_log"] = dense(a["A_log"])
        sd[m + "D"] = vector(a["D"])
        sd[m + "out_proj.weight"] = dense(a["out_proj_weight"])
        sd[m + "out_proj.bias"] = vector(a["out_proj_bias"])
    sd["norm_f.weight"] = np.full(H, NORM_WEIGHT)
    return sd


class MambaTarget(Target):
    name = "mamba"
    summary = "Hugging Face MambaModel (selective SSM blocks; ideal: hidden_act relu)"
    op_kinds = frozenset({KIND})
    exact_activations = ()   # rsqrt/exp/softplus: float only
    multiplies = True

    def lower(self, module: Module, *, activations: str, t_max: int | None) -> Module:
        return lower_mamba(module, activations=activations, t_max=t_max)

    def layer_info(self, group: list[Op]) -> dict:
        op = group[0]
        E, K = op.attrs["conv1d_weight"].shape
        return {"kind": "mamba_block", "hidden_size": op.dim, "output_size": op.dim, "intermediate_size": E,
                "conv_kernel": K}

    def torch_layer(self, op: Op, activations: str):
        raise LsrlError(f"to_torch: target 'mamba' has no plain torch export for {op.describe()}; use "
                        "model.to_hf(path) and transformers.AutoModel.from_pretrained(path)")

    def to_hf(self, model, path) -> None:
        import torch
        from transformers import MambaConfig, MambaModel

        module = model.module if hasattr(model, "module") else model
        ops = module.ops[1:-1]
        readout = module.ops[-1]
        activations = module.metadata.get("activations", ops[0].attrs["activations"])
        config = MambaConfig(**hf_config(ops, activations))
        config.dtype = "float64"
        hf = MambaModel(config).to(torch.float64)
        sd = {k: torch.tensor(np.array(v, dtype=np.float64)) for k, v in hf_state_dict(ops).items()}
        missing, unexpected = hf.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise LsrlError(f"to_hf: parameter names do not match MambaModel: missing {missing}, unexpected "
                            f"{unexpected}")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        hf.save_pretrained(path, safe_serialization=True)
        emb = ops[0].attrs.get("embed")
        rows, cols, vals = emb.coo()
        slots = [0] * emb.shape[1]
        scale = [1.0] * emb.shape[1]
        for r, c_, v in zip(rows.tolist(), cols.tolist(), vals):
            slots[c_] = int(r)
            scale[c_] = float(v)
        io = {"hidden_size": ops[0].dim, "input_slots": slots,
              "input_scale": scale[0] if len(set(scale)) == 1 else scale,
              "readout": {"weight": dense(readout.attrs["A"]).tolist(),
                          "bias": readout.attrs["b"].to_float().values.tolist()},
              "target": "mamba", "activations": activations, "t_max": module.metadata.get("t_max"),
              "note": "feed inputs_embeds (B, T, hidden_size), zero except input_slots = input · input_scale; "
                      "output = last_hidden_state @ readout.weight.T + readout.bias"}
        (path / "lsrl_io.json").write_text(json.dumps(io, indent=1))


register_target(MambaTarget())
