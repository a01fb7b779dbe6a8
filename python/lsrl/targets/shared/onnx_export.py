"""``Model.to_onnx(path)``: the lowered model as an ONNX graph of standard ops (targets.md §1–§6).

One input ``x`` ``[T, B, d_in]`` and one output ``y`` ``[T, B, d_out]`` (the ONNX recurrent layout).  Every
layer comes from its target (:meth:`lsrl.targets.Target.onnx_layer`, which writes into an
:class:`OnnxBuilder`); the core ops are here (:func:`core_onnx_layer`: ``linear`` → ``MatMul`` + ``Add``,
``relu`` → ``Relu``, ``multi`` → two ``Slice`` + ``Mul``, ``linstate`` → ``RNN`` with
``activations=["Affine"]`` (α = 1, β = 0), ``W = B``, ``R = A``, ``B = [bias, 0]``).

``dtype="float32"`` (default) uses the standard recurrent ops (onnxruntime's CPU kernels for them are
float32-only), except for standard-mode gated cells, written as a float32 ``Scan`` whose tanh is correctly
rounded near 0 (:meth:`ScanBody.tanh`; docs/targets.md, "Exports").  ``dtype="float64"`` writes every recurrent
layer as a ``Scan`` (:meth:`OnnxBuilder.scan_cell`) whose body is plain ``MatMul``/``Add``/``Relu``/``Sigmoid``/
``Tanh``/``Mul`` (onnxruntime runs these in float64), matching ``model(xs)`` to rounding.

Initial states are constants ``[1, 1, H]`` expanded to the batch; every recurrent output ``[T, 1, B, H]`` is
squeezed to ``[T, B, H]``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import LsrlError

__all__ = ["to_onnx", "OPSET", "OnnxBuilder", "ScanBody", "core_onnx_layer", "dense", "vector", "reorder_gates"]

OPSET = 17


def reorder_gates(mat: np.ndarray, order, H: int) -> np.ndarray:
    """The ``H``-row blocks of ``mat`` in the order ``order`` (ONNX's gate orders differ from torch's)."""
    return np.concatenate([mat[k * H:(k + 1) * H] for k in order], axis=0)


def dense(m, dtype):
    return m.scipy().toarray().astype(dtype)


def vector(v, dtype):
    return v.to_float().values.astype(dtype)


@dataclass
class ScanBody:
    """What a ``Scan`` body (one time step of a cell) is written with: ``states`` are the state inputs
    (``[B, H]``), ``pre`` the step's input projection (``[B, gates·H]``) and ``rec`` the recurrent product
    ``W_hh h`` (plus the recurrent bias when it is kept apart); ``node`` adds a body node, ``part(t, k)`` is
    gate block ``k`` of ``t`` and ``const`` an outer-scope constant."""
    states: list
    pre: str
    rec: str
    node: Callable
    part: Callable
    const: Callable
    dtype: np.dtype

    def tanh(self, x: str) -> str:
        """``tanh(x)``, returning ``x`` itself where the correctly rounded tanh is ``x`` (``|x| < 2^-12`` in
        float32, ``2^-27`` in float64: ``x²/3`` is below half an ulp).  onnxruntime's float32 ``Tanh`` is 1–4
        ulps off there (``tanh(1e-12)`` = ``9.9999989e-13``), which the standard-mode carriers ``tanh(ε v)/ε``
        cannot survive (docs/numerics.md)."""
        small = self.const("tanh_linear", np.asarray(2.0 ** (-12 if self.dtype == np.float32 else -27), self.dtype))
        return self.node("Where", [self.node("Less", [self.node("Abs", [x]), small]), x, self.node("Tanh", [x])])


class OnnxBuilder:
    """Collects the nodes and initializers of the graph; ``dtype`` is the graph's float type."""

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

    def scan_cell(self, op, x: str, *, w_ih, w_hh, pre_bias: np.ndarray, rec_bias: np.ndarray | None,
                  initial: list, gates: int, body: Callable[[ScanBody], list]) -> str:
        """A recurrent layer as a ``Scan`` over time (float64, and standard-mode cells in float32): the input
        projection ``x W_ih^T + pre_bias`` is computed for all steps first; ``body`` writes one step from a
        :class:`ScanBody` and returns the new states, the first of which is also the layer's output.
        ``initial`` holds the initial state vectors (``[H]`` each)."""
        from onnx import TensorProto, helper

        dt = self.dtype
        elem = TensorProto.FLOAT if dt == np.float32 else TensorProto.DOUBLE
        H = op.dim
        pre = self.node("Add", [self.node("MatMul", [x, self.const("Wih_T", dense(w_ih, dt).T)]),
                                self.const("bias", pre_bias)])
        init = [self.batch_state(x, v) for v in initial]
        init = [self.node("Squeeze", [s_, self.const("axis0", [0], np.int64)]) for s_ in init]  # [B, H]

        body_nodes = []
        count = [0]

        def name(base):
            count[0] += 1
            return f"{op.kind}_{base}_{count[0]}"

        def node(kind, inputs, **attrs):
            out = name(kind.lower())
            body_nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
            return out

        def part(t, k):
            starts, ends = self.const("st", [k * H], np.int64), self.const("en", [(k + 1) * H], np.int64)
            return node("Slice", [t, starts, ends, self.const("ax", [1], np.int64)])

        whh_t = self.const("Whh_T", dense(w_hh, dt).T)  # outer-scope initializers are visible in the body
        states_in = [name(f"state{i}_in") for i in range(len(initial))]
        pre_t = name("pre_t")
        rec = node("MatMul", [states_in[0], whh_t])
        if rec_bias is not None:
            rec = node("Add", [rec, self.const("bhh", rec_bias)])
        outs = body(ScanBody(states=states_in, pre=pre_t, rec=rec, node=node, part=part, const=self.const,
                             dtype=dt))
        y_t = node("Identity", [outs[0]])
        body_inputs = [helper.make_tensor_value_info(s_, elem, ["B", H]) for s_ in states_in]
        body_inputs.append(helper.make_tensor_value_info(pre_t, elem, ["B", gates * H]))
        body_outputs = [helper.make_tensor_value_info(o_, elem, ["B", H]) for o_ in outs]
        body_outputs.append(helper.make_tensor_value_info(y_t, elem, ["B", H]))
        graph = helper.make_graph(body_nodes, name("body"), body_inputs, body_outputs)
        results = self.node("Scan", init + [pre], n_out=len(outs) + 1, body=graph, num_scan_inputs=1)
        return results[-1]

    def recurrent_op(self, onnx_op: str, op, x: str, *, W: np.ndarray, R: np.ndarray, B: np.ndarray,
                     initial: list, n_out: int, **attrs) -> str:
        """One of ONNX's recurrent ops (``RNN``/``LSTM``/``GRU``) with weights ``[1, gates·H, ·]`` and initial
        states expanded to the batch; returns its ``[T, B, H]`` output."""
        inits = [self.batch_state(x, v) for v in initial]
        y = self.node(onnx_op, [x, self.const("W", W), self.const("R", R), self.const("B", B), ""] + inits,
                      n_out=n_out, hidden_size=op.dim, **attrs)[0]
        return self.squeeze_dir(y)


def to_onnx(model, path=None, *, dtype="float32", opset: int = OPSET):
    """Write the ONNX model to ``path`` (when given) and return the ``onnx.ModelProto``."""
    import onnx
    from onnx import TensorProto, helper

    if np.dtype(dtype) not in (np.float32, np.float64):
        raise LsrlError(f"to_onnx: dtype must be 'float32' (standard recurrent ops) or 'float64' (Scan), "
                        f"got {dtype!r}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"to_onnx: path must be a str or os.PathLike (None: only return the model), got {path!r}")
    if not isinstance(opset, int) or isinstance(opset, bool):
        raise TypeError(f"to_onnx: opset must be an int, got {opset!r}")
    b = OnnxBuilder(dtype)
    dt = b.dtype
    x = "x"
    architecture = model.architecture
    for op in model._ops[:-1]:
        x = architecture.onnx_layer(b, op, x, model.activations)
    x = core_onnx_layer(b, model._ops[-1], x)
    b.nodes.append(helper.make_node("Identity", [x], ["y"]))
    elem = TensorProto.FLOAT if dt == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        b.nodes, "lsrl_" + model.target, [helper.make_tensor_value_info("x", elem, ["T", "B", model.d_in])],
        [helper.make_tensor_value_info("y", elem, ["T", "B", model.d_out])], initializer=b.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="lsrl", doc_string=f"lsrl {model.target}/{model.activations} ({dt})")
    proto.ir_version = min(proto.ir_version, 9)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:  # an opset that lacks an op or an attribute the export uses
        reason = str(e).strip().splitlines()[0]
        raise LsrlError(f"to_onnx: the model is not valid ONNX at opset {opset} (the default is {OPSET}): "
                        f"{reason}") from None
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # as Model.save does
        onnx.save(proto, str(path))
    return proto


def core_onnx_layer(b: "OnnxBuilder", op, x: str) -> str:
    """A core op (``linear``, ``relu``, ``multi``, ``linstate``) in the graph."""
    dt = b.dtype
    if op.kind == "linear":
        return b.node("Add", [b.node("MatMul", [x, b.const("A_T", dense(op.attrs["A"], dt).T)]),
                              b.const("b", vector(op.attrs["b"], dt))])
    if op.kind == "relu":
        return b.node("Relu", [x])
    if op.kind == "multi":
        h = op.dim
        axes = b.const("axes", [2], np.int64)
        left = b.node("Slice", [x, b.const("s", [0], np.int64), b.const("e", [h], np.int64), axes])
        right = b.node("Slice", [x, b.const("s", [h], np.int64), b.const("e", [2 * h], np.int64), axes])
        return b.node("Mul", [left, right])
    if op.kind == "linstate":
        H = op.dim
        if dt == np.float64:
            return b.scan_cell(op, x, w_ih=op.attrs["B"], w_hh=op.attrs["A"], pre_bias=vector(op.attrs["bias"], dt),
                               rec_bias=None, initial=[vector(op.attrs["init"], dt)], gates=1,
                               body=lambda c: [c.node("Add", [c.rec, c.pre])])
        return b.recurrent_op("RNN", op, x, W=dense(op.attrs["B"], dt)[None], R=dense(op.attrs["A"], dt)[None],
                              B=np.concatenate([vector(op.attrs["bias"], dt), np.zeros(H, dt)])[None],
                              initial=[vector(op.attrs["init"], dt)], n_out=2, activations=["Affine"],
                              activation_alpha=[1.0], activation_beta=[0.0])
    raise LsrlError(f"to_onnx: no ONNX form for {op.describe()}")


