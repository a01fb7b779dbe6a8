"""What the two Hugging Face ``RecurrentGemmaModel`` targets share (targets.md §7–§8, docs/recurrentgemma.md).

Op kinds (one per HF module of the residual stream of width ``H``; attributes are named after the HF tensors,
``.`` written ``_``):

* ``rg_embed``: ``x_0 = (E x) · normalizer`` — the ``inputs_embeds`` contract: ``E`` (``H × d_in``) puts the
  program input, times ``input_scale``, into ``input_slots``; ``normalizer`` is HF's bfloat16 ``sqrt(H)``.
* ``rg_recurrent_block``: one HF decoder layer with a recurrent temporal block (RMSNorm, ``linear_y``/``linear_x``,
  depthwise causal ``conv_1d`` in HF tap order, RG-LRU with the reset at position 0, ``linear_out``) and its
  gated MLP.  The RG-LRU gate weights are stored as ``L × L`` block-diagonal matrices applied to row vectors
  (``z @ W``, HF's ``baddbmm`` per head).  State: ``(conv, h, position)`` — the last ``conv1d_width − 1`` conv
  inputs ``(B, K−1, L)``, the RG-LRU state ``(B, L)`` and the number of steps done ``(B,)`` (the reset applies
  at position 0 only).
* ``rg_attention_block``: a decoder layer whose temporal block is local attention made the identity
  (``o_proj.weight = 0``: it adds ``o_proj.bias``) and its MLP.  The numpy semantics implements only that
  zeroed attention (it refuses a non-zero ``o_proj_weight``).
* ``rg_final_norm``: HF's ``final_norm``.

``run`` computes HF's equations in float64 (no exact mode: RMSNorm takes a square root).  HF itself computes
the RMSNorms and the RG-LRU accumulator in float32 even in a float64 model; docs/recurrentgemma.md says what
that costs.

The lowering (:func:`lower_stream`): S stages in temporal blocks as delay lines (every read slot and a constant
channel, delayed by each lag ``i < conv1d_width`` — one conv tap each — and recombined by ``linear_out`` with
``A^i W`` and the bias/initial-state terms); R and M stages in MLP blocks (ReLU units, linear units through a
constant gate 32, products as ``act(κv)·u/κ + act(−κv)·(−u/κ)``, κ = 1 in ideal mode).  Every stage value goes
to fresh slots of the stream, so nothing is cancelled.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy.special import expit

from ...errors import CompileError, LsrlError
from ...ir.core import OPS, AttrSpec, Module, Op, OpDef, ShapeProblem, register_op
from ...ir.matrix import Matrix, Vector
from ...passes.error_bound import local_error_entry
from .common import (WINDOW_SEARCH, ConvSum, capped_scale, conv_sum_fields, delay_line, dropped_taps_budget,
                     kept_lags, layer_stages, magnitude_bound, plan_products, pow2_at_most, stage_state_bounds)
from .standard import ACTIVATION_ULPS
from .cells import csr_arrays
from .numerics import causal_conv, dense, mean_square, stream_squares, torch_softplus, vector

__all__ = ["EMBED", "RECURRENT", "ATTENTION", "FINAL_NORM", "lower_stream", "write_hf", "block_layer_info", "NORM_EPS", "NORM_WEIGHT",
           "LRU_PARAM", "GATE_BIAS", "Y_CONST", "KAPPA", "relu_kappa"]

EMBED, RECURRENT, ATTENTION, FINAL_NORM = "rg_embed", "rg_recurrent_block", "rg_attention_block", "rg_final_norm"

#: RMSNorm neutralised: rsqrt(mean(x²) + 2^100) = 2^-50 (while mean(x²) < 2^47 in float64, 2^76 in float32)
#: and 1 + w = 2^50 (w = 2^50 − 1; 2^50 after float32 rounding too)
NORM_EPS = 2.0 ** 100
#: the largest value magnitude the residual stream may carry: the neutralised RMSNorm x·rsqrt(mean(x²) + eps)
#: is x·rsqrt(eps) up to a relative mean(x²)/(2 eps) ≤ 2^-45 while every |x| ≤ 2^28
NORM_VALUE_LIMIT = 2.0 ** 28
NORM_WEIGHT = 2.0 ** 50 - 1
#: RG-LRU identity: softplus(128) = 128, a = exp(−8·128) = 0 in float32 and float64; σ(64) = 1 in both
LRU_PARAM = 128.0
GATE_BIAS = 64.0
#: the y branch is the constant act(32) = 32 (relu and gelu_tanh both exact); linear_out divides by 32
Y_CONST = 32.0
#: standard-mode ReLU: gelu_tanh(κx)/κ, |error| ≤ GELU_RELU_ERROR/κ, exact for |κx| ≥ 7.25 (float64); κ (a power of
#: two) as large as κ·max|x| ≤ KAPPA_SPAN and float32 allow (:func:`capped_scale`); KAPPA for an argument range
#: analysis cannot bound
KAPPA = 2.0 ** 30
KAPPA_SPAN = 2.0 ** 80
#: the most entries a conv1d weight may get: a recurrence's delay line takes one tap per step and one channel per
#: step and column it reads, t_max² entries per column (a counter at t_max = 10⁵ asked for 149 GiB)
MAX_CONV_ENTRIES = 2 ** 26
#: max |gelu_tanh(t) − ReLU(t)| (0.17004, at t ≈ ±0.75), rounded up
GELU_RELU_ERROR = 0.1701
#: gelu_tanh(t) is t or 0 exactly for |t| ≥ 8 in both dtypes: its tanh's argument is then ≥ 24.6, where tanh rounds
#: to ±1 (measured from 7.25 in float64, 5.25 in float32; every libm returns ±1 past 22), so 1 ± tanh is 2 or 0
GELU_IDENTITY = 8.0
#: a standard product's κ is at most ``2^PRODUCT_UNDERFLOW_LOG2·max|u|``: float32's subnormal spacing 2⁻¹⁴⁹ at
#: ``u/κ``, read times ``κ|v|``, is then below ``2⁻³⁴·|u v|`` (:func:`product_kappa`)
PRODUCT_UNDERFLOW_LOG2 = 116

HF_ACT = {"ideal": "relu", "standard": "gelu_pytorch_tanh"}


# ------------------------------------------------------------------------------------------ numerics

def _require_float(op: Op, ctx) -> None:
    if ctx.exact:
        raise LsrlError(f"{op.describe()}: RecurrentGemma blocks cannot run in exact arithmetic (RMSNorm takes a "
                        "square root); run in float64")


def relu_kappa(row: np.ndarray, b: float, lo: float, hi: float) -> float:
    """The scale κ of a standard-mode ReLU unit ``gelu_tanh(κ(row·x + b))/κ`` whose argument lies in
    ``[lo, hi]``: the gap to ReLU, ``GELU_RELU_ERROR/κ``, shrinks with κ, and the unit is exact once
    ``κ|x| ≥ 7.25`` (transformers' gelu_tanh saturates: ``x³`` may overflow to ``inf``, ``tanh`` gives ±1)."""
    biggest = max(float(np.max(np.abs(row), initial=0.0)), abs(b))
    return capped_scale(KAPPA_SPAN, max(abs(lo), abs(hi)), biggest, unbounded=KAPPA)


def product_kappa(urow: np.ndarray, ub: float, u_bound: float, vrow: np.ndarray, vb: float, lo: float,
                  hi: float) -> float:
    """The scale κ of a standard-mode product's units ``gelu_tanh(±κv)·(±u/κ)``: as a ReLU's (:func:`relu_kappa`)
    for the gated factor ``v``, and small enough that ``u/κ`` keeps the smallest coefficient of ``u`` a normal
    float32 and that float32's subnormal spacing at ``u/κ``, times ``κ|v|``, stays below ``2⁻³⁴·|u|·|v|`` at
    ``|u| ≤ u_bound`` (a product of values near 1e-12 flushed ``u/κ`` to 0 at κ = 2^119)."""
    kappa = relu_kappa(vrow, vb, lo, hi)
    nonzero = np.abs(np.append(urow, ub))
    nonzero = nonzero[nonzero > 0]
    if nonzero.size:
        kappa = min(kappa, pow2_at_most(float(nonzero.min()) / float(np.finfo(np.float32).tiny)))
    if 0 < u_bound < math.inf:
        kappa = min(kappa, pow2_at_most(u_bound * 2.0 ** PRODUCT_UNDERFLOW_LOG2))
    return max(kappa, 1.0)


def _act(name: str):
    if name == "ideal":
        return lambda v: np.maximum(v, 0.0)

    def gelu_tanh(v):
        with np.errstate(over="ignore", invalid="ignore"):
            return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v * v * v)))
    return gelu_tanh


def _rmsnorm(x: np.ndarray, weight: Vector, eps: float) -> np.ndarray:
    return x * (1.0 / np.sqrt(mean_square(x) + eps)) * (1.0 + weight.array(False))


def _linear(W: Matrix, b: Vector, x: np.ndarray) -> np.ndarray:
    return W.apply(x) + b.array(False)


def _mlp(a: dict, x: np.ndarray, act) -> np.ndarray:
    n = _rmsnorm(x, a["channel_pre_norm_weight"], float(a["eps"]))
    gate = act(_linear(a["mlp_gate_proj_weight"], a["mlp_gate_proj_bias"], n))
    up = _linear(a["mlp_up_proj_weight"], a["mlp_up_proj_bias"], n)
    return x + _linear(a["mlp_down_proj_weight"], a["mlp_down_proj_bias"], gate * up)


def run_embed(op: Op, inputs: list, state, ctx):
    _require_float(op, ctx)
    (x,) = inputs
    return op.attrs["embed"].apply(x) * float(op.attrs["normalizer"]), None


def run_final_norm(op: Op, inputs: list, state, ctx):
    _require_float(op, ctx)
    (x,) = inputs
    return _rmsnorm(x, op.attrs["weight"], float(op.attrs["eps"])), None


def run_recurrent(op: Op, inputs: list, state, ctx):
    _require_float(op, ctx)
    (x,) = inputs
    a = op.attrs
    act = _act(a["activations"])
    B, T, _ = x.shape
    w = a["conv_1d_weight"].to_dense()            # (L, K)
    L, K = w.shape
    if state is None:
        window, h, pos = np.zeros((B, K - 1, L)), np.zeros((B, L)), np.zeros(B, dtype=np.int64)
    else:
        window, h, pos = state
    n = _rmsnorm(x, a["temporal_pre_norm_weight"], float(a["eps"]))
    y = act(_linear(a["linear_y_weight"], a["linear_y_bias"], n))
    xb = _linear(a["linear_x_weight"], a["linear_x_bias"], n)
    full = np.concatenate([window, xb], axis=1)   # (B, K-1+T, L)
    z = causal_conv(full, w, np.zeros((B, T, L)) + a["conv_1d_bias"].array(False))  # taps: HF order, w[:, K−1] now
    new_window = full[:, full.shape[1] - (K - 1):] if K > 1 else window
    # RG-LRU
    gi = expit(a["rg_lru_input_gate_weight"].T.apply(z) + a["rg_lru_input_gate_bias"].array(False))
    gr = expit(a["rg_lru_recurrent_gate_weight"].T.apply(z) + a["rg_lru_recurrent_gate_bias"].array(False))
    log_a = -8.0 * gr * torch_softplus(a["rg_lru_recurrent_param"].array(False))
    decay = np.exp(log_a)
    mult = np.sqrt(1.0 - np.exp(2.0 * log_a))
    reset = (pos[:, None] + np.arange(T)[None, :] == 0)[..., None]   # (B, T, 1)
    mult = np.where(reset, 1.0, mult)
    decay = np.where(reset, 0.0, decay)
    u = z * gi * mult
    hs = np.empty((B, T, L))
    for t in range(T):
        h = decay[:, t] * h + u[:, t]
        hs[:, t] = h
    x = x + _linear(a["linear_out_weight"], a["linear_out_bias"], hs * y)
    return _mlp(a, x, act), (new_window, h, pos + T)


def run_attention(op: Op, inputs: list, state, ctx):
    _require_float(op, ctx)
    (x,) = inputs
    a = op.attrs
    if a["o_proj_weight"].nnz:
        raise LsrlError(f"{op.describe()}: the numpy semantics implements only the zeroed attention "
                        "(o_proj_weight = 0)")
    x = x + a["o_proj_bias"].array(False)
    return _mlp(a, x, _act(a["activations"])), None


def _shape(cond: bool, msg: str) -> None:
    if not cond:
        raise ShapeProblem(msg)


def _mlp_attrs() -> dict:
    return {"channel_pre_norm_weight": AttrSpec("vector", doc="channel_pre_norm.weight (H)"),
            "mlp_gate_proj_weight": AttrSpec("matrix", doc="mlp_block.gate_proj.weight (I × H)"),
            "mlp_gate_proj_bias": AttrSpec("vector"), "mlp_up_proj_weight": AttrSpec("matrix"),
            "mlp_up_proj_bias": AttrSpec("vector"), "mlp_down_proj_weight": AttrSpec("matrix", doc="(H × I)"),
            "mlp_down_proj_bias": AttrSpec("vector"), "eps": AttrSpec("number", doc="rms_norm_eps"),
            "activations": AttrSpec("str", doc="'ideal' (hidden_activation relu) or 'standard' (gelu_pytorch_tanh)")}


def _infer_mlp(op: Op) -> int:
    a = op.attrs
    H = op.operands[0].dim
    I = a["mlp_gate_proj_weight"].shape[0]
    for name, shape in (("mlp_gate_proj_weight", (I, H)), ("mlp_up_proj_weight", (I, H)),
                        ("mlp_down_proj_weight", (H, I))):
        _shape(a[name].shape == shape, f"{name} is {a[name].shape}, expected {shape}")
    for name, n in (("mlp_gate_proj_bias", I), ("mlp_up_proj_bias", I), ("mlp_down_proj_bias", H),
                    ("channel_pre_norm_weight", H)):
        _shape(len(a[name]) == n, f"{name} has length {len(a[name])}, expected {n}")
    _shape(a.get("activations") in HF_ACT, f"activations must be one of {tuple(HF_ACT)}")
    return H


def _infer_recurrent(op: Op) -> int:
    H = _infer_mlp(op)
    a = op.attrs
    L = a["linear_x_weight"].shape[0]
    for name, shape in (("linear_x_weight", (L, H)), ("linear_y_weight", (L, H)), ("linear_out_weight", (H, L)),
                        ("rg_lru_input_gate_weight", (L, L)), ("rg_lru_recurrent_gate_weight", (L, L))):
        _shape(a[name].shape == shape, f"{name} is {a[name].shape}, expected {shape}")
    _shape(a["conv_1d_weight"].shape[0] == L, "conv_1d_weight needs one row per channel")
    heads = int(a["num_heads"])
    _shape(heads >= 1 and L % heads == 0, f"num_heads {heads} must divide lru_width {L}")
    return H


def _infer_attention(op: Op) -> int:
    H = _infer_mlp(op)
    _shape(op.attrs["o_proj_weight"].shape == (H, H), "o_proj_weight must be H × H")
    return H


# ------------------------------------------------------------------------------------------ kernel nodes
# csrc/blocks/recurrentgemma.cpp runs the four blocks, bit for bit as the semantics above in float64.

def _vec(v, dtype) -> np.ndarray:
    return vector(v).astype(dtype)


def _mlp_node(a: dict, dtype) -> dict:
    return {"I": a["mlp_gate_proj_weight"].shape[0], "mlp_gate": csr_arrays(a["mlp_gate_proj_weight"], dtype),
            "mlp_up": csr_arrays(a["mlp_up_proj_weight"], dtype), "mlp_down": csr_arrays(a["mlp_down_proj_weight"], dtype),
            "channel_norm_weight": _vec(a["channel_pre_norm_weight"], dtype),
            "mlp_gate_bias": _vec(a["mlp_gate_proj_bias"], dtype), "mlp_up_bias": _vec(a["mlp_up_proj_bias"], dtype),
            "mlp_down_bias": _vec(a["mlp_down_proj_bias"], dtype), "eps": float(a["eps"]),
            "ideal": a["activations"] == "ideal"}


def kernel_embed(op: Op, dtype) -> dict:
    return {"kind": EMBED, "embed": csr_arrays(op.attrs["embed"], dtype), "normalizer": float(op.attrs["normalizer"])}


def kernel_final_norm(op: Op, dtype) -> dict:
    return {"kind": FINAL_NORM, "weight": _vec(op.attrs["weight"], dtype), "eps": float(op.attrs["eps"])}


def kernel_attention(op: Op, dtype) -> dict:
    if op.attrs["o_proj_weight"].nnz:
        raise LsrlError(f"{op.describe()}: the kernel implements only the zeroed attention (o_proj_weight = 0)")
    return {"kind": ATTENTION, "o_proj_bias": _vec(op.attrs["o_proj_bias"], dtype), **_mlp_node(op.attrs, dtype)}


def kernel_recurrent(op: Op, dtype) -> dict:
    a = op.attrs
    W, K = a["conv_1d_weight"].shape
    return {"kind": RECURRENT, "W": W, "K": K, **_mlp_node(a, dtype),
            "linear_y": csr_arrays(a["linear_y_weight"], dtype), "linear_x": csr_arrays(a["linear_x_weight"], dtype),
            "linear_out": csr_arrays(a["linear_out_weight"], dtype),
            # the semantics applies the gates as z @ W, i.e. W's transpose to z
            "input_gate": csr_arrays(a["rg_lru_input_gate_weight"].T, dtype),
            "recurrent_gate": csr_arrays(a["rg_lru_recurrent_gate_weight"].T, dtype),
            "temporal_norm_weight": _vec(a["temporal_pre_norm_weight"], dtype),
            "linear_y_bias": _vec(a["linear_y_bias"], dtype), "linear_x_bias": _vec(a["linear_x_bias"], dtype),
            "linear_out_bias": _vec(a["linear_out_bias"], dtype),
            "conv_weight": dense(a["conv_1d_weight"]).astype(dtype).ravel(), "conv_bias": _vec(a["conv_1d_bias"], dtype),
            "softplus_param": torch_softplus(vector(a["rg_lru_recurrent_param"])).astype(dtype),
            "input_gate_bias": _vec(a["rg_lru_input_gate_bias"], dtype),
            "recurrent_gate_bias": _vec(a["rg_lru_recurrent_gate_bias"], dtype),
            "init": np.zeros((K - 1) * W + W + 1, dtype=dtype),
            "state_layout": [((K - 1, W), np.float64), ((W,), np.float64), ((), np.int64)]}


def _register() -> None:
    if EMBED in OPS:
        return
    register_op(OpDef(EMBED, "inputs_embeds · normalizer: the program input placed in the residual stream",
                      lambda op: op.attrs["embed"].shape[0],
                      attrs={"embed": AttrSpec("matrix", doc="H × d_in: input_scale at (input_slots[j], j)"),
                             "normalizer": AttrSpec("number", doc="bfloat16 sqrt(H)")}, run=run_embed,
                      kernel=kernel_embed))
    register_op(OpDef(FINAL_NORM, "RMSNorm final_norm", lambda op: op.operands[0].dim,
                      attrs={"weight": AttrSpec("vector"), "eps": AttrSpec("number")}, run=run_final_norm,
                      kernel=kernel_final_norm))
    rec_attrs = {"temporal_pre_norm_weight": AttrSpec("vector")}
    for name in ("linear_y", "linear_x", "linear_out"):
        rec_attrs[f"{name}_weight"] = AttrSpec("matrix")
        rec_attrs[f"{name}_bias"] = AttrSpec("vector")
    rec_attrs.update({"conv_1d_weight": AttrSpec("matrix", doc="L × conv1d_width (HF tap order)"),
                      "conv_1d_bias": AttrSpec("vector"),
                      "rg_lru_recurrent_param": AttrSpec("vector"),
                      "rg_lru_input_gate_weight": AttrSpec("matrix", doc="L × L block diagonal, z @ W"),
                      "rg_lru_input_gate_bias": AttrSpec("vector"),
                      "rg_lru_recurrent_gate_weight": AttrSpec("matrix", doc="L × L block diagonal, z @ W"),
                      "rg_lru_recurrent_gate_bias": AttrSpec("vector"),
                      "num_heads": AttrSpec("int", doc="RG-LRU heads (num_attention_heads)")})
    rec_attrs.update(_mlp_attrs())
    register_op(OpDef(RECURRENT, "RecurrentGemma residual block: recurrent temporal block + gated MLP",
                      _infer_recurrent, attrs=rec_attrs, stateful=True, run=run_recurrent,
                      kernel=kernel_recurrent, state_parts=("conv", "h", "position")))
    att_attrs = {"temporal_pre_norm_weight": AttrSpec("vector"),
                 "o_proj_weight": AttrSpec("matrix", doc="H × H (0: the attention adds o_proj_bias)"),
                 "o_proj_bias": AttrSpec("vector")}
    att_attrs.update(_mlp_attrs())
    register_op(OpDef(ATTENTION, "RecurrentGemma residual block: local attention (zeroed) + gated MLP",
                      _infer_attention, attrs=att_attrs, run=run_attention, kernel=kernel_attention))


_register()


# ------------------------------------------------------------------------------------------ lowering

class _Mlp:
    """Units of one MLP block: ``down · (act(gate) ⊙ up)`` with rows over the stream."""

    def __init__(self, H: int):
        self.H = H
        self.gate, self.gb, self.up, self.ub, self.down = [], [], [], [], []
        self.bias = np.zeros(H)

    def unit(self, gate, gb, up, ub, down):
        self.gate.append(gate)
        self.gb.append(gb)
        self.up.append(up)
        self.ub.append(ub)
        self.down.append(down)

    def relu(self, row, b, slot, activations, lo=-np.inf, hi=np.inf):
        if not np.any(row):
            self.bias[slot] += max(b, 0.0)
        elif lo >= 0:
            self.linear(row, b, slot)
        elif hi <= 0:
            pass
        elif activations == "ideal":
            self.unit(row, b, np.zeros(self.H), 1.0, self._e(slot, 1.0))
        else:
            kappa = relu_kappa(row, b, lo, hi)
            self.unit(kappa * row, kappa * b, np.zeros(self.H), 1.0 / kappa, self._e(slot, 1.0))

    def linear(self, row, b, slot, coeff=1.0):
        if not np.any(row):
            self.bias[slot] += coeff * b
            return
        self.unit(np.zeros(self.H), Y_CONST, row, b, self._e(slot, coeff / Y_CONST))

    def product(self, urow, ub, vrow, vb, slot, activations, u_bound=np.inf, vlo=-np.inf, vhi=np.inf):
        # act(v)·u + act(−v)·(−u) = u v for relu; for gelu_tanh gelu(y) − gelu(−y) = y exactly too, but only
        # saturated (κ|v| ≥ 7.25) are the two terms v·u and 0 as relu's: unsaturated, each rounds at |u v| and
        # their sum keeps an ulp or two of it where u v is 0 (2.4e-4 at 1024 in float32, where the program is exact)
        kappa = 1.0 if activations == "ideal" else product_kappa(urow, ub, u_bound, vrow, vb, vlo, vhi)
        self.unit(kappa * vrow, kappa * vb, urow / kappa, ub / kappa, self._e(slot, 1.0))
        self.unit(-kappa * vrow, -kappa * vb, -urow / kappa, -ub / kappa, self._e(slot, 1.0))

    def _e(self, slot, c):
        e = np.zeros(self.H)
        e[slot] = c
        return e

    @property
    def width(self) -> int:
        return len(self.gate)


class _Temporal:
    """A delay-line temporal block: channels (read slot or constant, lag) and their linear_out columns."""

    def __init__(self, H: int):
        self.H = H
        self.x_rows, self.x_bias, self.lags, self.out_cols = [], [], [], []

    def channel(self, read_slot, lag, out_col):
        row = np.zeros(self.H)
        if read_slot is not None:
            row[read_slot] = 1.0
        self.x_rows.append(row)
        self.x_bias.append(0.0 if read_slot is not None else 1.0)
        self.lags.append(lag)
        self.out_cols.append(out_col)

    @property
    def width(self) -> int:
        return len(self.x_rows)


def _delay_line(st, t_max, who, cols: int):
    """The stage's :func:`delay_line` (CompileError where a row's window is not found within :data:`WINDOW_SEARCH`
    powers without ``t_max``, or needs a conv1d weight past :data:`MAX_CONV_ENTRIES`)."""
    most = math.isqrt(MAX_CONV_ENTRIES // max(1, cols))
    line = delay_line(st, range(st.out_dim), t_max, most)
    if None not in line.windows:
        return line
    if t_max is None:
        raise CompileError(f"{who}: {st.op.describe()} (stage {st.index}) has a recurrence whose powers of A neither "
                           f"vanish nor decay below its bound within {WINDOW_SEARCH} steps; the state is computed by "
                           "the depthwise conv, whose window conv1d_width must then be the longest sequence: compile "
                           "with t_max=<longest sequence>")
    raise CompileError(
        f"{who}: {st.op.describe()} (stage {st.index} of the layer form) has a recurrence (A is neither nilpotent "
        f"nor decaying within {most} steps) that this target computes with one conv tap per step, so t_max={t_max} "
        f"needs a conv1d weight of at least t_max² = {float(t_max) ** 2:.3g} entries per column it reads, past the "
        f"{MAX_CONV_ENTRIES:.3g} it builds (t_max ≤ {most} here); compile with a smaller t_max, or for long "
        f"prompts use a target whose recurrence holds the state (not a delay line)")


def _row(H: int, reads: list, coeffs) -> np.ndarray:
    """A stream row reading ``Σ_j coeffs[j] · value_j`` (each value held in one slot, or split over two)."""
    r = np.zeros(H)
    for slots, w in zip(reads, coeffs):
        for slot in slots:
            r[slot] += w
    return r


def _temporal_stage(tb: _Temporal, st, reads, read_bounds, out_slots, t_max, who) -> tuple[int, np.ndarray, dict]:
    """Add stage ``st``'s delay line to ``tb`` (``read_bounds``: of the value it reads); returns its longest window,
    what its dropped taps may move each state coordinate by (:class:`DelayLine`, :func:`kept_lags`) and each
    row's sum (:class:`ConvSum`)."""
    W = dense(st.W)            # k × d_prev, over the previous value
    c, init = vector(st.c), vector(st.init)
    A = dense(st.A)
    k = W.shape[0]
    cols = [j for j in range(W.shape[1]) if np.any(W[:, j])]
    line = _delay_line(st, t_max, who, len(cols))
    windows = np.array(line.windows)
    powers = np.stack(line.powers[:int(windows.max())])
    # per lag: the taps on each value read (rows past their window dropped) and on the constant input 1
    taps = powers @ W
    steps = np.concatenate([(powers[:1] @ (c + A @ init)), powers[1:] @ (c + (A - np.eye(k)) @ init)])
    ended = np.arange(powers.shape[0])[:, None] >= windows[None, :]
    taps[ended] = 0.0
    steps[ended] = 0.0
    # each entry's lags past its own window, and the constant's, may move the row by an equal share
    budget = dropped_taps_budget(st) / (1 + np.count_nonzero(np.any(taps, axis=0), axis=1))
    moved = line.dropped.copy()
    for r in range(k):
        for j in [None] + cols:
            seq = steps[:, r] if j is None else taps[:, r, j]
            keep, tail = kept_lags(seq, 1.0 if j is None else float(read_bounds[j]), float(budget[r]))
            seq[keep:] = 0.0
            moved[r] += tail
    for i in range(powers.shape[0]):
        for j in cols:
            if np.any(taps[i, :, j]):
                col = np.zeros(tb.H)
                col[out_slots] = taps[i, :, j] / Y_CONST
                for slot in reads[j]:
                    tb.channel(slot, i, col)
        if np.any(steps[i]):
            col = np.zeros(tb.H)
            col[out_slots] = steps[i] / Y_CONST
            tb.channel(None, i, col)
    used = [i for i in range(powers.shape[0]) if np.any(taps[i]) or np.any(steps[i])]
    # linear_out sums (32·v)·(tap/32) over every channel of a row, lag by lag: one dot product per step.  Before
    # lag m its partial sum is s_t − A^m (s_{t−m} − s_0) (less the dropped lags), within the state's bound, what
    # A^m moves the state by, and the dropped lags; within lag m it adds at most that lag's products
    lo, hi = stage_state_bounds(st)
    spread = np.maximum(np.abs(lo - init), np.abs(hi - init))
    with np.errstate(invalid="ignore"):
        away = np.where(powers != 0, np.abs(powers) * spread[None, None, :], 0.0).sum(axis=2)
        lag_reach = np.where(taps != 0, np.abs(taps) * read_bounds[None, None, :], 0.0).sum(axis=2) + np.abs(steps)
    limits = np.maximum(np.abs(lo), np.abs(hi))[None, :] + away + lag_reach + moved[None, :]
    parts = np.array([len(reads[j]) for j in range(W.shape[1])])
    sums = {}
    for r in range(k):
        conv = sums[r] = ConvSum()
        conv.products(taps[:, r, :], read_bounds[None, :], parts[None, :], limits[:, r, None])
        conv.products(steps[:, r], 1.0, 1, limits[:, r], constant=True)
        conv.weights = (np.r_[taps[:, r, :].ravel(), steps[:, r]] / Y_CONST).tolist()
    return (used[-1] + 1 if used else 1), moved, sums


def _cancel(tb: _Temporal, slots) -> None:
    """Subtract what the branch reads of each slot from it (exact for float32-exact contents; a ``lo`` part
    leaves ≤ 2^-24·|lo| in a float64 HF model)."""
    for s in slots:
        col = np.zeros(tb.H)
        col[s] = -1.0 / Y_CONST
        tb.channel(s, 0, col)


def _split(tb: _Temporal, reads, fresh) -> list:
    """Split every single-slot value ``v`` (slot s) into ``hi = v`` as the branch reads it (float32 in HF: the
    RMSNorm computes in float32) in a fresh slot and ``lo = v − hi`` left in s; returns the new reads."""
    out = []
    for slots in reads:
        if len(slots) != 1:
            out.append(slots)
            continue
        (s,) = slots
        hi = fresh(1)[0]
        col = np.zeros(tb.H)
        col[s], col[hi] = -1.0 / Y_CONST, 1.0 / Y_CONST
        tb.channel(s, 0, col)
        out.append([hi, s])
    return out


def _mlp_stage(mlp: _Mlp, st, reads, out_slots, activations):
    if st.kind == "R":
        W, c = dense(st.W), vector(st.c)
        for o in range(W.shape[0]):
            mlp.relu(_row(mlp.H, reads, W[o]), c[o], out_slots[o], activations, float(st.pre_lo[o]),
                     float(st.pre_hi[o]))
        return
    plan = plan_products(st, st.W, st.c)

    def rows(m: Matrix, b: Vector, j):
        return _row(mlp.H, reads, dense(m.rows([j]))[0]), float(vector(b)[j])

    const = vector(plan.const)
    for j in range(plan.h):
        mlp.bias[out_slots[j]] += const[j]
    lin = dense(plan.lin_rows)
    lb = vector(plan.lin_bias)
    for n, j in enumerate(plan.lin_slot):
        mlp.linear(_row(mlp.H, reads, lin[n]), lb[n], out_slots[j])
    for j in plan.prod:
        (ur, ub), (vr, vb) = rows(plan.U, plan.cu, j), rows(plan.V, plan.cv, j)
        mlp.product(ur, ub, vr, vb, out_slots[j], activations, magnitude_bound(plan.ulo[j], plan.uhi[j]),
                    float(plan.vlo[j]), float(plan.vhi[j]))


def _check_magnitudes(form, target: str) -> None:
    """Refuse values the residual stream cannot carry through the neutralised RMSNorms (a finite bound above
    :data:`NORM_VALUE_LIMIT`, e.g. units rescale-units put on a 2^52 scale); an unbounded value (an Input
    without bounds) is the caller's to keep small."""
    for st in form.stages:
        largest = float(np.max(np.abs(np.r_[st.lo, st.hi]), initial=0.0))
        if math.isfinite(largest) and largest > NORM_VALUE_LIMIT:
            raise CompileError(
                f"{target}: {st.op.describe()} (stage {st.index} of the layer form) has values up to {largest:.3g} "
                f"by its range-analysis bound; the neutralised RMSNorm of every block is an identity only while "
                f"values stay within ±2^28 ({NORM_VALUE_LIMIT:.3g}); use another target or smaller program values")


def lower_stream(module: Module, *, target: str, activations: str, t_max, recurrent_at) -> Module:
    """Lower a layer-form module to ``rg_embed → blocks → rg_final_norm → linear``.  ``recurrent_at(b)``:
    whether HF block ``b`` is a recurrent block (else attention, made the identity).

    Every value is written to free slots and split (hi/lo, :func:`_split`) by the next recurrent temporal block
    before anything reads it, so HF's float32 roundings inside a float64 model cost ~2^-48 instead of 2^-24;
    that block also cancels the value read before (:func:`_cancel`), whose slots are then reused."""
    form = layer_stages(module, t_max)
    _check_magnitudes(form, target)
    d_in = form.input.dim
    HB = 2 * (d_in + sum(st.out_dim for st in form.stages))   # slots never exceed this; cropped to H below
    used = [d_in]
    free: list[int] = []

    def fresh(n):
        out = []
        for _ in range(n):
            if free:
                out.append(free.pop(0))
            else:
                out.append(used[0])
                used[0] += 1
        return out

    # blocks: dicts with "tb" (_Temporal), "mlp" (_Mlp), "S"/"M" (stage indices), "split" (bool)
    blocks: list[dict] = []
    K = 1

    def new_block(recurrent_needed: bool) -> dict:
        while True:
            blk = {"tb": _Temporal(HB), "mlp": _Mlp(HB), "S": None, "M": None, "split": False,
                   "recurrent": recurrent_at(len(blocks)), "values": []}
            blocks.append(blk)
            if blk["recurrent"] or not recurrent_needed:
                return blk

    reads = [[j] for j in range(d_in)]
    value_slots = list(range(d_in))
    stage_slots = []
    dead: list[int] = []
    dropped: dict[int, np.ndarray] = {}   # per S stage: what its delay line's dropped taps move each coordinate by
    convs: dict[int, dict] = {}           # per S stage: its rows' sums (ConvSum)

    def split_block():
        blk = new_block(True)
        new_reads = _split(blk["tb"], reads, fresh)
        _cancel(blk["tb"], dead)          # the value the previous stage read: its slots are reused from here on
        free.extend(dead)
        free.sort()
        dead.clear()
        blk["split"] = True
        return blk, new_reads

    for si, st in enumerate(form.stages):
        if any(len(r) == 1 for r in reads):
            blk, reads = split_block()
        else:
            blk = blocks[-1] if blocks and blocks[-1]["M"] is None else None
        out = fresh(st.out_dim)
        stage_slots.append(out)
        if st.kind == "S":
            blk = new_block(True)
            prev = form.input if si == 0 else form.stages[si - 1].op
            read_bounds = np.max(np.abs(np.stack(form.ranges(prev))), axis=0)
            window, dropped[si], convs[si] = _temporal_stage(blk["tb"], st, reads, read_bounds, out, t_max, target)
            K = max(K, window)
            blk["S"] = si
        else:
            if blk is None:
                blk = new_block(False)
            _mlp_stage(blk["mlp"], st, reads, out, activations)
            blk["M"] = si
        dead.extend(s for r in reads for s in r)
        reads = [[s] for s in out]
        value_slots = out
    if any(len(r) == 1 for r in reads) or not blocks:
        blk, reads = split_block()
    k4 = 1
    while 4 ** k4 < used[0]:
        k4 += 1
    H = 4 ** k4
    normalizer = float(2 ** k4)   # sqrt(4^k) — exact in bfloat16

    heads = max(1, H // 4)
    L = max([blk["tb"].width for blk in blocks] + [1])
    L = heads * math.ceil(L / heads)
    I = max([blk["mlp"].width for blk in blocks] + [1])

    def mat(rows, n_rows, n_cols):
        a = np.zeros((n_rows, n_cols))
        if rows:
            r = np.asarray(rows)[:, :n_cols]
            a[:r.shape[0], :r.shape[1]] = r
        return Matrix.from_dense(a)

    def vec(vals, n):
        a = np.zeros(n)
        a[:len(vals)] = vals
        return Vector(a)

    embed = np.zeros((H, d_in))
    embed[np.arange(d_in), np.arange(d_in)] = 1.0 / normalizer
    prev = Op(EMBED, [form.input], {"embed": Matrix.from_dense(embed), "normalizer": normalizer}, name="embed")
    ops = [prev]
    stages_meta = [{"stage": "E", "input_slots": list(range(d_in))}]
    norm_w = Vector(np.full(H, NORM_WEIGHT))
    for b, blk in enumerate(blocks):
        tb, mlp = blk["tb"], blk["mlp"]
        common = {"channel_pre_norm_weight": norm_w, "temporal_pre_norm_weight": norm_w, "eps": NORM_EPS,
                  "activations": activations,
                  "mlp_gate_proj_weight": mat(mlp.gate, I, H), "mlp_gate_proj_bias": vec(mlp.gb, I),
                  "mlp_up_proj_weight": mat(mlp.up, I, H), "mlp_up_proj_bias": vec(mlp.ub, I),
                  "mlp_down_proj_weight": mat(mlp.down, I, H).T, "mlp_down_proj_bias": vec(mlp.bias[:H], H)}
        if blk["recurrent"]:
            conv = np.zeros((L, K))
            for ch, lag in enumerate(tb.lags):
                conv[ch, K - 1 - lag] = 1.0
            attrs = dict(common)
            attrs.update({
                "linear_y_weight": Matrix.zeros(L, H), "linear_y_bias": Vector(np.full(L, Y_CONST)),
                "linear_x_weight": mat(tb.x_rows, L, H), "linear_x_bias": vec(tb.x_bias, L),
                "linear_out_weight": mat(tb.out_cols, L, H).T, "linear_out_bias": Vector.zeros(H),
                "conv_1d_weight": Matrix.from_dense(conv), "conv_1d_bias": Vector.zeros(L),
                "rg_lru_recurrent_param": Vector(np.full(L, LRU_PARAM)),
                "rg_lru_input_gate_weight": Matrix.zeros(L, L), "rg_lru_input_gate_bias": Vector(np.full(L, GATE_BIAS)),
                "rg_lru_recurrent_gate_weight": Matrix.zeros(L, L),
                "rg_lru_recurrent_gate_bias": Vector(np.full(L, GATE_BIAS)), "num_heads": heads})
            op = Op(RECURRENT, [prev], attrs, name=f"B{b}")
        else:
            attrs = dict(common)
            attrs.update({"o_proj_weight": Matrix.zeros(H, H), "o_proj_bias": Vector.zeros(H)})
            op = Op(ATTENTION, [prev], attrs, name=f"B{b}")
        ops.append(op)
        kinds = [form.stages[i].kind for i in (blk["S"], blk["M"]) if i is not None]
        # "stage": one letter — S when the block holds an S stage, else R/M; I for a block that only splits
        stages_meta.append({"stage": kinds[0] if kinds else "I",
                            "stages": "+".join((["split"] if blk["split"] else []) + kinds) or "identity",
                            "temporal": form.stages[blk["S"]].op.name if blk["S"] is not None else None,
                            "mlp": form.stages[blk["M"]].op.name if blk["M"] is not None else None})
        prev = op
    fin = Op(FINAL_NORM, [prev], {"weight": norm_w, "eps": NORM_EPS}, name="final_norm")
    ops.append(fin)
    stages_meta.append({"stage": "N"})
    RW = dense(form.readout_W)
    R = np.stack([_row(H, reads, RW[o]) for o in range(RW.shape[0])]) if RW.shape[0] else np.zeros((0, H))
    assert used[0] <= H
    readout = Op("linear", [fin], {"A": Matrix.from_dense(R), "b": Vector(vector(form.readout_c))}, name="readout")
    out = Module([form.input] + ops + [readout], readout, name=form.name)
    meta = dict(form.metadata)
    meta["layout"] = _layout(form, blocks, stage_slots, value_slots)
    meta.update({"target": target, "activations": activations, "t_max": t_max, "stages": stages_meta,
                 "hf": {"hidden_size": H, "lru_width": L, "conv1d_width": K, "intermediate_size": 2 * I,
                        "num_attention_heads": heads, "num_hidden_layers": len(blocks)}})
    meta["split_reads"] = "float32"  # a float64 transformers model reads the stream in float32 (the splits)
    # the RMSNorms compute x·2^-50 in float32 before (1 + w) = 2^50 scales back: a read resolves 2^-149·2^50
    meta["read_step"] = float(np.finfo(np.float32).smallest_subnormal) * (NORM_WEIGHT + 1)
    # below 2^28 a norm is the identity only while mean(x²) < 2^46: past that it drifts every read (a value of 1e8
    # beside a channel of 2e5 read them 1.5e-8 and 5.8e-11 off under a bound of 0)
    meta["stream_norms"] = {"eps": NORM_EPS, "squares": stream_squares(form), "width": H}
    local = _standard_local_errors(module, form) if activations == "standard" else {}
    _charge_delay_lines(local, module, form, dropped, convs)
    if local:
        meta["local_errors"] = local
    out.metadata = meta
    return out.verify()


def _standard_local_errors(module: Module, form) -> dict:
    """What the standard (gelu_tanh) units add to each layer-form op (the ``local_errors`` of
    :mod:`lsrl.passes.error_bound`): a ReLU of an argument of either sign is ``gelu(κx)/κ``, within
    ``GELU_RELU_ERROR/κ`` of ``ReLU(x)`` whether on or off, and rounds a few ulps of its value — but for
    ``|κx| ≥ GELU_IDENTITY``, where it is the computed ``x`` or an exact 0; a product
    ``act(κv)·u/κ + act(−κv)·(−u/κ)`` is ``u·v`` exactly, but its two terms reach
    ``(|v| + 2·GELU_RELU_ERROR/κ)·|u|`` together, each rounding a few ulps.  Every other unit (linear, temporal)
    is the ideal one."""
    positions = {id(op): i for i, op in enumerate(module.ops)}
    local = {}
    for st in form.stages:
        entry = local[positions[id(st.op)]] = local_error_entry(st.out_dim)
        if st.kind == "R":
            W, c = dense(st.W), vector(st.c)
            reads = np.diff(st.W.scipy().tocsr().indptr) > 0
            gated = reads & (st.pre_lo < 0) & (st.pre_hi > 0)
            kappa = np.array([relu_kappa(W[o], float(c[o]), float(st.pre_lo[o]), float(st.pre_hi[o]))
                              for o in np.flatnonzero(gated)])
            gap = GELU_RELU_ERROR / kappa
            entry["on"][gated] = entry["off"][gated] = gap
            entry["on_u"][gated] = ACTIVATION_ULPS * (st.pre_hi[gated] + gap)
            entry["off_u"][gated] = ACTIVATION_ULPS * gap
            # saturated, the unit passes the computed argument κx itself (κ a power of two) or an exact 0
            entry["exact_from"][gated] = GELU_IDENTITY / kappa
            entry["closed_below"][gated] = -GELU_IDENTITY / kappa
        elif st.kind == "M":
            plan = plan_products(st, st.W, st.c)
            U, V, cu, cv = dense(plan.U), dense(plan.V), vector(plan.cu), vector(plan.cv)
            for j in plan.prod:
                bu, bv = magnitude_bound(plan.ulo[j], plan.uhi[j]), magnitude_bound(plan.vlo[j], plan.vhi[j])
                kappa = product_kappa(U[j], float(cu[j]), bu, V[j], float(cv[j]), float(plan.vlo[j]),
                                      float(plan.vhi[j]))
                entry["hidden"][j], entry["units"][j] = (bv + 2 * GELU_RELU_ERROR / kappa) * bu, 2
                entry["on_u"][j] = ACTIVATION_ULPS * entry["hidden"][j]
    return local


def _charge_delay_lines(local: dict, module: Module, form, dropped: dict, convs: dict) -> None:
    """Add what each delay line's dropped taps move its state by, and its rows' sums (:func:`conv_sum_fields`), to
    the state op's ``local_errors``."""
    positions = {id(op): i for i, op in enumerate(module.ops)}
    for si, moved in dropped.items():
        st = form.stages[si]
        entry = local.setdefault(positions[id(st.op)], local_error_entry(st.out_dim))
        entry["on"] = entry["on"] + moved
        entry.update(conv_sum_fields(st.out_dim, convs[si]))


def _layout(form, blocks, slots_of, last_slots) -> list:
    """One entry per op (docs/targets.md "Layout"): the input's slots, then per stream op a dict whose
    ``values`` are the program values it computes and ``decode`` ``[value index, stream slot, 1]`` (the slot
    the value is written to; after the next split it holds ``lo`` and a fresh slot ``hi``)."""
    program = form.metadata.get("layout")
    if not isinstance(program, list) or not program:
        program = None
    d_in = form.input.dim
    inputs = program[0] if program else [{"role": "input", "index": j} for j in range(d_in)]

    def values_of(si):
        st = form.stages[si]
        vals = program[st.chain_index] if program and st.chain_index < len(program) else None
        if isinstance(vals, list):
            return list(vals)
        return [{"role": "value", "terms": [[st.op.name or st.op.kind, j, 1.0]]} for j in range(st.out_dim)]

    out = [inputs, {"stage": "E", "values": list(inputs), "units": [{"role": "input", "start": 0, "end": d_in}],
                    "decode": [[j, j, 1.0] for j in range(d_in)]}]
    for blk in blocks:
        values, decode, units = [], [], []
        for si, role in ((blk["S"], "state"), (blk["M"], "mlp")):
            if si is None:
                continue
            for j, slot in enumerate(slots_of[si]):
                decode.append([len(values) + j, slot, 1.0])
            values.extend(values_of(si))
            if slots_of[si]:
                units.append({"role": role, "start": slots_of[si][0], "end": slots_of[si][-1] + 1})
        out.append({"stage": "B", "values": values, "units": units, "decode": decode})
    last = values_of(len(form.stages) - 1) if form.stages else list(inputs)
    out.append({"stage": "N", "values": [dict(v, role="carrier") if v.get("role") in ("value", "plus", "minus")
                                         else v for v in last],
                "units": [], "decode": [[j, slot, 1.0] for j, slot in enumerate(last_slots)]})
    if program and form.ends_with_linear:
        out.append(program[-1])
    else:
        out.append([{"role": "output", "index": j} for j in range(form.readout_W.shape[0])])
    return out


# ------------------------------------------------------------------------------------------ export

def block_layer_info(group: list[Op]) -> dict:
    """``Target.layer_info`` of a residual block: its kind and widths, and a recurrent block's RG-LRU width and
    conv window."""
    op = group[0]
    info = {"kind": op.kind, "hidden_size": op.dim, "output_size": group[-1].dim}
    if op.kind == RECURRENT:
        info["lru_width"] = op.attrs["linear_x_weight"].shape[0]
        info["conv1d_width"] = op.attrs["conv_1d_weight"].shape[1]
    return info


def write_hf(model, path, *, block_types: list[str]) -> None:
    """Write ``config.json`` + ``model.safetensors`` (float64) + ``lsrl_io.json`` for ``RecurrentGemmaModel``."""
    import torch
    from safetensors.torch import save_file
    from transformers import RecurrentGemmaConfig

    ops = model.module.ops
    embed, blocks, fin, readout = ops[1], ops[2:-2], ops[-2], ops[-1]
    if embed.kind != EMBED or fin.kind != FINAL_NORM:
        raise LsrlError("to_hf: the model is not an rg_embed → blocks → rg_final_norm → linear chain")
    H = embed.dim
    rec = [op for op in blocks if op.kind == RECURRENT]
    L = rec[0].attrs["linear_x_weight"].shape[0] if rec else 4
    K = rec[0].attrs["conv_1d_weight"].shape[1] if rec else 1
    heads = int(rec[0].attrs["num_heads"]) if rec else 1
    I = blocks[0].attrs["mlp_gate_proj_weight"].shape[0]
    for b, op in enumerate(blocks):
        want = "recurrent" if block_types[b % len(block_types)] == "recurrent" else "attention"
        if (op.kind == RECURRENT) != (want == "recurrent"):
            raise LsrlError(f"to_hf: block {b} is {op.kind} but the config's block types say {want}")
    activations = model.activations
    config = RecurrentGemmaConfig(
        num_hidden_layers=len(blocks), vocab_size=1, hidden_size=H, intermediate_size=2 * I,
        num_attention_heads=heads, num_key_value_heads=heads, lru_width=L, conv1d_width=K,
        attention_window_size=max(K, 16), rms_norm_eps=NORM_EPS, hidden_activation=HF_ACT[activations],
        block_types=list(block_types), use_cache=False, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        tie_word_embeddings=False)
    config.dtype = "float64"
    config.architectures = ["RecurrentGemmaModel"]
    torch_dtype = torch.float64

    def t(x):
        if isinstance(x, Matrix):
            return torch.tensor(x.to_float().to_dense(), dtype=torch_dtype)
        if isinstance(x, Vector):
            return torch.tensor(x.array(False).astype(float), dtype=torch_dtype)
        return torch.tensor(x, dtype=torch_dtype)

    sd = {"embed_tokens.weight": torch.zeros(1, H, dtype=torch_dtype), "final_norm.weight": t(fin.attrs["weight"])}
    for b, op in enumerate(blocks):
        a, p = op.attrs, f"layers.{b}."
        sd[p + "temporal_pre_norm.weight"] = t(a["temporal_pre_norm_weight"])
        sd[p + "channel_pre_norm.weight"] = t(a["channel_pre_norm_weight"])
        for name in ("gate_proj", "up_proj", "down_proj"):
            sd[p + f"mlp_block.{name}.weight"] = t(a[f"mlp_{name}_weight"])
            sd[p + f"mlp_block.{name}.bias"] = t(a[f"mlp_{name}_bias"])
        if op.kind == RECURRENT:
            q = p + "temporal_block."
            for name in ("linear_y", "linear_x", "linear_out"):
                sd[q + f"{name}.weight"] = t(a[f"{name}_weight"])
                sd[q + f"{name}.bias"] = t(a[f"{name}_bias"])
            sd[q + "conv_1d.weight"] = t(a["conv_1d_weight"])[:, None, :]
            sd[q + "conv_1d.bias"] = t(a["conv_1d_bias"])
            sd[q + "rg_lru.recurrent_param"] = t(a["rg_lru_recurrent_param"])
            bw = L // heads
            for g in ("input_gate", "recurrent_gate"):
                full = t(a[f"rg_lru_{g}_weight"])
                sd[q + f"rg_lru.{g}_weight"] = torch.stack(
                    [full[h * bw:(h + 1) * bw, h * bw:(h + 1) * bw] for h in range(heads)])
                sd[q + f"rg_lru.{g}_bias"] = t(a[f"rg_lru_{g}_bias"]).reshape(heads, bw)
        else:
            q = p + "temporal_block."
            for name in ("q_proj", "k_proj", "v_proj"):   # head_dim = H // heads, kv heads = heads
                sd[q + f"{name}.weight"] = torch.zeros(H, H, dtype=torch_dtype)
            sd[q + "o_proj.weight"] = t(a["o_proj_weight"])
            sd[q + "o_proj.bias"] = t(a["o_proj_bias"])
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path / "model.safetensors"), metadata={"format": "pt"})
    E = embed.attrs["embed"].to_float().to_dense()
    slots = [int(np.flatnonzero(E[:, j])[0]) for j in range(E.shape[1])]
    scale = float(E[slots[0], 0]) if slots else 1.0
    io = {"hidden_size": H, "input_slots": slots, "input_scale": scale,
          "readout": {"weight": readout.attrs["A"].to_float().to_dense().tolist(),
                      "bias": readout.attrs["b"].array(False).astype(float).tolist()},
          "activations": activations, "hidden_activation": HF_ACT[activations], "conv1d_width": K,
          "t_max": model.module.metadata.get("t_max"), "dtype": "float64",
          "call": "last_hidden_state of model(inputs_embeds=..., use_cache=False)"}
    (path / "lsrl_io.json").write_text(json.dumps(io, indent=1))
