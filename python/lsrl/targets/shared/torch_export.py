"""``Model.to_torch()``: the lowered model as a float64 ``torch.nn.Module`` (targets.md §1.3).

Every layer comes from its target (:meth:`lsrl.targets.Target.torch_layer`): a cell becomes one torch recurrent
module (``num_layers=1``: layers have different widths) wrapped in :class:`CellLayer`, which holds the stored
initial states as buffers expanded to the batch; the core ops (``linstate`` — torch has no linear RNN module,
so a scan — ``linear``, ``relu``, ``multi``) have their modules here (:func:`core_torch_layer`).  The readout is
an ``nn.Linear``.  Input ``(B, T, d_in)``, output ``(B, T, d_out)``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import LsrlError, PrecisionError, ShapeError

__all__ = ["to_torch", "LsrlTorchModel", "CellLayer", "GruEquationsLayer", "gated_cell_layer", "core_torch_layer",
           "dense", "vector"]


def dense(m) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(m.scipy().toarray(), dtype=np.float64))


def vector(v) -> torch.Tensor:
    return torch.from_numpy(np.array(v.to_float().values, dtype=np.float64, copy=True))


class CellLayer(nn.Module):
    """A torch recurrent module (``nn.RNN``/``nn.LSTM``/``nn.GRU`` layout: ``weight_ih_l0`` …) loaded with a
    cell op's weights, started from the op's stored initial state (one buffer per state part)."""

    def __init__(self, cell: nn.Module, op):
        super().__init__()
        self.cell = cell
        with torch.no_grad():
            cell.weight_ih_l0.copy_(dense(op.attrs["W_ih"]))
            cell.weight_hh_l0.copy_(dense(op.attrs["W_hh"]))
            cell.bias_ih_l0.copy_(vector(op.attrs["b_ih"]))
            cell.bias_hh_l0.copy_(vector(op.attrs["b_hh"]))
        self.parts = [part + "0" for part in op.opdef.state_parts]
        for name in self.parts:
            self.register_buffer(name, vector(op.attrs[name]).reshape(1, 1, op.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        states = [getattr(self, name).expand(1, batch, -1).contiguous() for name in self.parts]
        y, _ = self.cell(x, states[0] if len(states) == 1 else tuple(states))
        return y


class GruEquationsLayer(CellLayer):
    """An ``nn.GRU``'s weights and initial state, its equations run step by step with the update written
    ``(1 − z)·n + z·h`` — the kernel's and the ONNX export's — where ``nn.GRU`` computes ``n + z·(h − n)``: at a
    saturated ``z = 1`` (a held state) that returns ``h`` only up to an ulp of ``h − n``, which a weight ≥ 2^24
    reading the state turns into a visible error (4e-7 relative on the paper's programs, docs/numerics.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cell = self.cell
        size = cell.hidden_size
        w_ih, w_hh, b_ih, b_hh = cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0
        h = getattr(self, self.parts[0]).reshape(1, size).expand(x.shape[0], size)
        inputs = x @ w_ih.T + b_ih  # every step's input part at once; only the recurrent part is sequential
        outputs = []
        for t in range(x.shape[1]):
            gi = inputs[:, t]
            gh = h @ w_hh.T + b_hh
            r = torch.sigmoid(gi[:, :size] + gh[:, :size])
            z = torch.sigmoid(gi[:, size:2 * size] + gh[:, size:2 * size])
            n = torch.tanh(gi[:, 2 * size:] + r * gh[:, 2 * size:])
            h = (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs, 1) if outputs else x.new_zeros(x.shape[0], 0, size)


def gated_cell_layer(target: str, module: str, op, activations: str) -> CellLayer:
    """``CellLayer(torch.nn.<module>(…), op)`` for a cell whose σ and tanh torch hard-codes: an ideal-mode
    model (ReLU in their place) cannot run there and is refused."""
    if activations == "ideal":
        raise LsrlError(f"to_torch: an ideal-mode {target} uses ReLU in place of σ and tanh, which torch.nn.{module} "
                        "hard-codes; compile with activations='standard' for torch, or export the ideal model with "
                        "to_onnx (ONNX lets activations be chosen)")
    cell = getattr(nn, module)(op.operands[0].dim, op.dim, batch_first=True, dtype=torch.float64)
    return CellLayer(cell, op)


class _LinState(nn.Module):
    """``s_t = A s_{t-1} + B x_t + bias`` as a scan (torch has no linear RNN module)."""

    def __init__(self, op):
        super().__init__()
        self.A = nn.Parameter(dense(op.attrs["A"]))
        self.B = nn.Parameter(dense(op.attrs["B"]))
        self.bias = nn.Parameter(vector(op.attrs["bias"]))
        self.register_buffer("init", vector(op.attrs["init"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x @ self.B.T + self.bias
        s = self.init.expand(x.shape[0], -1)
        out = []
        for t in range(x.shape[1]):
            s = s @ self.A.T + u[:, t]
            out.append(s)
        if not out:
            return u[:, :0, :0].new_zeros(x.shape[0], 0, self.A.shape[0])
        return torch.stack(out, dim=1)


class _Affine(nn.Module):
    def __init__(self, op):
        super().__init__()
        A = op.attrs["A"]
        self.linear = nn.Linear(A.shape[1], A.shape[0], dtype=torch.float64)
        with torch.no_grad():
            self.linear.weight.copy_(dense(A))
            self.linear.bias.copy_(vector(op.attrs["b"]))

    def forward(self, x):
        return self.linear(x)


class _ReLU(nn.Module):
    def forward(self, x):
        return torch.relu(x)


class _Multi(nn.Module):
    def forward(self, x):
        h = x.shape[-1] // 2
        return x[..., :h] * x[..., h:]


def core_torch_layer(op) -> nn.Module:
    """The torch module of a core op (``linstate``, ``linear``, ``relu``, ``multi``)."""
    if op.kind == "linstate":
        return _LinState(op)
    if op.kind == "linear":
        return _Affine(op)
    if op.kind == "relu":
        return _ReLU()
    if op.kind == "multi":
        return _Multi()
    raise LsrlError(f"to_torch: no torch layer for {op.describe()}")


class LsrlTorchModel(nn.Module):
    """The exported stack: ``layers`` (one module per lowered op) then the ``readout`` ``nn.Linear``."""

    def __init__(self, model):
        super().__init__()
        self.target, self.activations = model.target, model.activations
        #: dtype name -> why the model is wrong in it (``Model.dtype_limits``): a module converted to such a
        #: dtype (``.float()``) raises instead of answering
        self.dtype_limits = dict(model.dtype_limits)
        architecture = model.architecture
        self.layers = nn.ModuleList(architecture.torch_layers(model))
        self.readout = _Affine(model._ops[-1]).linear
        self.d_in = model.module.input.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, T, d_in)`` → ``(B, T, d_out)`` (in the parameters' dtype: float64 unless converted; float32
        or float64 only, the dtypes the model's bounds are stated for)."""
        dtype = self.readout.weight.dtype
        name = str(dtype).removeprefix("torch.")
        if name not in ("float32", "float64"):  # .half() or .bfloat16(): silent garbage (16 where 1 is right)
            raise PrecisionError(f"the exported {self.target} {self.activations} model runs in float32 or float64, "
                                 f"not {name}")
        why = self.dtype_limits.get(name)
        if why is not None:
            raise PrecisionError(f"the exported {self.target} {self.activations} model cannot run in {dtype}: {why}")
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_in:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"the exported {self.target} {self.activations} model: x must be a tensor of shape "
                             f"(B, T, {self.d_in}), got {shape}")
        x = x.to(dtype)
        for layer in self.layers:
            x = layer(x)
        return self.readout(x)


def to_torch(model) -> LsrlTorchModel:
    return LsrlTorchModel(model).eval()
