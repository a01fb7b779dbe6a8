"""Saving and loading compiled models: ``weights.safetensors`` + ``model.json``; no pickle, no code.

Layout on disk (``docs/targets.md``, "Saved models"):

* ``model.json`` — ``format = "lsrl.model"``, ``format_version``, ``lsrl_version``, ``target``,
  ``activations``, the input op (``dim``, ``name``), one entry per op of the lowered chain (``kind``,
  ``name``, ``dim`` and per attribute its type, shape and tensor names; int/number/str attributes inline;
  exact rationals that are not floats as ``"p/q"`` strings) and the JSON-safe metadata (layout, stages,
  standard-mode constants).
* ``weights.safetensors`` — every matrix as CSR (``<op>.<attr>.indptr`` / ``.indices`` int64,
  ``.data`` float64) and every vector as one float64 tensor.

:func:`load_model` trusts nothing: it checks the JSON schema, every tensor's dtype/shape/value range,
that every tensor is used exactly once, that every attribute is one the op kind declares, rebuilds the ops
through the op registry and verifies the module and the chain structure; any problem raises
:class:`ModelFormatError` naming the file and the offending entry.
"""
from __future__ import annotations

import json
import math
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import LsrlError, VerifyError

__all__ = ["save_model", "load_model", "ModelFormatError", "FORMAT", "FORMAT_VERSION", "model_paths"]

FORMAT = "lsrl.model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
_RATIONAL_RE = re.compile(r"-?[0-9]{1,4000}(/[1-9][0-9]{0,4000})?\Z")
_NAME_RE = re.compile(r"[A-Za-z0-9_.$-]{1,200}\Z")
_MAX_DIM = 1 << 31


class ModelFormatError(LsrlError, ValueError):
    """A saved model is malformed, inconsistent or not an lsrl model."""


def model_paths(path) -> tuple[Path, Path]:
    """``(json_path, weights_path)`` for ``path``: a directory (holding ``model.json`` and
    ``weights.safetensors``), or a file named ``*.json`` / ``*.safetensors`` whose sibling with the other
    suffix holds the rest."""
    p = Path(os.fspath(path))
    if p.suffix == ".json":
        return p, p.with_suffix(".safetensors")
    if p.suffix == ".safetensors":
        return p.with_suffix(".json"), p
    return p / META_FILE, p / WEIGHTS_FILE


# ------------------------------------------------------------------------------------------ saving

def _json_safe(value, depth: int = 0):
    """A copy of metadata restricted to JSON data (dicts with str keys, lists, str, finite numbers, bool,
    None); exact rationals become ``"p/q"`` strings; anything else is dropped (returned as ``_DROP``)."""
    if depth > 64:
        return _DROP
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else str(value)
    if isinstance(value, (list, tuple)):
        out = [_json_safe(v, depth + 1) for v in value]
        return [v for v in out if v is not _DROP]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                v2 = _json_safe(v, depth + 1)
                if v2 is not _DROP:
                    out[k] = v2
        return out
    return _DROP


_DROP = object()


def save_model(model, path) -> None:
    from safetensors.numpy import save_file

    from . import __version__
    from .ir.core import OPS
    from .ir.matrix import Matrix, Vector

    json_path, weights_path = model_paths(path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    module = model.module
    inp = module.input

    def put_vector(key: str, v: Vector) -> dict:
        tensors[key] = np.ascontiguousarray(v.to_float().values, dtype=np.float64)
        entry = {"type": "vector", "length": len(v), "tensor": key}
        if v.exact:
            entry["exact"] = [str(x) for x in v.values.tolist()]
        return entry

    def put_matrix(key: str, m: Matrix) -> dict:
        csr = m.scipy()
        tensors[key + ".indptr"] = np.ascontiguousarray(csr.indptr, dtype=np.int64)
        tensors[key + ".indices"] = np.ascontiguousarray(csr.indices, dtype=np.int64)
        tensors[key + ".data"] = np.ascontiguousarray(csr.data, dtype=np.float64)
        entry = {"type": "matrix", "shape": [m.shape[0], m.shape[1]], "tensor": key}
        if m.exact:
            rows, cols, vals = m.coo()
            # CSR of the rounded matrix may drop entries that round to 0 (they cannot: exact entries are
            # non-zero rationals of float range); store the exact values in CSR order
            entry["exact"] = [str(v) for v in vals]
            entry["exact_indptr"] = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=m.shape[0]))]
                                                   ).astype(int).tolist()
            entry["exact_indices"] = [int(c) for c in cols.tolist()]
        return entry

    ops_json = []
    for i, op in enumerate(model._ops):
        attrs_json = {}
        for name, value in op.attrs.items():
            key = f"{i}.{name}"
            if isinstance(value, Matrix):
                attrs_json[name] = put_matrix(key, value)
            elif isinstance(value, Vector):
                attrs_json[name] = put_vector(key, value)
            elif isinstance(value, str):
                attrs_json[name] = {"type": "str", "value": value}
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                attrs_json[name] = {"type": "int", "value": int(value)}
            elif isinstance(value, (float, Fraction)):
                attrs_json[name] = {"type": "number", "value": _json_safe(value)}
            else:
                raise ModelFormatError(f"cannot save attribute {name!r} of {op.describe()}: unsupported value "
                                       f"of type {type(value).__name__}")
        if op.kind not in OPS:
            raise ModelFormatError(f"cannot save {op.describe()}: unknown op kind")
        ops_json.append({"kind": op.kind, "name": op.name, "dim": op.dim, "attrs": attrs_json})
    meta = _json_safe({k: v for k, v in module.metadata.items() if k not in ("target", "activations")})
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lsrl_version": __version__,
        "target": model.target, "activations": model.activations, "name": module.name,
        "weights": weights_path.name,
        "input": {"dim": inp.dim, "name": inp.name,
                  "lower": put_vector("input.lower", inp.attrs["lower"]),
                  "upper": put_vector("input.upper", inp.attrs["upper"])},
        "ops": ops_json,
        "metadata": meta,
    }
    save_file(tensors, str(weights_path), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")


# ------------------------------------------------------------------------------------------ loading

class _Loader:
    def __init__(self, json_path: Path, weights_path: Path):
        self.json_path, self.weights_path = json_path, weights_path
        self.used: set[str] = set()
        self.tensors: dict[str, np.ndarray] = {}

    def fail(self, where: str, message: str):
        raise ModelFormatError(f"{self.json_path}: {where}: {message}")

    # -------------------------------------------------------------- primitive checks
    def obj(self, value, where: str, keys_required: set, keys_optional: set = frozenset()) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {type(value).__name__}")
        missing = keys_required - set(value)
        if missing:
            self.fail(where, f"missing key(s) {sorted(missing)}")
        unknown = set(value) - keys_required - set(keys_optional)
        if unknown:
            self.fail(where, f"unknown key(s) {sorted(unknown)}")
        return value

    def int_(self, value, where: str, lo: int = 0, hi: int = _MAX_DIM) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            self.fail(where, f"expected an integer in [{lo}, {hi}], got {value!r}")
        return value

    def str_(self, value, where: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {type(value).__name__}")
        return value

    def tensor(self, key, where: str, dtype, ndim: int = 1) -> np.ndarray:
        if not isinstance(key, str):
            self.fail(where, f"tensor name must be a string, got {key!r}")
        if key in self.used:
            self.fail(where, f"tensor {key!r} is used twice")
        arr = self.tensors.get(key)
        if arr is None:
            self.fail(where, f"tensor {key!r} is missing from {self.weights_path.name}")
        if arr.dtype != np.dtype(dtype):
            self.fail(where, f"tensor {key!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        if arr.ndim != ndim:
            self.fail(where, f"tensor {key!r} has shape {arr.shape}, expected {ndim} dimension(s)")
        self.used.add(key)
        return arr

    def rationals(self, values, where: str, count: int) -> list[Fraction]:
        if not isinstance(values, list) or len(values) != count:
            self.fail(where, f"'exact' must be a list of {count} rationals")
        out = []
        for v in values:
            if not isinstance(v, str) or not _RATIONAL_RE.match(v):
                self.fail(where, f"invalid exact rational {v!r} (expected 'p' or 'p/q')")
            out.append(Fraction(v))
        return out

    # -------------------------------------------------------------- attribute values
    def vector(self, entry, where: str, *, allow_inf: bool = False):
        from .ir.matrix import Vector
        entry = self.obj(entry, where, {"type", "length", "tensor"}, {"exact"})
        if entry["type"] != "vector":
            self.fail(where, f"expected type 'vector', got {entry['type']!r}")
        n = self.int_(entry["length"], where + ".length")
        arr = self.tensor(entry["tensor"], where, np.float64)
        if arr.shape != (n,):
            self.fail(where, f"tensor has shape {arr.shape}, expected ({n},)")
        if np.any(np.isnan(arr)) or (not allow_inf and not np.all(np.isfinite(arr))):
            self.fail(where, "vector has non-finite values")
        if "exact" in entry:
            exact = self.rationals(entry["exact"], where + ".exact", n)
            if any(float(e) != float(a) for e, a in zip(exact, arr.tolist())):
                self.fail(where, "exact values disagree with the stored floats")
            return Vector(exact, exact=True)
        return Vector(np.array(arr, dtype=np.float64))

    def matrix(self, entry, where: str):
        from .ir.matrix import Matrix
        entry = self.obj(entry, where, {"type", "shape", "tensor"}, {"exact", "exact_indptr", "exact_indices"})
        if entry["type"] != "matrix":
            self.fail(where, f"expected type 'matrix', got {entry['type']!r}")
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) != 2:
            self.fail(where, f"shape must be [rows, cols], got {shape!r}")
        m, n = (self.int_(s, where + ".shape") for s in shape)
        key = entry["tensor"]
        if not isinstance(key, str):
            self.fail(where, "tensor must be a string")
        indptr = self.tensor(key + ".indptr", where, np.int64)
        indices = self.tensor(key + ".indices", where, np.int64)
        data = self.tensor(key + ".data", where, np.float64)
        if indptr.shape != (m + 1,):
            self.fail(where, f"indptr has length {indptr.shape[0]}, expected {m + 1}")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.shape[0]:
            self.fail(where, "indptr is not a valid CSR row pointer")
        if indices.shape != data.shape:
            self.fail(where, "indices and data differ in length")
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            self.fail(where, f"column index out of range for {n} columns")
        if not np.all(np.isfinite(data)):
            self.fail(where, "matrix has non-finite values")
        csr = sp.csr_array((data.copy(), indices.copy(), indptr.copy()), shape=(m, n))
        if "exact" in entry:
            ex_indptr, ex_indices = entry.get("exact_indptr"), entry.get("exact_indices")
            if not (isinstance(ex_indptr, list) and isinstance(ex_indices, list)):
                self.fail(where, "exact matrices need exact_indptr and exact_indices")
            if len(ex_indptr) != m + 1 or any(not isinstance(v, int) or isinstance(v, bool) for v in ex_indptr) \
                    or ex_indptr[0] != 0 or any(b < a for a, b in zip(ex_indptr, ex_indptr[1:])) \
                    or ex_indptr[-1] != len(ex_indices):
                self.fail(where, "exact_indptr is not a valid CSR row pointer")
            if any(not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < n for c in ex_indices):
                self.fail(where, "exact_indices out of range")
            vals = self.rationals(entry["exact"], where + ".exact", len(ex_indices))
            rows = [dict() for _ in range(m)]
            for i in range(m):
                for k in range(ex_indptr[i], ex_indptr[i + 1]):
                    if ex_indices[k] in rows[i]:
                        self.fail(where, "duplicate exact entry")
                    rows[i][ex_indices[k]] = vals[k]
            exact = Matrix.from_exact_rows((m, n), rows)
            if not (exact.to_float().scipy() != Matrix.from_scipy(csr).scipy()).nnz == 0:
                self.fail(where, "exact values disagree with the stored floats")
            return exact
        return Matrix.from_scipy(csr)

    def attr(self, entry, spec, where: str, *, allow_inf: bool = False):
        if not isinstance(entry, dict) or "type" not in entry:
            self.fail(where, "attribute must be an object with a 'type'")
        kind = entry["type"]
        if kind != spec.kind:
            self.fail(where, f"attribute must be a {spec.kind}, got {kind!r}")
        if kind == "matrix":
            return self.matrix(entry, where)
        if kind == "vector":
            return self.vector(entry, where, allow_inf=allow_inf)
        entry = self.obj(entry, where, {"type", "value"})
        value = entry["value"]
        if kind == "str":
            return self.str_(value, where)
        if kind == "int":
            return self.int_(value, where, -(1 << 62), 1 << 62)
        if kind == "number":
            if isinstance(value, str) and _RATIONAL_RE.match(value):
                return Fraction(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return value
            self.fail(where, f"invalid number {value!r}")
        self.fail(where, f"unsupported attribute type {kind!r}")

    # -------------------------------------------------------------- the model
    def load(self):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from .ir.core import OPS, Module, Op
        from .model import _TARGET_OPS, Model

        try:
            with open(self.json_path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ModelFormatError(f"cannot read {self.json_path}: {e}") from None
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=lambda c: self.fail("json", f"constant {c}"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFormatError(f"{self.json_path}: not valid JSON: {e}") from None
        doc = self.obj(doc, "top level", {"format", "format_version", "lsrl_version", "target", "activations",
                                          "name", "input", "ops", "metadata"}, {"weights"})
        if doc["format"] != FORMAT:
            self.fail("format", f"not an lsrl model (format {doc['format']!r})")
        if doc["format_version"] != FORMAT_VERSION:
            self.fail("format_version", f"unsupported version {doc['format_version']!r} (this lsrl reads "
                                        f"{FORMAT_VERSION})")
        target = doc["target"]
        if target not in _TARGET_OPS:
            self.fail("target", f"unknown target {target!r}")
        activations = doc["activations"]
        if activations not in ("ideal", "standard"):
            self.fail("activations", f"unknown activations {activations!r}")
        name = self.str_(doc["name"], "name")
        try:
            self.tensors = load_file(str(self.weights_path))
        except FileNotFoundError:
            raise ModelFormatError(f"weights file {self.weights_path} not found") from None
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelFormatError(f"{self.weights_path}: not a valid safetensors file: {e}") from None

        inp = self.obj(doc["input"], "input", {"dim", "name", "lower", "upper"})
        d = self.int_(inp["dim"], "input.dim", 1)
        in_name = inp["name"]
        if in_name is not None and (not isinstance(in_name, str) or not _NAME_RE.match(in_name)):
            self.fail("input.name", f"invalid name {in_name!r}")
        lower = self.vector(inp["lower"], "input.lower", allow_inf=True)
        upper = self.vector(inp["upper"], "input.upper", allow_inf=True)
        if len(lower) != d or len(upper) != d:
            self.fail("input", "bounds must have the input's dim")
        input_op = Op("input", (), {"dim": d, "lower": lower, "upper": upper}, name=in_name)
        ops_doc = doc["ops"]
        if not isinstance(ops_doc, list) or not ops_doc:
            self.fail("ops", "expected a non-empty list")
        if len(ops_doc) > 100000:
            self.fail("ops", "too many ops")
        allowed = _TARGET_OPS[target] | {"linear"}
        ops = [input_op]
        prev = input_op
        for i, entry in enumerate(ops_doc):
            where = f"ops[{i}]"
            entry = self.obj(entry, where, {"kind", "name", "dim", "attrs"})
            kind = entry["kind"]
            if kind not in allowed or kind not in OPS:
                self.fail(where, f"op kind {kind!r} is not an op of target {target!r}")
            opname = entry["name"]
            if opname is not None and (not isinstance(opname, str) or not _NAME_RE.match(opname)):
                self.fail(where, f"invalid op name {opname!r}")
            dim = self.int_(entry["dim"], where + ".dim", 1)
            opdef = OPS[kind]
            attrs_doc = entry["attrs"]
            if not isinstance(attrs_doc, dict):
                self.fail(where, "attrs must be an object")
            unknown = set(attrs_doc) - set(opdef.attrs)
            if unknown:
                self.fail(where, f"unknown attribute(s) {sorted(unknown)} for op kind {kind!r}")
            attrs = {}
            for key, spec in opdef.attrs.items():
                if key not in attrs_doc:
                    if spec.required:
                        self.fail(where, f"missing attribute {key!r}")
                    continue
                attrs[key] = self.attr(attrs_doc[key], spec, f"{where}.attrs.{key}")
            try:
                op = Op(kind, [prev], attrs, name=opname)
            except (VerifyError, KeyError, TypeError, ValueError) as e:
                self.fail(where, f"invalid {kind} op: {e}")
            if op.dim != dim:
                self.fail(where, f"dim is {dim} but the weights give {op.dim}")
            ops.append(op)
            prev = op
        extra = set(self.tensors) - self.used
        if extra:
            self.fail("weights", f"unexpected tensor(s) {sorted(extra)[:5]}")
        meta = doc["metadata"]
        if not isinstance(meta, dict):
            self.fail("metadata", "expected an object")
        module = Module(ops, prev, name=name, metadata=dict(meta, target=target, activations=activations))
        try:
            module.verify()
            return Model(module)
        except LsrlError as e:
            self.fail("model", str(e))


def load_model(path):
    json_path, weights_path = model_paths(path)
    if Path(os.fspath(path)).suffix not in (".json", ".safetensors") and not Path(os.fspath(path)).is_dir():
        raise ModelFormatError(f"{path}: no saved model here (expected a directory with {META_FILE} and "
                               f"{WEIGHTS_FILE}, or a .json/.safetensors file)")
    return _Loader(json_path, weights_path).load()
