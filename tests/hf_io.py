"""Running a directory written by ``model.to_hf(path)`` with transformers alone, per its ``lsrl_io.json``
(the contract every HF target writes: ``inputs_embeds`` zero except ``input_slots = x · input_scale``, output
``last_hidden_state @ readout.weight.T + readout.bias``).  Shared by the HF target tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def hf_outputs(path, xs, dtype, *, model_type: str | None = None) -> np.ndarray:
    """``xs`` (B, T, d_in) through the exported model in ``dtype`` (a torch dtype); float64 numpy (B, T, d_out).
    ``model_type``: the class name ``AutoModel`` must pick (e.g. ``"MambaModel"``), checked when given."""
    import torch
    import transformers

    path = Path(path)
    io = json.loads((path / "lsrl_io.json").read_text())
    model = transformers.AutoModel.from_pretrained(str(path), dtype=dtype).eval()
    if model_type is not None:
        assert type(model).__name__ == model_type, type(model).__name__
    xs = np.asarray(xs, dtype=np.float64)
    emb = torch.zeros(xs.shape[0], xs.shape[1], io["hidden_size"], dtype=dtype)
    emb[..., io["input_slots"]] = torch.tensor(xs * np.asarray(io["input_scale"], dtype=np.float64), dtype=dtype)
    with torch.no_grad():
        h = model(inputs_embeds=emb, use_cache=False).last_hidden_state.double().numpy()
    return h @ np.array(io["readout"]["weight"], dtype=np.float64).T + np.array(io["readout"]["bias"])


def relative_error(got, want) -> float:
    """``max|got − want| / max(1, max|want|)``: the error measure of docs/mamba.md and docs/recurrentgemma.md."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return float(np.max(np.abs(got - want), initial=0.0) / max(1.0, float(np.max(np.abs(want), initial=0.0))))
