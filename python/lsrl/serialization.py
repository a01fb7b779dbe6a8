"""Saving and loading compiled models: ``weights.safetensors`` + ``model.json``; no pickle, no code.

Layout on disk (``docs/targets.md``, "Saved models"):

* ``model.json`` — ``format = "lsrl.model"``, ``format_version``, ``lsrl_version``, ``target``,
  ``activations``, the input op (``dim``, ``name``), one entry per op of the lowered chain (``kind``,
  ``name``, ``dim`` and per attribute its type, shape and tensor names; int/number/str attributes inline;
  exact rationals that are not floats as ``"p/q"`` strings) and the JSON-safe metadata (layout, stages,
  standard-mode constants).
* ``weights.safetensors`` — every matrix as CSR (``<op>.<attr>.indptr`` / ``.indices`` int64,
  ``.data`` float64) and every vector as one float64 tensor.

:func:`read_module` trusts nothing: it reads regular files only, each bounded in size
(:data:`MAX_JSON_BYTES`, :data:`MAX_WEIGHTS_BYTES`), checks the weights' SHA-256 against ``weights_sha256``,
the JSON schema (integers of at most 20 digits, rationals within the float range), every tensor's
dtype/shape/value range, that every tensor is used exactly once, that the target is registered and every op
kind is one of its kinds, that every attribute is one the op kind declares, and rebuilds the chain of ops
through the op registry and verifies it; any problem raises :class:`ModelFormatError` naming the file and the
offending entry.  :func:`lsrl.load` then builds the :class:`lsrl.Model`, whose own checks (the chain is a
model of its target, the metadata describes the ops) apply to a loaded module as to a compiled one.  :func:`save_model` writes each file to a
temporary file and renames it into place, so it never writes through a symlink planted at the destination.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import stat
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .assumptions import FLOAT64_MAX, MAX_DIMENSION, validate_t_max
from .errors import LsrlError, ModelFormatError, ModelSaveError, VerifyError

__all__ = ["save_model", "read_module", "ModelFormatError", "ModelSaveError", "FORMAT", "FORMAT_VERSION",
           "model_paths", "MAX_JSON_BYTES", "MAX_WEIGHTS_BYTES"]

FORMAT = "lsrl.model"
#: version 2 adds ``weights_sha256``; version 1 files (no hash) still load
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
#: the largest model.json / weights file :func:`read_module` reads (larger ones are rejected before reading)
MAX_JSON_BYTES = 256 << 20
MAX_WEIGHTS_BYTES = 8 << 30
_RATIONAL_RE = re.compile(r"-?[0-9]{1,4000}(/[1-9][0-9]{0,4000})?\Z")
_NAME_RE = re.compile(r"[A-Za-z0-9_.$-]{1,200}\Z")
_SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")
_MAX_INT_DIGITS = 20  # every integer of a model file (dims, indices, int attributes ≤ 2^62) fits


def model_paths(path) -> tuple[Path, Path]:
    """``(json_path, weights_path)`` for ``path``: a directory (holding ``model.json`` and
    ``weights.safetensors``), either of those two files in it, or a file named ``*.json`` / ``*.safetensors``
    whose sibling with the other suffix holds the rest."""
    p = _as_path(path)
    if p.name in (META_FILE, WEIGHTS_FILE):  # a file of a saved directory: the directory's pair
        return p.parent / META_FILE, p.parent / WEIGHTS_FILE
    if p.suffix == ".json":
        return p, p.with_suffix(".safetensors")
    if p.suffix == ".safetensors":
        return p.with_suffix(".json"), p
    return p / META_FILE, p / WEIGHTS_FILE


def _as_path(path) -> Path:
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"a model path must be a str, bytes or os.PathLike, got {type(path).__name__}")
    if not os.fsdecode(path):  # Path("") is the current folder: save("") wrote model.json there
        raise ValueError("a model path must not be empty")
    return Path(os.fsdecode(path))


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
    from safetensors.numpy import save as save_tensors

    from . import __version__
    from .ir.core import OPS
    from .ir.matrix import Matrix, Vector

    json_path, weights_path = model_paths(path)
    try:
        json_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelSaveError(f"cannot save the model to {json_path.parent}: {e.strerror or e}") from None
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
    input_entry = {"dim": inp.dim, "name": inp.name, "lower": put_vector("input.lower", inp.attrs["lower"]),
                   "upper": put_vector("input.upper", inp.attrs["upper"])}
    if inp.attrs.get("integer", 0):
        input_entry["integer"] = True
    if inp.attrs.get("grid") is not None:
        input_entry["grid"] = put_vector("input.grid", inp.attrs["grid"])
    weights = save_tensors(tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "lsrl_version": __version__,
        "target": model.target, "activations": model.activations, "name": module.name,
        "weights": weights_path.name, "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "input": input_entry,
        "ops": ops_json,
        "metadata": meta,
    }
    _replace_file(weights_path, weights)
    _replace_file(json_path, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("utf-8"))


def _replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file next to ``path`` and rename it onto ``path``: a symlink planted at ``path``
    is replaced, never followed, and a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        # O_EXCL: a fresh file (never an existing one or a symlink); mode 0o666 lets the umask decide
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        raise ModelSaveError(f"cannot write {path}: {e.strerror or e}") from None


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

    def int_(self, value, where: str, lo: int = 0, hi: int = MAX_DIMENSION) -> int:
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
        return [self.rational(v, where) for v in values]

    def rational(self, text, where: str) -> Fraction:
        if not isinstance(text, str) or not _RATIONAL_RE.match(text):
            self.fail(where, f"invalid exact rational {str(text)[:40]!r} (expected 'p' or 'p/q')")
        value = Fraction(text)
        if abs(value) > FLOAT64_MAX:  # every exact weight also has a float64 value
            self.fail(where, f"exact rational {text[:40]!r}… is beyond the float64 range")
        return value

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
            if isinstance(value, str):
                return self.rational(value, where)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return value
            self.fail(where, f"invalid number {value!r}")
        self.fail(where, f"unsupported attribute type {kind!r}")

    # -------------------------------------------------------------- the model
    def load(self):
        from safetensors import SafetensorError
        from safetensors.numpy import load as load_tensors

        from .ir.core import OPS, Module, Op
        from .targets import available_targets

        raw = _read_regular_file(self.json_path, MAX_JSON_BYTES)
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=lambda c: self.fail("json", f"constant {c}"),
                             parse_int=self.json_int)
        except ModelFormatError:
            raise
        except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
            raise ModelFormatError(f"{self.json_path}: not valid JSON: {e}") from None
        except RecursionError:
            raise ModelFormatError(f"{self.json_path}: not a model file: JSON nested too deeply") from None
        doc = self.obj(doc, "top level", {"format", "format_version", "lsrl_version", "target", "activations",
                                          "name", "input", "ops", "metadata"}, {"weights", "weights_sha256"})
        if doc["format"] != FORMAT:
            self.fail("format", f"not an lsrl model (format {str(doc['format'])[:40]!r})")
        version = doc["format_version"]
        if version not in _READABLE_VERSIONS or isinstance(version, bool):
            self.fail("format_version", f"unsupported version {str(version)[:40]!r} (this lsrl reads "
                                        f"{', '.join(map(str, _READABLE_VERSIONS))})")
        digest = doc.get("weights_sha256")
        if version >= 2 and (not isinstance(digest, str) or not _SHA256_RE.match(digest)):
            self.fail("weights_sha256", "format version 2 needs the weights' SHA-256 as 64 hex digits")
        target = self.str_(doc["target"], "target")
        architecture = available_targets().get(target)
        if architecture is None:
            self.fail("target", f"unknown target {target!r} (registered: {', '.join(available_targets())})")
        activations = self.str_(doc["activations"], "activations")
        if activations not in architecture.activations:
            self.fail("activations", f"unknown activations {activations!r}")
        name = self.str_(doc["name"], "name")
        weights = _read_regular_file(self.weights_path, MAX_WEIGHTS_BYTES)
        if digest is not None and hashlib.sha256(weights).hexdigest() != digest:
            raise ModelFormatError(f"{self.weights_path}: the weights do not match the SHA-256 recorded in "
                                   f"{self.json_path.name} (the file is corrupted or was changed)")
        try:
            self.tensors = load_tensors(weights)
        except (SafetensorError, ValueError, TypeError, MemoryError) as e:
            raise ModelFormatError(f"{self.weights_path}: not a valid safetensors file: {e}") from None

        inp = self.obj(doc["input"], "input", {"dim", "name", "lower", "upper"}, {"integer", "grid"})
        d = self.int_(inp["dim"], "input.dim", 1)
        in_name = inp["name"]
        if in_name is not None and (not isinstance(in_name, str) or not _NAME_RE.match(in_name)):
            self.fail("input.name", f"invalid name {in_name!r}")
        lower = self.vector(inp["lower"], "input.lower", allow_inf=True)
        upper = self.vector(inp["upper"], "input.upper", allow_inf=True)
        if len(lower) != d or len(upper) != d:
            self.fail("input", "bounds must have the input's dim")
        input_attrs = {"dim": d, "lower": lower, "upper": upper}
        if "integer" in inp:
            if not isinstance(inp["integer"], bool):
                self.fail("input.integer", f"expected true or false, got {inp['integer']!r}")
            if inp["integer"]:
                input_attrs["integer"] = 1
        if "grid" in inp:
            grid = self.vector(inp["grid"], "input.grid")
            if len(grid) != d:
                self.fail("input.grid", "must have the input's dim")
            input_attrs["grid"] = grid
        try:
            input_op = Op("input", (), input_attrs, name=in_name)
        except (VerifyError, ValueError) as e:
            self.fail("input", str(e).removeprefix("input: "))
        ops_doc = doc["ops"]
        if not isinstance(ops_doc, list) or not ops_doc:
            self.fail("ops", "expected a non-empty list")
        if len(ops_doc) > 100000:
            self.fail("ops", "too many ops")
        allowed = architecture.op_kinds | {"linear"}
        ops = [input_op]
        prev = input_op
        for i, entry in enumerate(ops_doc):
            where = f"ops[{i}]"
            entry = self.obj(entry, where, {"kind", "name", "dim", "attrs"})
            kind = self.str_(entry["kind"], where + ".kind")
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
        validate_t_max(meta.get("t_max"), f"{self.json_path}: metadata", ModelFormatError)
        module = Module(ops, prev, name=name, metadata=dict(meta, target=target, activations=activations))
        try:
            return module.verify()
        except LsrlError as e:
            self.fail("module", str(e))

    def json_int(self, text: str) -> int:
        if len(text.lstrip("-")) > _MAX_INT_DIGITS:
            self.fail("json", f"integer of {len(text)} digits (at most {_MAX_INT_DIGITS})")
        return int(text)


def _read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes (a device such as
    /dev/zero, a FIFO or an oversized file is rejected before anything is read; opening never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: file not found") from None
    except OSError as e:
        raise ModelFormatError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelFormatError(f"{path}: not a regular file (a model is read from regular files only)")
        if info.st_size > limit:
            raise ModelFormatError(f"{path}: {info.st_size} bytes is more than the limit of {limit} bytes")
        chunks, size = [], 0
        while True:  # read to the end, but never past the limit even if the file grows meanwhile
            chunk = os.read(fd, min(1 << 24, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ModelFormatError(f"{path}: more than the limit of {limit} bytes")
    except OSError as e:
        raise ModelFormatError(f"cannot read {path}: {e.strerror or e}") from None
    except MemoryError:
        raise ModelFormatError(f"{path}: too large to load into memory") from None
    finally:
        os.close(fd)


def read_module(path):
    """The lowered module saved at ``path`` (its ops and metadata), after checking the file format; a
    :class:`ModelFormatError` names the file and the entry that is wrong.  :func:`lsrl.load` builds the Model
    (which checks that the module is a model of its target)."""
    json_path, weights_path = model_paths(path)
    if _as_path(path).suffix not in (".json", ".safetensors") and not _as_path(path).is_dir():
        raise ModelFormatError(f"{path}: no saved model here (expected a directory with {META_FILE} and "
                               f"{WEIGHTS_FILE}, or a .json/.safetensors file)")
    return _Loader(json_path, weights_path).load()
