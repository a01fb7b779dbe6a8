# lit configuration of the golden IR tests of the passes: one folder per pass, *.mlir files whose RUN lines
# pipe `lsrl-opt` into `filecheck`.  Run with `lit passes/` (add -v for details); both tools are the Python
# packages `lit` and `filecheck` (`pip install lit filecheck`).
#
# `lsrl-opt` and `filecheck` are run with the Python interpreter that runs lit, so the tests work in a
# development checkout (PYTHONPATH=<repo>/python, or nothing: the checkout's python/ is added when lsrl is
# not importable) and against an installed lsrl alike.
import importlib.util
import os
import shlex
import sys

import lit.formats

config.name = "lsrl-passes"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(os.path.abspath(__file__))
config.test_exec_root = config.test_source_root
config.excludes = ["lit.cfg.py", "Output"]

python = shlex.quote(sys.executable)
config.substitutions.append((r"\blsrl-opt\b", f"{python} -m lsrl.opt"))
config.substitutions.append((r"\bfilecheck\b", f"{python} -m filecheck"))

pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
source_tree = os.path.join(os.path.dirname(config.test_source_root), "python")
if importlib.util.find_spec("lsrl") is None and os.path.isdir(source_tree) and source_tree not in pythonpath:
    pythonpath.insert(0, source_tree)
if pythonpath:
    config.environment["PYTHONPATH"] = os.pathsep.join(pythonpath)
# lsrl-opt's messages must not depend on the terminal
config.environment["PYTHONIOENCODING"] = "utf-8"
