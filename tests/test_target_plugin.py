"""A target is one module: a toy target defined in tests/toy_target.py (outside the package, no edit to it)
compiles a paper program, runs it on the numpy semantics and the kernel, saves, loads and exports it, and
``lsrl-opt`` lowers to it — every consumer finds it through the registry.  Also: the import graph of the
package's layers has no cycle, and each built-in target's name appears only in its own module."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

import lsrl
from lsrl.ir.interpreter import interpret
from lsrl.programs import draw_queries, random_token_map, token_map, token_prompt
from lsrl.runtime import kernel_available
from lsrl.targets import available_targets, unregister_target

TESTS = Path(__file__).parent
PACKAGE = TESTS.parent / "python" / "lsrl"


@pytest.fixture
def toy():
    spec = importlib.util.spec_from_file_location("toy_target", TESTS / "toy_target.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.TwinLinearRnn.name
    unregister_target(module.TwinLinearRnn.name)


def _prompts(n=3, batch=3, seed=4):
    rng = np.random.default_rng(seed)
    mapping = random_token_map(n, 5, 10, rng)
    xs = [token_prompt(q, mapping) for q in draw_queries(mapping, batch, rng)]
    return np.stack(xs)[..., None] if np.ndim(xs[0]) == 1 else np.stack(xs)


def test_toy_target_compiles_runs_saves_loads_and_exports(toy, tmp_path):
    program = token_map(3, vocab_size=10)
    xs = _prompts()
    assert toy in available_targets()
    model = lsrl.compile(program, toy, t_max=xs.shape[1])
    assert model.target == toy and {op.kind for op in model.module.ops} >= {"toy_twin_linstate"}
    expected = interpret(program, xs)
    y = model(xs)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9)
    # its layers: one per twin state (the layer_groups hook), each twice as wide as the default target's
    base = lsrl.compile(program, t_max=xs.shape[1])
    assert [layer["hidden_size"] for layer in model.layers] == [2 * layer["hidden_size"] for layer in base.layers]
    if kernel_available():
        np.testing.assert_array_equal(model(xs, backend="kernel"), y)  # a core linstate node in C++
    # streaming carries the twin state ([s; s]) between chunks
    np.testing.assert_allclose(np.concatenate(list(model.stream([xs[:, :7], xs[:, 7:]])), axis=1), y, atol=1e-12)

    model.save(tmp_path / "toy")
    loaded = lsrl.load(tmp_path / "toy")
    assert loaded.target == toy
    np.testing.assert_array_equal(loaded(xs), y)

    torch = pytest.importorskip("torch")
    with torch.no_grad():
        out = model.to_torch()(torch.from_numpy(xs)).numpy()
    np.testing.assert_allclose(out, y, atol=1e-9)
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    proto = model.to_onnx(tmp_path / "toy.onnx", dtype="float64")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.ascontiguousarray(xs.transpose(1, 0, 2))})[0].transpose(1, 0, 2)
    np.testing.assert_allclose(out, y, atol=1e-9)


def test_toy_target_through_lsrl_opt_and_errors(toy):
    from lsrl import opt
    program = token_map(2, vocab_size=10)
    lowered = opt.run(program, f"debranch,lower{{target={toy}}}")
    assert lowered.metadata["target"] == toy
    unregister_target(toy)
    with pytest.raises(lsrl.CompileError, match="unknown target 'toy_twin'"):
        lsrl.compile(program, toy)
    spec = importlib.util.spec_from_file_location("toy_target", TESTS / "toy_target.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registered again for the fixture to remove


def test_a_second_target_under_a_taken_name_is_refused():
    from lsrl.targets import Target, register_target

    class Impostor(Target):
        name = "lstm"
        op_kinds = frozenset({"lstm"})

    with pytest.raises(ValueError, match="already registered"):
        register_target(Impostor())


# ------------------------------------------------------------------------------------------ layering

def _imports(path: Path) -> set[str]:
    """The lsrl sub-packages a module imports at module level (lazy imports inside functions excluded)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:-node.level] if path.name != "__init__.py" else \
                    package.split(".")[:len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("lsrl"):
                found.add(name)
                found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lsrl"))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    top = parts[1]
    if top in ("ir", "passes", "targets", "runtime"):
        return top
    if top in ("model", "serialization"):
        return "model"
    return None


def test_the_layers_import_each_other_in_one_direction():
    """ir → passes → targets → model/serialization → runtime, with no module-level import going back."""
    order = ["ir", "passes", "targets", "model", "runtime"]
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        source = _layer(module)
        if source is None:
            continue
        for imported in _imports(path):
            target = _layer(imported)
            if target is not None and order.index(target) > order.index(source):
                pytest.fail(f"{module} imports {imported} at module level: layer {source} must not depend on "
                            f"layer {target}")


def test_each_target_is_named_only_in_its_own_module():
    """The built-in targets' names (and their op kinds), as identifiers are written, appear in the package and
    the C++ kernel only in the target's own module and its kernel cell or block (csrc/cells/<op kind>.cpp,
    csrc/blocks/<target>.cpp) — comments included.  (Prose such as "an LSTM" names the architecture, not the target.)"""
    names = {"linear_rnn": {"linear_rnn"}, "relu_rnn": {"relu_rnn", "rnn_relu"}, "lstm": {"lstm"},
             "gru": {"gru"}, "hawk": {"hawk"}, "griffin": {"griffin"}, "mamba": {"mamba", "mamba_block"}}
    kernel_files = {"relu_rnn": "cells/rnn_relu.cpp", "lstm": "cells/lstm.cpp", "gru": "cells/gru.cpp",
                    "mamba": "blocks/mamba.cpp"}
    root = PACKAGE.parent.parent
    sources = list(PACKAGE.rglob("*.py")) + list((root / "csrc").rglob("*.[ch]pp")) + [root / "CMakeLists.txt"]
    for path in sources:
        text = path.read_text()
        for target, words in names.items():
            if path == PACKAGE / "targets" / f"{target}.py" or path == root / "csrc" / kernel_files.get(target, "-"):
                continue
            for word in words:
                if re.search(rf"\b{word}\b", text):
                    pytest.fail(f"{path.relative_to(root)} names target {target!r} ({word!r}); only its module "
                                f"python/lsrl/targets/{target}.py (and its kernel cell) may")
