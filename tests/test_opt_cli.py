"""The ``lsrl-opt`` command line (``python -m lsrl.opt``), run as a subprocess: exit codes, messages
without tracebacks, output files, --list-passes, --time-passes, --print-ir-after-change."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lsrl

ROOT = Path(__file__).resolve().parent.parent

MODULE = """\
lsrl.module @m(%x: 1 in [0.0, 1.0]) -> 1 {
  %a = linear %x {A = [[2.0]], b = [1.0]} : 1 -> 1
  %b = linear %a {A = [[3.0]]} : 1 -> 1
  %r1 = relu %b : 1 -> 1
  %r2 = relu %r1 : 1 -> 1
  return %r2 : 1
}
"""


def lsrl_opt(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    package_parent = str(Path(lsrl.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                            if p])
    return subprocess.run([sys.executable, "-m", "lsrl.opt", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


@pytest.fixture
def module_file(tmp_path) -> Path:
    path = tmp_path / "m.mlir"
    path.write_text(MODULE)
    return path


def test_runs_pipeline_from_file_and_stdin(module_file):
    res = lsrl_opt(str(module_file), "-p", "canonicalize")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.startswith("lsrl.module @m(")
    assert "%b = linear %x {A = [[6.0]], b = [3.0]} : 1 -> 1" in res.stdout
    assert res.stdout.count("relu") == 1
    from_stdin = lsrl_opt("-p", "canonicalize", stdin=MODULE)
    assert from_stdin.returncode == 0 and from_stdin.stdout == res.stdout
    dash = lsrl_opt("-", "--pass-pipeline", "canonicalize", stdin=MODULE)
    assert dash.returncode == 0 and dash.stdout == res.stdout


def test_output_file_and_round_trip(module_file, tmp_path):
    out = tmp_path / "out.mlir"
    res = lsrl_opt(str(module_file), "-p", "canonicalize,cse,dce", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    first = out.read_text()
    again = lsrl_opt(str(out), "-p", "")  # an empty pipeline only parses and prints
    assert again.returncode == 0 and again.stdout == first


def test_repeated_pipelines_run_in_order(module_file):
    # only the last -p ran, silently
    both = lsrl_opt(str(module_file), "-p", "canonicalize", "-p", "cse,dce")
    assert both.returncode == 0, both.stderr
    assert both.stdout == lsrl_opt(str(module_file), "-p", "canonicalize,cse,dce").stdout
    assert both.stdout != lsrl_opt(str(module_file), "-p", "cse,dce").stdout


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path):
    # editors on Windows write one; it was "expected 'lsrl.module', found '\ufeff'"
    marked = tmp_path / "bom.mlir"
    marked.write_bytes(b"\xef\xbb\xbf" + MODULE.encode("utf-8"))
    res = lsrl_opt(str(marked))
    assert res.returncode == 0, res.stderr
    assert res.stdout == MODULE
    assert lsrl.ForEach.load(marked).ir.name == "m"


def test_a_program_file_that_cannot_be_read_is_named(tmp_path):
    # ForEach.load leaked FileNotFoundError, IsADirectoryError and UnicodeDecodeError
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"lsrl\xff\xfe")
    for path, message in ((tmp_path / "nope.lsrl", "cannot read .*nope.lsrl: No such file"),
                          (tmp_path, "cannot read .*: Is a directory"),
                          (binary, r"weights.bin:1:5: error: the text is not UTF-8 \(byte 0xff at offset 4\)")):
        with pytest.raises(lsrl.ParseError, match=message):
            lsrl.ForEach.load(path)


def test_no_pipeline_prints_the_module_unchanged(module_file):
    res = lsrl_opt(str(module_file))
    assert res.returncode == 0
    assert res.stdout == MODULE


@pytest.mark.parametrize("args, stdin, fragment", [
    (["-p", "canonicalize"], "lsrl.module @m(%x: 1) -> 1 {\n  %r = relu %y : 1 -> 1\n  return %r : 1\n}\n",
     "<stdin>:2:13: error: use of undefined value %y"),
    (["-p", "canonicalize,bogus"], MODULE, "pipeline:1:14: error: unknown pass 'bogus'; known passes:"),
    (["-p", "dce{coordinates=maybe}"], MODULE, "expected a boolean"),
    (["-p", "cse{"], MODULE, "pipeline:1:5: error:"),
])
def test_user_errors_exit_1_without_traceback(args, stdin, fragment):
    res = lsrl_opt(*args, stdin=stdin)
    assert res.returncode == 1
    assert fragment in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


def test_parse_error_shows_file_line_col_and_caret(tmp_path):
    path = tmp_path / "bad.mlir"
    path.write_text("lsrl.module @m(%x: 1) -> 1 {\n  %r = relu %x : 2 -> 2\n  return %r : 1\n}\n")
    res = lsrl_opt(str(path), "-p", "cse")
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"{path}:2:") and ": error:" in lines[0]
    assert lines[1] == "  %r = relu %x : 2 -> 2"
    assert lines[2].strip() == "^"
    assert "Traceback" not in res.stderr


def test_missing_file_is_a_user_error(tmp_path):
    res = lsrl_opt(str(tmp_path / "nope.mlir"), "-p", "cse")
    assert res.returncode == 1
    assert "cannot read" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["--bogus-flag"], ["-p"], ["a.mlir", "b.mlir"]])
def test_usage_errors_exit_2(args):
    res = lsrl_opt(*args, stdin="")
    assert res.returncode == 2
    assert "usage: lsrl-opt" in res.stderr


def test_list_passes():
    res = lsrl_opt("--list-passes")
    assert res.returncode == 0
    for name in ("canonicalize", "constant-fold", "cse", "dce", "fuse-linears", "range-analysis"):
        assert f"\n  {name} " in res.stdout
    assert "use_ranges: bool = false" in res.stdout


def test_time_passes_and_print_ir_after_change(module_file):
    res = lsrl_opt(str(module_file), "-p", "cse,canonicalize,dce", "--time-passes", "--print-ir-after-change")
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert err.count("// -----// IR Dump After") == 1
    assert "// -----// IR Dump After canonicalize //----- //" in err
    assert "Execution time report" in err
    for name in ("cse", "canonicalize", "dce", "Total"):
        assert f"  {name}\n" in err
    assert "IR Dump" not in res.stdout and "Execution time" not in res.stdout


def test_print_ir_after_all(module_file):
    res = lsrl_opt(str(module_file), "-p", "cse,dce", "--print-ir-after-all")
    assert res.returncode == 0
    assert "IR Dump After cse //" in res.stderr and "IR Dump After dce //" in res.stderr


def test_check_and_no_verify_flags(module_file):
    res = lsrl_opt(str(module_file), "-p", "canonicalize,constant-fold,cse,dce,fuse-linears", "--check")
    assert res.returncode == 0, res.stderr
    res = lsrl_opt(str(module_file), "-p", "canonicalize", "--no-verify")
    assert res.returncode == 0, res.stderr


def test_split_input_file(tmp_path):
    path = tmp_path / "two.mlir"
    path.write_text(MODULE + "// -----\n" + MODULE.replace("@m", "@n"))
    res = lsrl_opt(str(path), "--split-input-file", "-p", "canonicalize")
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.split("// -----\n")
    assert first.startswith("lsrl.module @m(") and second.startswith("lsrl.module @n(")


def test_console_script_entry_point_is_main():
    import lsrl.opt

    assert callable(lsrl.opt.main)
    text = (ROOT / "pyproject.toml").read_text()
    assert 'lsrl-opt = "lsrl.opt:main"' in text
