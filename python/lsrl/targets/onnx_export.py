"""``Model.to_onnx(path)``: the lowered model as an ONNX graph of standard ops (targets.md §1–§6).

One input ``x`` ``[T, B, d_in]`` and one output ``y`` ``[T, B, d_out]`` (the ONNX recurrent layout).

``dtype="float32"`` (default) uses the standard recurrent ops below — onnxruntime's CPU kernels for
``RNN``/``LSTM``/``GRU`` are float32-only, so programs with large constants (μ = 1000, λ = 1e10) lose the
precision their conditions need.  ``dtype="float64"`` writes the same equations as a ``Scan`` per layer
whose body is plain ``MatMul``/``Add``/``Relu``/``Sigmoid``/``Tanh``/``Mul`` (onnxruntime runs these in
float64), matching ``model(xs)`` to rounding.

=============  ===========================================================================================
layer          ONNX
=============  ===========================================================================================
rnn_relu       ``RNN``, ``activations=["Relu"]``; ``W = W_ih``, ``R = W_hh``, ``B = [b_ih, b_hh]``
lstm           ``LSTM``; gates reordered from torch's i, f, g, o to ONNX's i, o, f, c; ideal mode
               ``activations=["Relu","Relu","Relu"]``, standard mode the defaults (Sigmoid, Tanh, Tanh)
gru            ``GRU``, ``linear_before_reset=1`` (torch's convention); gates r, z, n → z, r, h; ideal mode
               ``activations=["Relu","Relu"]``
linstate       ``RNN``, ``activations=["Affine"]`` (α = 1, β = 0): ``W = B``, ``R = A``, ``B = [bias, 0]``
linear         ``MatMul`` + ``Add``;  relu: ``Relu``;  multi: two ``Slice`` + ``Mul``
=============  ===========================================================================================

Initial states are constants ``[1, 1, H]`` expanded to the batch; every recurrent output ``[T, 1, B, H]`` is
squeezed to ``[T, B, H]``.
"""
from __future__ import annotations

import numpy as np

from ..errors import LsrlError

__all__ = ["to_onnx", "OPSET"]

OPSET = 17
_LSTM_ORDER = (0, 3, 1, 2)   # torch (i, f, g, o) blocks → ONNX (i, o, f, c)
_GRU_ORDER = (1, 0, 2)       # torch (r, z, n) → ONNX (z, r, h)


def _reorder(mat: np.ndarray, order, H: int) -> np.ndarray:
    return np.concatenate([mat[k * H:(k + 1) * H] for k in order], axis=0)


class _Builder:
    def __init__(self, dtype):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.dtype = np.dtype(dtype)
        self.nodes, self.inits = [], []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base: str, value, dtype=None) -> str:
        name = self.name(base)
        arr = np.asarray(value, dtype=dtype or self.dtype)
        self.inits.append(self.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs, n_out: int = 1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def batch_state(self, x: str, value: np.ndarray) -> str:
        """A ``[1, B, H]`` initial state: the stored vector expanded to the batch size of ``x``."""
        H = value.shape[0]
        shape = self.node("Shape", [x])
        batch = self.node("Gather", [shape, self.const("one_idx", [1], np.int64)], axis=0)
        target = self.node("Concat", [self.const("one", [1], np.int64), batch, self.const("h", [H], np.int64)],
                           axis=0)
        return self.node("Expand", [self.const("state0", value.reshape(1, 1, H)), target])

    def squeeze_dir(self, y: str) -> str:
        return self.node("Squeeze", [y, self.const("axis1", [1], np.int64)])


def _dense(m, dtype):
    return m.scipy().toarray().astype(dtype)


def _vec(v, dtype):
    return v.to_float().values.astype(dtype)


def to_onnx(model, path=None, *, dtype="float32", opset: int = OPSET):
    """Write the ONNX model to ``path`` (when given) and return the ``onnx.ModelProto``."""
    import onnx
    from onnx import TensorProto, helper

    if np.dtype(dtype) not in (np.float32, np.float64):
        raise LsrlError(f"to_onnx: dtype must be 'float32' (standard RNN/LSTM/GRU ops) or 'float64' (Scan), "
                        f"got {dtype!r}")
    b = _Builder(dtype)
    dt = b.dtype
    x = "x"
    ideal = model.activations == "ideal"
    for op in model._ops[:-1]:
        if dt == np.float64 and op.kind in ("linstate", "rnn_relu", "lstm", "gru"):
            x = _scan_layer(b, op, x, ideal)
            continue
        kind = op.kind
        d, H = op.operands[0].dim, op.dim
        if kind == "linstate":
            W = _dense(op.attrs["B"], dt)[None]
            R = _dense(op.attrs["A"], dt)[None]
            B = np.concatenate([_vec(op.attrs["bias"], dt), np.zeros(H, dt)])[None]
            h0 = b.batch_state(x, _vec(op.attrs["init"], dt))
            y = b.node("RNN", [x, b.const("W", W), b.const("R", R), b.const("B", B), "", h0], n_out=2,
                       hidden_size=H, activations=["Affine"], activation_alpha=[1.0], activation_beta=[0.0])[0]
            x = b.squeeze_dir(y)
        elif kind == "linear":
            x = b.node("Add", [b.node("MatMul", [x, b.const("A_T", _dense(op.attrs["A"], dt).T)]),
                               b.const("b", _vec(op.attrs["b"], dt))])
        elif kind == "relu":
            x = b.node("Relu", [x])
        elif kind == "multi":
            h = op.dim
            axes = b.const("axes", [2], np.int64)
            left = b.node("Slice", [x, b.const("s", [0], np.int64), b.const("e", [h], np.int64), axes])
            right = b.node("Slice", [x, b.const("s", [h], np.int64), b.const("e", [2 * h], np.int64), axes])
            x = b.node("Mul", [left, right])
        elif kind == "rnn_relu":
            W = _dense(op.attrs["W_ih"], dt)[None]
            R = _dense(op.attrs["W_hh"], dt)[None]
            B = np.concatenate([_vec(op.attrs["b_ih"], dt), _vec(op.attrs["b_hh"], dt)])[None]
            h0 = b.batch_state(x, _vec(op.attrs["h0"], dt))
            y = b.node("RNN", [x, b.const("W", W), b.const("R", R), b.const("B", B), "", h0], n_out=2,
                       hidden_size=H, activations=["Relu"])[0]
            x = b.squeeze_dir(y)
        elif kind == "lstm":
            W = _reorder(_dense(op.attrs["W_ih"], dt), _LSTM_ORDER, H)[None]
            R = _reorder(_dense(op.attrs["W_hh"], dt), _LSTM_ORDER, H)[None]
            B = np.concatenate([_reorder(_vec(op.attrs["b_ih"], dt), _LSTM_ORDER, H),
                                _reorder(_vec(op.attrs["b_hh"], dt), _LSTM_ORDER, H)])[None]
            h0 = b.batch_state(x, _vec(op.attrs["h0"], dt))
            c0 = b.batch_state(x, _vec(op.attrs["c0"], dt))
            attrs = {"hidden_size": H}
            if ideal:
                attrs["activations"] = ["Relu", "Relu", "Relu"]
            y = b.node("LSTM", [x, b.const("W", W), b.const("R", R), b.const("B", B), "", h0, c0], n_out=3,
                       **attrs)[0]
            x = b.squeeze_dir(y)
        elif kind == "gru":
            W = _reorder(_dense(op.attrs["W_ih"], dt), _GRU_ORDER, H)[None]
            R = _reorder(_dense(op.attrs["W_hh"], dt), _GRU_ORDER, H)[None]
            B = np.concatenate([_reorder(_vec(op.attrs["b_ih"], dt), _GRU_ORDER, H),
                                _reorder(_vec(op.attrs["b_hh"], dt), _GRU_ORDER, H)])[None]
            h0 = b.batch_state(x, _vec(op.attrs["h0"], dt))
            attrs = {"hidden_size": H, "linear_before_reset": 1}
            if ideal:
                attrs["activations"] = ["Relu", "Relu"]
            y = b.node("GRU", [x, b.const("W", W), b.const("R", R), b.const("B", B), "", h0], n_out=2, **attrs)[0]
            x = b.squeeze_dir(y)
        else:  # pragma: no cover - Model validated the kinds
            raise LsrlError(f"to_onnx: no ONNX op for {op.describe()}")
        del d
    readout = model._ops[-1]
    x = b.node("Add", [b.node("MatMul", [x, b.const("A_T", _dense(readout.attrs["A"], dt).T)]),
                       b.const("b", _vec(readout.attrs["b"], dt))])
    b.nodes.append(helper.make_node("Identity", [x], ["y"]))
    elem = TensorProto.FLOAT if dt == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        b.nodes, "lsrl_" + model.target, [helper.make_tensor_value_info("x", elem, ["T", "B", model.d_in])],
        [helper.make_tensor_value_info("y", elem, ["T", "B", model.d_out])], initializer=b.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="lsrl", doc_string=f"lsrl {model.target}/{model.activations} ({dt})")
    proto.ir_version = min(proto.ir_version, 9)
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, str(path))
    return proto


# ------------------------------------------------------------------------------------------ float64: Scan

def _scan_layer(b: _Builder, op, x: str, ideal: bool) -> str:
    """One recurrent layer as ``Scan`` over time; the input projection is computed for all steps first."""
    from onnx import TensorProto, helper

    dt = b.dtype
    elem = TensorProto.DOUBLE
    H = op.dim
    kind = op.kind
    if kind == "linstate":
        w_ih, w_hh = op.attrs["B"], op.attrs["A"]
        b_ih, b_hh = _vec(op.attrs["bias"], dt), np.zeros(H, dt)
        states = [("h", _vec(op.attrs["init"], dt))]
        gates = 1
    else:
        w_ih, w_hh = op.attrs["W_ih"], op.attrs["W_hh"]
        b_ih, b_hh = _vec(op.attrs["b_ih"], dt), _vec(op.attrs["b_hh"], dt)
        states = [("h", _vec(op.attrs["h0"], dt))]
        if kind == "lstm":
            states.append(("c", _vec(op.attrs["c0"], dt)))
        gates = {"rnn_relu": 1, "lstm": 4, "gru": 3}[kind]
    if kind == "gru":  # b_hn sits inside r ⊙ (·): keep the recurrent bias in the body
        pre_bias, rec_bias = b_ih, b_hh
    else:
        pre_bias, rec_bias = b_ih + b_hh, None
    pre = b.node("Add", [b.node("MatMul", [x, b.const("Wih_T", _dense(w_ih, dt).T)]), b.const("bias", pre_bias)])
    init = [b.batch_state(x, v) for _, v in states]
    init = [b.node("Squeeze", [s_, b.const("axis0", [0], np.int64)]) for s_ in init]  # [B, H]

    # body graph: inputs (states..., pre_t), outputs (states'..., y_t)
    body_nodes = []
    count = [0]

    def nm(base):
        count[0] += 1
        return f"{op.kind}_{base}_{count[0]}"

    def node(kind_, inputs, **attrs):
        out = nm(kind_.lower())
        body_nodes.append(helper.make_node(kind_, list(inputs), [out], **attrs))
        return out

    whh_t = b.const("Whh_T", _dense(w_hh, dt).T)  # outer-scope initializers are visible in the body
    sig = "Relu" if (ideal or kind in ("linstate", "rnn_relu")) else "Sigmoid"
    tanh = "Relu" if (ideal or kind == "rnn_relu") else "Tanh"
    h_in, pre_t = nm("h_in"), nm("pre_t")
    c_in = nm("c_in") if kind == "lstm" else None
    rec = node("MatMul", [h_in, whh_t])
    if rec_bias is not None:
        rec = node("Add", [rec, b.const("bhh", rec_bias)])

    def part(t, k):
        starts, ends = b.const("st", [k * H], np.int64), b.const("en", [(k + 1) * H], np.int64)
        return node("Slice", [t, starts, ends, b.const("ax", [1], np.int64)])

    outs = []
    if kind == "linstate":
        h_out = node("Add", [rec, pre_t])
        outs = [h_out]
    elif kind == "rnn_relu":
        h_out = node("Relu", [node("Add", [rec, pre_t])])
        outs = [h_out]
    elif kind == "lstm":
        g = node("Add", [rec, pre_t])
        i, f, gg, o = (part(g, k) for k in range(4))
        i, f, o = node(sig, [i]), node(sig, [f]), node(sig, [o])
        gg = node(tanh, [gg])
        c_out = node("Add", [node("Mul", [f, c_in]), node("Mul", [i, gg])])
        h_out = node("Mul", [o, node(tanh, [c_out])])
        outs = [h_out, c_out]
    else:  # gru, torch convention (linear_before_reset)
        r = node(sig, [node("Add", [part(pre_t, 0), part(rec, 0)])])
        z = node(sig, [node("Add", [part(pre_t, 1), part(rec, 1)])])
        n = node(tanh, [node("Add", [part(pre_t, 2), node("Mul", [r, part(rec, 2)])])])
        one = b.const("one", np.ones(1, dt))
        h_out = node("Add", [node("Mul", [node("Sub", [one, z]), n]), node("Mul", [z, h_in])])
        outs = [h_out]
    y_t = node("Identity", [h_out])
    body_inputs = [helper.make_tensor_value_info(h_in, elem, ["B", H])]
    if c_in:
        body_inputs.append(helper.make_tensor_value_info(c_in, elem, ["B", H]))
    body_inputs.append(helper.make_tensor_value_info(pre_t, elem, ["B", gates * H]))
    body_outputs = [helper.make_tensor_value_info(o_, elem, ["B", H]) for o_ in outs]
    body_outputs.append(helper.make_tensor_value_info(y_t, elem, ["B", H]))
    body = helper.make_graph(body_nodes, nm("body"), body_inputs, body_outputs)
    results = b.node("Scan", init + [pre], n_out=len(outs) + 1, body=body, num_scan_inputs=1)
    return results[-1]
