"""The eight bugs of issue 14 stay seedable and stay caught (docs/testing.md, "Seeded bugs").

The default run checks that every seeded change still applies to today's source (so the list cannot silently
go stale); the slow run re-creates each bug on a private copy of the checkout and runs the tests that must
catch it (`python tests/mutation/run.py seeded` does the same from the command line).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_RUNNER = Path(__file__).resolve().parent / "mutation" / "run.py"
_spec = importlib.util.spec_from_file_location("lsrl_mutation_runner", _RUNNER)
runner = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = runner
_spec.loader.exec_module(runner)

SEEDED = {m.label: m for m in runner.SEEDED}


@pytest.mark.parametrize("label", list(SEEDED))
def test_seeded_bug_still_applies(label):
    mutant = SEEDED[label]
    source = (runner.ROOT / mutant.path).read_text()
    assert source.count(mutant.old) == 1, f"{label}: update tests/mutation/run.py, the source changed"
    for selection in mutant.tests:
        assert (runner.ROOT / selection.split("::")[0]).is_file(), selection


@pytest.mark.slow
@pytest.mark.parametrize("label", list(SEEDED))
def test_seeded_bug_is_caught(label):
    killed, detail = runner.killed(SEEDED[label], timeout=600, every_failure=False)
    assert killed, f"{label} survived: {detail}"
