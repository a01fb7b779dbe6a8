"""Every script in ``benchmarks/`` still runs: each is started with ``--smoke`` (tiny sizes, one repeat), as a
user would start it, and must exit 0 and print a table.  A benchmark that stops working is a bug."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def test_every_benchmark_is_collected():
    assert {p.name for p in BENCHMARKS} >= {"compile.py", "kernel.py"}


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_smoke_run(script):
    if script.name == "torch_float32.py":
        pytest.importorskip("torch", reason="it runs the torch export")
    if script.name == "kernel.py":
        pytest.importorskip("torch", reason="section (b) compares against torch")
        pytest.importorskip("transformers", reason="section (f) compares against Hugging Face models")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=300,
                          env=env, cwd=script.parent.parent)
    assert done.returncode == 0, f"{script.name} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "|---" in done.stdout, f"{script.name} --smoke printed no table:\n{done.stdout[-2000:]}"


def test_the_pass_timings_against_a_revision_run():
    script = BENCHMARKS[0].parent / "versions.py"
    done = subprocess.run([sys.executable, str(script), "--against", "HEAD", "--passes", "--smoke"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"),
                          cwd=script.parent.parent)
    assert done.returncode == 0, f"versions.py --passes --smoke failed:\n{done.stderr[-3000:]}"
    assert "| continuous 2->1 direct |" in done.stdout and "debranch this" in done.stdout, done.stdout[-2000:]
