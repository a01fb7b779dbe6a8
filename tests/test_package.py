"""``import lsrl`` gives the sub-packages as attributes, imported on first use (PEP 562)."""
from __future__ import annotations

import subprocess
import sys

import pytest

import lsrl


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_sub_packages_are_attributes_imported_on_first_use():
    out = _fresh("import sys, lsrl\n"
                 "before = 'lsrl.programs' in sys.modules, 'lsrl.experiments' in sys.modules, 'pandas' in sys.modules\n"
                 "model = lsrl.compile(lsrl.programs.token_map(3, vocab_size=10), t_max=8)\n"
                 "print(before, 'lsrl.programs' in sys.modules, model.target)")
    assert out == "(False, False, False) True linear_rnn"


@pytest.mark.parametrize("name", ["programs", "opt", "runtime", "precision", "experiments"])
def test_each_lazy_name_is_the_module(name):
    import importlib
    assert getattr(lsrl, name) is importlib.import_module(f"lsrl.{name}")
    assert name in dir(lsrl)


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'lsrl' has no attribute 'tokenmap'"):
        lsrl.tokenmap
