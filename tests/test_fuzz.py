"""Fuzzing the user-facing entry points with malformed input (issue 13): mutated IR text through
``lsrl.ir.parse`` and the ``lsrl-opt`` command line, corrupted model files through ``lsrl.load`` under a
memory limit.  Only the documented errors may come out — ``ParseError``, an exit status 1 without a traceback,
``ModelFormatError`` — and nothing may hang.

The default run is sized for CI (2,000 parser mutants, 200 in-process and 10 subprocess ``lsrl-opt`` runs,
600 model files; about 20 s); ``-m slow`` runs the long version (10×, and 200 ``lsrl-opt`` subprocesses).
"""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest

import lsrl
from lsrl import opt
from lsrl.ir import parse
from lsrl.programs import continuous_approximator, more_ones, token_map

# tokens a mutation inserts: numbers at and beyond every limit, structure, names, invalid bytes
NASTY = ["nan", "inf", "-inf", "1e999", "9" * 5000, "9" * 400, "1/0", "0/0", "99999999999999999999",
         "1000000000000", "1048577", "-1", "0", "identity<1000000000000>", "zeros<1048576x1048576>",
         "diag<[inf]>", "sparse<3>{5: 1}", "{", "}", "[", "]", "[[", "<", ">", ",", ":", "->", "%x", "%999",
         "return", "lsrl.module", "@", '"', "\\", "//", "\n", "\x00", "é", "\U0001F600", "exact", "float",
         "diag<" * 200, "[" * 500]
NASTY_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]


def random_program(rng: np.random.Generator) -> lsrl.ForEach:
    """A random program of every op kind (small, so that mutants parse fast)."""
    d = int(rng.integers(1, 4))
    values = [lsrl.Input(d, lower=float(rng.choice([-1, 0])), upper=float(rng.choice([1, 2, np.inf])))]
    for _ in range(int(rng.integers(2, 9))):
        x = values[int(rng.integers(len(values)))]
        kind = rng.choice(["linear", "relu", "linstate", "concat", "multi", "slice"])
        if kind == "linear":
            m = int(rng.integers(1, 4))
            values.append(lsrl.Linear(x, rng.integers(-3, 4, (m, x.dim)) / rng.choice([1, 2, 3]),
                                      rng.normal(size=m).round(3)))
        elif kind == "relu":
            values.append(lsrl.ReLU(x))
        elif kind == "linstate":
            values.append(lsrl.LinState(x, A=np.diag(rng.choice([0.5, 1.0], x.dim)), B=np.eye(x.dim),
                                        init_state=rng.integers(0, 2, x.dim)))
        elif kind == "concat":
            values.append(lsrl.Concat([x, values[int(rng.integers(len(values)))]]))
        elif kind == "multi" and x.dim % 2 == 0:
            values.append(lsrl.Multi(x))
        elif kind == "slice" and x.dim > 1:
            values.append(x[: x.dim - 1])
    return lsrl.ForEach(values[-1])


def corpus() -> list[str]:
    """Printed IR: the paper's programs, their lowered models and random programs."""
    texts = [str(more_ones().ir), str(token_map(2, vocab_size=4).ir),
             str(continuous_approximator(1, 1).ir),
             str(lsrl.compile(more_ones(), "lstm", t_max=8).module),
             str(lsrl.compile(more_ones(), "gru", exact=True, t_max=8).module),
             str(lsrl.compile(more_ones(), "linear_rnn").module)]
    rng = np.random.default_rng(13)
    texts += [str(random_program(rng).ir) for _ in range(12)]
    return texts


def mutate(text: str, rng: np.random.Generator) -> bytes:
    """One to three random edits of ``text``: byte flips, deletions, duplications, insertions of nasty tokens
    or bytes, number replacements, truncation, swapped lines."""
    data = bytearray(text.encode("utf-8"))
    for _ in range(int(rng.integers(1, 4))):
        n = max(len(data), 1)
        i, j = sorted(int(v) for v in rng.integers(0, n, 2))
        kind = int(rng.integers(8))
        if kind == 0 and data:
            data[i % len(data)] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            del data[i:min(j, i + 40)]
        elif kind == 2:
            data[i:i] = data[i:min(j, i + 80)]
        elif kind == 3:
            data[i:i] = str(rng.choice(NASTY)).encode("utf-8")
        elif kind == 4:
            data[i:i] = NASTY_BYTES[int(rng.integers(len(NASTY_BYTES)))]
        elif kind == 5:  # replace the number at i by a nasty one
            k = i
            while k < len(data) and not chr(data[k]).isdigit():
                k += 1
            end = k
            while end < len(data) and (chr(data[end]).isdigit() or data[end] in b"./e-"):
                end += 1
            data[k:end] = str(rng.choice(NASTY[:14])).encode("utf-8")
        elif kind == 6:
            del data[i:]
        else:
            lines = bytes(data).split(b"\n")
            a, b = (int(v) for v in rng.integers(0, len(lines), 2))
            lines[a], lines[b] = lines[b], lines[a]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def fuzz_parser(count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    texts = corpus()
    stats = {"parsed": 0, "ParseError": 0}
    slowest = 0.0
    for index in range(count):
        mutant = mutate(texts[index % len(texts)], rng)
        t0 = time.perf_counter()
        try:
            parse(mutant, filename="mutant.lsrl")
            stats["parsed"] += 1
        except lsrl.ParseError as e:
            assert str(e).startswith("mutant.lsrl:"), str(e)[:300]
            stats["ParseError"] += 1
        except Exception as e:  # noqa: BLE001 - the point of the test: nothing else may escape
            pytest.fail(f"parse raised {type(e).__name__}: {e}\non mutant {mutant[:2000]!r}")
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 5, f"a mutant took {slowest:.1f} s to parse"
    return stats


def test_parser_fuzz():
    stats = fuzz_parser(2000, seed=0)
    assert stats["ParseError"] > 1000 and stats["parsed"] > 20, stats


@pytest.mark.slow
def test_parser_fuzz_long():
    fuzz_parser(20000, seed=1)


# ------------------------------------------------------------------------------------------ lsrl-opt

PIPELINE_PASSES = ["canonicalize", "cse", "dce", "constant-fold", "fuse-linears", "range-analysis",
                   "canonicalize{use_ranges=true,t_max=4}", "range-analysis{t_max=3}"]


def _pipeline(rng) -> list[str]:
    return [str(p) for p in rng.choice(PIPELINE_PASSES, int(rng.integers(0, 4)))]


def fuzz_cli_in_process(count: int, seed: int, tmp_path) -> dict:
    """``lsrl.opt.main`` on mutant files: it must return 0 or 1, never raise (a raise is a traceback)."""
    rng = np.random.default_rng(seed)
    texts = corpus()
    codes = {0: 0, 1: 0}
    for index in range(count):
        path = tmp_path / f"m{index}.lsrl"
        path.write_bytes(mutate(texts[index % len(texts)], rng))
        args = [str(path), "-p", ",".join(_pipeline(rng))] + (["--check"] if index % 5 == 0 else [])
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = opt.main(args)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"lsrl-opt raised {type(e).__name__}: {e} on {path.read_bytes()[:2000]!r}")
        assert code in codes and "Traceback" not in err.getvalue(), err.getvalue()
        codes[code] += 1
    return codes


def fuzz_cli_subprocess(count: int, seed: int, tmp_path) -> None:
    rng = np.random.default_rng(seed)
    texts = corpus()
    for index in range(count):
        path = tmp_path / f"s{index}.lsrl"
        path.write_bytes(mutate(texts[index % len(texts)], rng))
        res = subprocess.run([sys.executable, "-m", "lsrl.opt", str(path), "-p", ",".join(_pipeline(rng))],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stderr[-2000:]


def test_lsrl_opt_fuzz(tmp_path):
    codes = fuzz_cli_in_process(200, seed=2, tmp_path=tmp_path)
    assert codes[1] > 100, codes
    fuzz_cli_subprocess(10, seed=3, tmp_path=tmp_path)


@pytest.mark.slow
def test_lsrl_opt_fuzz_long(tmp_path):
    fuzz_cli_in_process(2000, seed=4, tmp_path=tmp_path)
    fuzz_cli_subprocess(200, seed=5, tmp_path=tmp_path)


# ------------------------------------------------------------------------------------------ model files

# Runs in a child whose address space is limited to 512 MiB above what it starts with: it corrupts copies of
# saved models in every way listed in ``CORRUPTIONS`` and loads each; it prints the outcome counts as JSON and
# exits 1 (with the file and the exception) on anything but ModelFormatError or a successful load.
_CHILD = r"""
import json, os, resource, shutil, sys, time, traceback
import numpy as np
import lsrl
from lsrl.errors import ModelFormatError

vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), vm + (512 << 20)))
bases, work, count, seed = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(seed)
NASTY = [None, True, -1, 0, 2**62, 10**19, 1.5, float(1e308), "x", "9" * 4000, "1/0", "-" + "9" * 3999 + "/1",
         [], {}, [[[[]]]], {"type": "matrix"}, [1] * 1000, "../../etc/passwd", "0.W_ih"]

def json_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:50]):
            yield from json_paths(v, prefix + (i,))

def edit_json(doc):
    paths = [p for p in json_paths(doc) if p]
    path = paths[int(rng.integers(len(paths)))]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    choice = int(rng.integers(4))
    if choice == 0:
        parent[path[-1]] = NASTY[int(rng.integers(len(NASTY)))]
    elif choice == 1 and isinstance(parent, dict):
        del parent[path[-1]]
    elif choice == 2:
        v = parent[path[-1]]
        parent[path[-1]] = -v if isinstance(v, int) and not isinstance(v, bool) else [v]
    else:
        parent[path[-1]] = {"nested": parent[path[-1]]}
    return doc

def corrupt(d, kind):
    j, w = os.path.join(d, "model.json"), os.path.join(d, "weights.safetensors")
    target = j if rng.random() < 0.5 else w
    data = open(target, "rb").read()
    if kind == "truncate":
        open(target, "wb").write(data[: int(rng.integers(len(data)))])
    elif kind == "flip":
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        open(target, "wb").write(bytes(b))
    elif kind in ("json", "json_rehash"):
        doc = edit_json(json.load(open(j)))
        if kind == "json_rehash" and isinstance(doc, dict):
            import hashlib
            doc["weights_sha256"] = hashlib.sha256(open(w, "rb").read()).hexdigest()
        open(j, "w").write(json.dumps(doc))
    elif kind == "dims":
        text = open(j).read()
        for key in ('"dim": ', '"length": ', '"shape": ['):
            text = text.replace(key, key + rng.choice(["-", "99999999999", "1048577", "0"]), 1)
        open(j, "w").write(text)
    elif kind == "nesting":
        depth = int(rng.integers(1000, 200000))
        open(j, "w").write("[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "0" + "}" * depth)
    elif kind == "bigint":
        open(j, "w").write(open(j).read().replace('"dim": ', '"dim": ' + "7" * int(rng.integers(21, 6000)), 1))
    elif kind == "symlink":
        os.unlink(target)
        os.symlink(rng.choice(["/dev/zero", "/dev/urandom", "/nonexistent", d, "/proc/self/mem"]), target)
    elif kind == "fifo":
        os.unlink(target)
        os.mkfifo(target)
    elif kind == "directory":
        os.unlink(target)
        os.mkdir(target)
    elif kind == "sparse":
        with open(target, "wb") as f:
            f.truncate(int(rng.choice([300 << 20, 8 << 30, 9 << 30])))
    elif kind == "swap":
        os.replace(j, os.path.join(d, "tmp"))
        os.replace(w, j)
        os.replace(os.path.join(d, "tmp"), w)

KINDS = ["truncate", "flip", "json", "json_rehash", "json_rehash", "dims", "nesting", "bigint", "symlink",
         "fifo", "directory", "sparse", "swap"]
stats = {"loaded": 0, "ModelFormatError": 0}
slowest = 0.0
for i in range(count):
    d = os.path.join(work, str(i))
    shutil.copytree(bases[i % len(bases)], d)
    kind = KINDS[i % len(KINDS)]
    corrupt(d, kind)
    t0 = time.perf_counter()
    try:
        lsrl.load(d)
        stats["loaded"] += 1
    except ModelFormatError:
        stats["ModelFormatError"] += 1
    except BaseException as e:
        print(json.dumps({"failure": kind, "path": d, "error": traceback.format_exc()}))
        sys.exit(1)
    slowest = max(slowest, time.perf_counter() - t0)
    shutil.rmtree(d)
stats["slowest_s"] = slowest
print(json.dumps(stats))
"""


def fuzz_model_files(count: int, seed: int, tmp_path) -> dict:
    bases = []
    for target, activations, exact in (("lstm", "ideal", False), ("gru", "standard", False),
                                       ("linear_rnn", "ideal", False), ("relu_rnn", "ideal", True)):
        path = tmp_path / f"base_{target}"
        lsrl.compile(more_ones(), target, activations=activations, exact=exact, t_max=16).save(path)
        bases.append(str(path))
    work = tmp_path / "work"
    work.mkdir()
    res = subprocess.run([sys.executable, "-c", _CHILD, ",".join(bases), str(work), str(count), str(seed)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-4000:])
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert stats["slowest_s"] < 5, stats
    return stats


def test_model_file_fuzz(tmp_path):
    stats = fuzz_model_files(600, seed=6, tmp_path=tmp_path)
    assert stats["ModelFormatError"] > 450, stats


@pytest.mark.slow
def test_model_file_fuzz_long(tmp_path):
    fuzz_model_files(6000, seed=7, tmp_path=tmp_path)
