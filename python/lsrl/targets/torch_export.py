"""``Model.to_torch()``: the lowered model as a float64 ``torch.nn.Module`` (targets.md §1.3).

* ``relu_rnn`` → one ``nn.RNN(nonlinearity="relu")`` per layer;
* ``lstm`` / ``gru`` with standard activations → one ``nn.LSTM`` / ``nn.GRU`` per layer (torch's gate
  orders i, f, g, o and r, z, n are the IR's); ideal mode cannot run there (σ/tanh are hard-coded) and raises;
* ``linear_rnn`` → torch has no linear RNN module: a plain module runs each ``linstate`` as a scan.

Layers have different widths, so each is its own module (``num_layers=1``); initial states are buffers
expanded to the batch; the readout is an ``nn.Linear``.  Input ``(B, T, d_in)``, output ``(B, T, d_out)``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import LsrlError

__all__ = ["to_torch", "LsrlTorchModel"]


def _dense(m) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(m.scipy().toarray(), dtype=np.float64))


def _vec(v) -> torch.Tensor:
    return torch.from_numpy(np.array(v.to_float().values, dtype=np.float64, copy=True))


class _Recurrent(nn.Module):
    """One ``nn.RNN``/``nn.LSTM``/``nn.GRU`` layer with stored initial states."""

    def __init__(self, op):
        super().__init__()
        d, H = op.operands[0].dim, op.dim
        kind = op.kind
        if kind == "rnn_relu":
            self.cell = nn.RNN(d, H, nonlinearity="relu", batch_first=True, dtype=torch.float64)
        elif kind == "lstm":
            self.cell = nn.LSTM(d, H, batch_first=True, dtype=torch.float64)
        else:
            self.cell = nn.GRU(d, H, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            self.cell.weight_ih_l0.copy_(_dense(op.attrs["W_ih"]))
            self.cell.weight_hh_l0.copy_(_dense(op.attrs["W_hh"]))
            self.cell.bias_ih_l0.copy_(_vec(op.attrs["b_ih"]))
            self.cell.bias_hh_l0.copy_(_vec(op.attrs["b_hh"]))
        self.kind = kind
        self.register_buffer("h0", _vec(op.attrs["h0"]).reshape(1, 1, H))
        if kind == "lstm":
            self.register_buffer("c0", _vec(op.attrs["c0"]).reshape(1, 1, H))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        h0 = self.h0.expand(1, batch, -1).contiguous()
        if self.kind == "lstm":
            y, _ = self.cell(x, (h0, self.c0.expand(1, batch, -1).contiguous()))
        else:
            y, _ = self.cell(x, h0)
        return y


class _LinState(nn.Module):
    """``s_t = A s_{t-1} + B x_t + bias`` as a scan (torch has no linear RNN module)."""

    def __init__(self, op):
        super().__init__()
        self.A = nn.Parameter(_dense(op.attrs["A"]))
        self.B = nn.Parameter(_dense(op.attrs["B"]))
        self.bias = nn.Parameter(_vec(op.attrs["bias"]))
        self.register_buffer("init", _vec(op.attrs["init"]))

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
            self.linear.weight.copy_(_dense(A))
            self.linear.bias.copy_(_vec(op.attrs["b"]))

    def forward(self, x):
        return self.linear(x)


class _ReLU(nn.Module):
    def forward(self, x):
        return torch.relu(x)


class _Multi(nn.Module):
    def forward(self, x):
        h = x.shape[-1] // 2
        return x[..., :h] * x[..., h:]


class LsrlTorchModel(nn.Module):
    """The exported stack: ``layers`` (one module per lowered op) then the ``readout`` ``nn.Linear``."""

    def __init__(self, model):
        super().__init__()
        self.target, self.activations = model.target, model.activations
        layers = []
        for op in model._ops[:-1]:
            if op.kind in ("rnn_relu", "lstm", "gru"):
                layers.append(_Recurrent(op))
            elif op.kind == "linstate":
                layers.append(_LinState(op))
            elif op.kind == "linear":
                layers.append(_Affine(op))
            elif op.kind == "relu":
                layers.append(_ReLU())
            elif op.kind == "multi":
                layers.append(_Multi())
            else:  # pragma: no cover - Model validated the kinds
                raise LsrlError(f"to_torch: no torch layer for {op.describe()}")
        self.layers = nn.ModuleList(layers)
        readout = model._ops[-1]
        self.readout = nn.Linear(readout.operands[0].dim, readout.dim, dtype=torch.float64)
        with torch.no_grad():
            self.readout.weight.copy_(_dense(readout.attrs["A"]))
            self.readout.bias.copy_(_vec(readout.attrs["b"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, T, d_in)`` → ``(B, T, d_out)`` (in the parameters' dtype: float64 unless converted)."""
        x = x.to(self.readout.weight.dtype)
        for layer in self.layers:
            x = layer(x)
        return self.readout(x)


def to_torch(model) -> LsrlTorchModel:
    if model.exact:
        pass  # weights are rounded to float64 like the float interpreter does
    if model.target in ("lstm", "gru") and model.activations == "ideal":
        raise LsrlError(f"to_torch: an ideal-mode {model.target} uses ReLU in place of σ and tanh, which "
                        f"torch.nn.{model.target.upper()} hard-codes; compile with activations='standard' for "
                        "torch, or export the ideal model with to_onnx (ONNX lets activations be chosen)")
    return LsrlTorchModel(model).eval()
