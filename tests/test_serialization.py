"""Model.save / lsrl.load: safetensors + JSON round trips, and corrupted or crafted files fail cleanly."""
from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="model files use the safetensors format (pip install safetensors)")
from safetensors.numpy import load_file, save_file  # noqa: E402

import lsrl  # noqa: E402
from lsrl.programs import more_ones, token_map  # noqa: E402
from lsrl.serialization import ModelFormatError  # noqa: E402

XS = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=float)[:, None]


@pytest.mark.parametrize("target", ["linear_rnn", "relu_rnn", "lstm", "gru"])
@pytest.mark.parametrize("activations", ["ideal", "standard"])
def test_round_trip_directory(tmp_path, target, activations):
    model = lsrl.compile(more_ones(), target, activations=activations, t_max=32)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "weights.safetensors"]
    again = lsrl.load(tmp_path / "m")
    assert str(again.module) == str(model.module)
    assert again.target == target and again.activations == activations
    assert again.layout == json.loads(json.dumps(model.layout))
    np.testing.assert_array_equal(again(XS), model(XS))


def test_round_trip_file_pair_and_exact(tmp_path):
    model = lsrl.compile(token_map(2, vocab_size=10), "gru", exact=True, t_max=12)
    assert model.exact
    model.save(tmp_path / "tok.safetensors")
    assert (tmp_path / "tok.json").exists()
    again = lsrl.load(tmp_path / "tok.json")
    assert again.exact
    assert str(again.module) == str(model.module)
    xs = np.array([[1], [2], [1], [2], [3], [4]], dtype=float)
    assert (again(xs, exact=True) == model(xs, exact=True)).all()


@pytest.fixture
def saved(tmp_path):
    model = lsrl.compile(more_ones(), "lstm")
    model.save(tmp_path)
    return tmp_path


def _edit_json(path, fn):
    doc = json.loads((path / "model.json").read_text())
    fn(doc)
    (path / "model.json").write_text(json.dumps(doc))


def _edit_tensors(path, fn):
    """Edit the weights like someone who also updates the recorded hash (so the checks after it run)."""
    tensors = dict(load_file(str(path / "weights.safetensors")))
    fn(tensors)
    save_file(tensors, str(path / "weights.safetensors"))
    digest = hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest()
    _edit_json(path, lambda d: d.update(weights_sha256=digest))


def _expect(path, match):
    with pytest.raises(ModelFormatError, match=match):
        lsrl.load(path)


def test_not_a_model(tmp_path):
    _expect(tmp_path / "nothing", "no saved model")
    (tmp_path / "model.json").write_text("{not json")
    _expect(tmp_path, "not valid JSON")


def test_pickle_is_rejected(tmp_path):
    (tmp_path / "model.json").write_bytes(pickle.dumps({"format": "lsrl.model"}))
    _expect(tmp_path, "not valid JSON")


def _slots(d, i):
    return d["metadata"]["layout"][i]


@pytest.mark.parametrize("edit, match", [
    # the input's slots (a list), the LSTM layers ({stage, values, units, decode}), the readout's slots
    (lambda d: d["metadata"]["layout"].__setitem__(0, 7), r"layout\[0\]: expected a list of slots"),
    (lambda d: _slots(d, 0)[0].update(role=3), r"layout\[0\]\[0\]: expected a slot"),
    (lambda d: _slots(d, 0).__setitem__(0, "x"), r"layout\[0\]\[0\]: expected a slot"),
    (lambda d: _slots(d, 0)[0].update(evil=1), r"layout\[0\]\[0\]: expected a slot"),
    (lambda d: _slots(d, 0)[0].update(terms=5), r"layout\[0\]\[0\].terms: expected a list"),
    (lambda d: _slots(d, 0)[0].update(terms=[["x"]]), r"terms\[0\]: expected \[name, index, coefficient\]"),
    (lambda d: _slots(d, 0)[0].update(terms=[["x", "a", 1.0]]), r"terms\[0\]\[1\]: expected an integer"),
    (lambda d: _slots(d, 0)[0].update(terms=[["x", 0, [1]]]), r"terms\[0\]\[2\]: expected a number"),
    (lambda d: _slots(d, 0)[0].update(constant={}), r"constant: expected a number"),
    (lambda d: _slots(d, 0).append({"role": "value"}), r"layout\[0\]: 2 slots for"),
    (lambda d: _slots(d, -1)[0].update(of=0), r"layout\[3\]\[0\].of: .*nothing to refer to"),
    (lambda d: _slots(d, 1).update(evil=1), r"layout\[1\]: expected a layer"),
    (lambda d: _slots(d, 1)["units"][0].update(start="a"), r"layout\[1\].units\[0\].start: expected an integer"),
    (lambda d: _slots(d, 1)["units"][0].update(start=10**6, end=10**6), r"units\[0\].end: expected an integer in"),
    (lambda d: _slots(d, 1)["decode"].__setitem__(0, [0]), r"decode\[0\]: expected \[slot, unit, coefficient\]"),
    (lambda d: _slots(d, 1)["decode"][0].__setitem__(1, 10**6), r"decode\[0\]\[1\]: expected an integer in"),
    (lambda d: _slots(d, 1)["values"][0].update(terms=[[1, 0, 1.0]]), r"layout\[1\].values\[0\].terms\[0\]"),
])
def test_crafted_layout(saved, edit, match):
    # inspection and the plots read the layout: a malformed one is refused when the model loads, where it had
    # failed inside Model.summary() with a TypeError
    _edit_json(saved, edit)
    _expect(saved, match)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(format="something"), "not an lsrl model"),
    (lambda d: d.update(format_version=99), "unsupported version"),
    (lambda d: d.update(target="transformer"), "unknown target"),
    (lambda d: d.update(activations="gelu"), "unknown activations"),
    (lambda d: d["ops"][0].update(kind="linstate"), "not an op of target"),
    (lambda d: d["ops"][0].update(kind="__import__"), "not an op of target"),
    (lambda d: d["ops"][0].update(dim=7), "dim is 7"),
    (lambda d: d["ops"][0]["attrs"].update(evil={"type": "str", "value": "x"}), "unknown attribute"),
    (lambda d: d["ops"][0]["attrs"].pop("W_ih"), "missing attribute"),
    (lambda d: d["ops"][0]["attrs"]["W_ih"].update(shape=[3, 1]), "indptr has length"),
    (lambda d: d["ops"][0]["attrs"]["activations"].update(value=["ideal"]), "expected a string"),
    (lambda d: d["ops"][0]["attrs"]["activations"].update(value="cubic"), "activations must be one of"),
    (lambda d: d["ops"][0]["attrs"]["b_ih"].update(exact=["1/0"] * 8), "invalid exact rational"),
    (lambda d: d["ops"][0]["attrs"]["b_ih"].update(exact=["1/3"] * 8), "disagree"),
    (lambda d: d["ops"][1]["attrs"]["W_ih"].update(tensor="0.W_ih"), "used twice"),
    (lambda d: d.update(ops=[]), "non-empty list"),
    (lambda d: d["ops"].pop(), "unexpected tensor"),
])
def test_crafted_json(saved, edit, match):
    _edit_json(saved, edit)
    _expect(saved, match)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.update({"0.b_ih": np.full(8, np.nan)}), "non-finite"),
    (lambda t: t.update({"0.W_ih.data": t["0.W_ih.data"] * np.inf}), "non-finite"),
    (lambda t: t.update({"0.W_ih.indices": t["0.W_ih.indices"] + 100}), "out of range"),
    (lambda t: t.update({"0.W_ih.indptr": t["0.W_ih.indptr"][::-1].copy()}), "row pointer"),
    (lambda t: t.update({"0.b_ih": t["0.b_ih"].astype(np.float32)}), "dtype"),
    (lambda t: t.update({"0.b_ih": t["0.b_ih"][:3].copy()}), "shape"),
    (lambda t: t.pop("0.h0"), "missing"),
    (lambda t: t.update({"extra": np.zeros(2)}), "unexpected tensor"),
])
def test_crafted_tensors(saved, edit, match):
    _edit_tensors(saved, edit)
    _expect(saved, match)


def test_truncated_weights(saved):
    data = (saved / "weights.safetensors").read_bytes()
    (saved / "weights.safetensors").write_bytes(data[: len(data) // 2])
    _expect(saved, "safetensors")
