"""The continuous program (Listing 1) compiled with standard activations for each Hugging Face target, exported
with ``to_hf`` and run by transformers alone in float32 and float64: the answer at the last step is within 1e-3
of ``f`` at the centre of the query's cell, the value the program approximates ``f(q)`` by (the model-vs-
interpreter errors are in tests/test_hawk_griffin.py and tests/test_mamba.py)."""
from __future__ import annotations

import numpy as np
import pytest

import lsrl
from hf_io import hf_outputs
from lsrl.programs import continuous_approximator
from strategies import continuous_centre_case

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

N_LEVELS = 4
#: |answer − f(centre)|, measured (hawk, griffin, mamba): float64 ≤ 1.9e-13 / 1.9e-13 / 7.8e-16, float32
#: ≤ 8.9e-8 / 8.9e-8 / 3.6e-7.  The issue asks 1e-3; the tolerances sit within ~100× of the measured errors.
TOLERANCE = {"float64": 1e-11, "float32": 1e-5}


@pytest.mark.parametrize("target", ["hawk", "griffin", "mamba"])
def test_standard_mode_answers_f_at_the_cell_centre(target, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    xs, want = continuous_centre_case(N_LEVELS)
    program = continuous_approximator(2, 1, conditional="multiplicative", value_bound=3)
    model = lsrl.compile(program, target, activations="standard", t_max=xs.shape[1])
    model.to_hf(tmp_path)
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        answers = hf_outputs(tmp_path, xs, dtype)[:, -1, :]
        assert np.max(np.abs(answers - want)) <= TOLERANCE[name], (name, answers, want)
