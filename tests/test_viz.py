"""Seeing what was compiled (docs/inspection.md): ``Model.summary``, the one-line reprs, ``lsrl.viz.to_dot``
(parsed back with pydot), ``lsrl.viz.render`` with and without Graphviz, ``Model.plot_weights``,
``lsrl-opt --emit=dot`` and the demo's ``--plots``."""
from __future__ import annotations

import functools
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

import lsrl
from lsrl import viz
from lsrl.targets import available_targets

TARGETS = tuple(available_targets())
from lsrl.errors import LsrlError, OptionError
from lsrl.programs import continuous_approximator, more_ones, token_map

pydot = pytest.importorskip("pydot")
pytest.importorskip("matplotlib")
# pydot's parser calls pyparsing names that newer pyparsing releases deprecate; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pydot.dot_parser")

# A ReLU RNN cannot multiply: it gets the programs built with the ReLU-based conditional.
PROGRAMS = {
    "more_ones": lambda conditional: more_ones(),
    "continuous": lambda conditional: continuous_approximator(2, 1, conditional=conditional, value_bound=3),
    "token_map": lambda conditional: token_map(3, conditional=conditional, vocab_size=10),
}
CASES = [(name, target) for name in PROGRAMS for target in TARGETS]


@functools.cache
def program(name: str, target: str):
    return PROGRAMS[name]("optimized" if target == "relu_rnn" else "multiplicative")


@functools.cache
def model(name: str, target: str, activations: str = "ideal"):
    return lsrl.compile(program(name, target), target=target, activations=activations, t_max=64)


# ------------------------------------------------------------------------------------------ file checks

def assert_png(path: Path, min_bytes: int = 5000) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 50 and height > 50
    assert len(data) >= min_bytes
    return width, height


def assert_svg(path: Path, min_bytes: int = 2000) -> None:
    root = ElementTree.fromstring(path.read_bytes())
    assert root.tag.endswith("svg")
    assert path.stat().st_size >= min_bytes


# ------------------------------------------------------------------------------------------ DOT

def parse_dot(text: str):
    graphs = pydot.graph_from_dot_data(text)
    assert graphs is not None and len(graphs) == 1, "DOT text does not parse"
    return graphs[0]


def dot_nodes(graph) -> list:
    """Every node statement of the graph and its subgraphs (the ``node``/``edge``/``graph`` defaults left out)."""
    nodes = [n for n in graph.get_nodes() if n.get_name() not in ("node", "edge", "graph")]
    for sub in graph.get_subgraphs():
        nodes += dot_nodes(sub)
    return nodes


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_program_dot_has_one_node_per_live_op(name):
    p = program(name, "lstm")
    graph = parse_dot(viz.to_dot(p, collapse=False))
    nodes = dot_nodes(graph)
    live = p.ir.live_ops()
    assert len(nodes) == len({n.get_name() for n in nodes}) == len(live)
    # every operand read is an edge, a value read twice by one op (x + x) once
    expected_edges = {(id(o), id(op)) for op in live for o in op.operands}
    assert len(graph.get_edges()) == len(expected_edges)
    labels = {n.get_label().strip('"') for n in nodes}
    names = lsrl.ir.names.ssa_names(p.ir)
    for op in live:
        assert any(label.startswith(f"%{names[id(op)]}\\n{op.kind} : {op.dim}") for label in labels)


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_collapsed_program_dot_keeps_every_op_once(name):
    """Collapsed: fewer nodes, and the ops the sugar groups stand for plus the ops shown add up."""
    p = program(name, "lstm")
    graph = parse_dot(viz.to_dot(p))
    nodes = dot_nodes(graph)
    keys = {n.get_name() for n in nodes}
    plain = [n for n in nodes if n.get_name().startswith("n")]
    group_sizes = [int(re.search(r"\\n(\d+) ops", n.get_label()).group(1)) for n in nodes
                   if n.get_name().startswith("g")]
    assert group_sizes, "the paper's programs use sugar"
    assert len(plain) + sum(group_sizes) == len(p.ir.live_ops())
    assert len(nodes) < len(p.ir.live_ops())
    for edge in graph.get_edges():
        assert edge.get_source() in keys and edge.get_destination() in keys
        assert edge.get_source() != edge.get_destination()


def test_expand_shows_a_group_inside_a_box():
    p = program("more_ones", "lstm")
    graph = parse_dot(viz.to_dot(p, expand="out"))
    boxes = graph.get_subgraphs()
    assert [b.get_label().strip('"') for b in boxes] == ["out"]
    inside = {n.get_label().strip('"').split("\\n")[0] for n in dot_nodes(boxes[0])}
    assert {"%out", "%out.pos", "%out.over"} <= inside | {"%out.diff"}
    assert "%out.diff" in inside  # a nested group stays collapsed inside the expanded one
    with pytest.raises(OptionError, match="'nope'.*groups of @main: .*out"):
        viz.to_dot(p, expand=["nope"])


@pytest.mark.parametrize("name,target", CASES)
def test_model_dot_shows_every_layer(name, target):
    m = model(name, target)
    graph = parse_dot(viz.to_dot(m))
    nodes = dot_nodes(graph)
    if target == "linear_rnn":  # the layer form: one node per op of the chain
        assert len(nodes) == len(m.module.ops)
    else:  # input, one node per target layer, readout
        assert len(nodes) == len(m.layers) + 2
        stages = [re.search(r"· (\w)", n.get_label()).group(1) for n in nodes if n.get_label().startswith('"L')]
        assert stages == [info["stage"] for info in m.layers]
    assert len(graph.get_edges()) == len(nodes) - 1  # a chain
    labels = " ".join(n.get_label() for n in nodes)
    assert f"holds {m.summary(as_dict=True)['layers'][0]['holds'][0]}" in labels


def test_layer_form_module_dot():
    layered = lsrl.opt.run(program("more_ones", "lstm").ir, "debranch")
    graph = parse_dot(viz.to_dot(layered))
    assert graph.get_name().strip('"') == "@main (layer form)"
    assert len(dot_nodes(graph)) == len(layered.ops)
    assert [s.get_label().strip('"') for s in graph.get_subgraphs()] == ["layer 1"]


def test_to_dot_rejects_other_objects():
    with pytest.raises(TypeError, match="expected a program"):
        viz.to_dot(42)


# ------------------------------------------------------------------------------------------ pictures

@pytest.mark.parametrize("name,target", CASES)
def test_matplotlib_pictures_of_program_model_and_weights(name, target, tmp_path):
    """The fallback path needs only pip packages: always tested."""
    m = model(name, target)
    assert_png(viz.render(program(name, target), tmp_path / "program.png", engine="matplotlib"))
    assert_svg(viz.render(m, tmp_path / "layers.svg", engine="matplotlib"))
    # the token map's LSTM/GRU have 33 layers: the first three and the readout keep the test quick
    layers = [0, 1, 2, "readout"] if len(m.layers) > 10 else None
    m.plot_weights(tmp_path / "weights.png", layers=layers)
    assert_png(tmp_path / "weights.png", min_bytes=10000)


@pytest.mark.skipif(not viz.graphviz_available(), reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("name,target", CASES)
def test_graphviz_pictures(name, target, tmp_path):
    assert_svg(viz.render(program(name, target), tmp_path / "program.svg", engine="graphviz"))
    assert_png(viz.render(model(name, target), tmp_path / "layers.png", engine="graphviz"))


def test_auto_engine_without_graphviz_draws_with_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)

    def no_subprocess(*args, **kwargs):
        raise AssertionError("Graphviz must not be run when dot is not installed")

    monkeypatch.setattr(viz.subprocess, "run", no_subprocess)
    assert_png(viz.render(program("token_map", "lstm"), tmp_path / "program.png"))
    with pytest.raises(LsrlError, match="needs Graphviz's dot"):
        viz.render(program("more_ones", "lstm"), tmp_path / "p.svg", engine="graphviz")


def test_standard_mode_weights_span_many_decades(tmp_path):
    m = model("more_ones", "lstm", "standard")
    m.plot_weights(tmp_path / "w.svg")
    assert_svg(tmp_path / "w.svg", min_bytes=10000)
    text = (tmp_path / "w.svg").read_text()
    assert "b_ih" in text and "W_hh·o" in text  # gate panels with their bias columns, labels kept as text


def test_bad_arguments(tmp_path):
    m = model("more_ones", "gru")
    with pytest.raises(OptionError, match=r"must end in \.svg or \.png \(got '\.jpg'\)"):
        m.plot_weights(tmp_path / "w.jpg")
    with pytest.raises(OptionError, match=r"no layer 7; the model has layers 0\.\.1 and 'readout'"):
        m.plot_weights(tmp_path / "w.png", layers=[0, 7])
    with pytest.raises(OptionError, match="selects nothing"):
        m.plot_weights(tmp_path / "w.png", layers=[])
    with pytest.raises(OptionError, match="must end in"):
        viz.render(m, tmp_path / "graph")
    with pytest.raises(OptionError, match="engine must be one of"):
        viz.render(m, tmp_path / "graph.png", engine="tikz")
    with pytest.raises(TypeError, match="expected an lsrl.Model"):
        viz.plot_weights(program("more_ones", "gru"), tmp_path / "w.png")
    # paths that cannot be written: matplotlib's and PIL's own errors before
    (tmp_path / "file").write_text("")
    with pytest.raises(LsrlError, match=r"plot_weights: cannot write '.*file/w.png'"):
        m.plot_weights(tmp_path / "file" / "w.png")
    with pytest.raises(LsrlError, match=r"lsrl.viz.render: cannot write '.*file/g.svg'"):
        viz.render(m, tmp_path / "file" / "g.svg", engine="matplotlib")
    (tmp_path / "folder.svg").mkdir()
    with pytest.raises(LsrlError, match=r"lsrl.viz.render: cannot write '.*folder.svg': Is a directory"):
        viz.render(m, tmp_path / "folder.svg", engine="matplotlib")
    assert viz.render(m, tmp_path / "new" / "g.svg", engine="matplotlib").exists()  # its folder is made


def test_missing_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(LsrlError, match=r"pip install 'lsrl\[plot\]'"):
        model("more_ones", "gru").plot_weights(tmp_path / "w.png")
    with pytest.raises(LsrlError, match=r"pip install 'lsrl\[plot\]'"):
        viz.render(program("more_ones", "gru"), tmp_path / "p.png", engine="matplotlib")
    assert viz.to_dot(program("more_ones", "gru")).startswith("digraph")  # DOT needs nothing


# ------------------------------------------------------------------------------------------ summary, repr

@pytest.mark.parametrize("name,target", CASES)
def test_summary_totals_equal_the_model(name, target):
    m = model(name, target)
    facts = m.summary(as_dict=True)
    assert facts["totals"]["nnz"] == m.nnz == m.parameter_count
    assert facts["totals"]["dense"] == m.dense_parameter_count
    assert len(facts["layers"]) == len(m.layers)
    assert [r["nnz"] for r in facts["layers"]] == [info["nnz"] for info in m.layers]
    text = m.summary()
    total = text.splitlines()[-1].split() if not facts["standard"] else text.splitlines()[-2].split()
    assert total == ["total", str(facts["totals"]["state_size"]), str(m.dense_parameter_count), str(m.nnz)]
    rows = [line for line in text.splitlines() if re.match(r"\s+\d+\s", line)]
    assert len(rows) == len(m.layers)
    # benchmarks/kernel.py reads the second line up to "widest="
    assert text.splitlines()[1].split("widest=")[0].strip() == f"layers={len(m.layers)}"


def test_summary_names_the_values_each_layer_holds():
    facts = model("more_ones", "lstm").summary(as_dict=True)
    assert [r["holds"] for r in facts["layers"]] == [["ones", "zeros"], ["out.pos", "out.over"]]
    assert [r["stage"] for r in facts["layers"]] == ["S", "R"]
    assert [r["state_size"] for r in facts["layers"]] == [4, 4]  # h and c of 2 units
    token = model("token_map", "gru").summary(as_dict=True)
    assert "x" in token["layers"][0]["carries"]


def test_reprs_say_what_they_are_in_one_line():
    m = model("token_map", "lstm", "standard")
    text = repr(m)
    assert "\n" not in text
    assert text.startswith("<lsrl.Model target=lstm activations=standard dtype=float64:")
    numbers = re.search(r"(\d+) layers, widest (\d+), nnz (\d+)>", text).groups()
    assert tuple(map(int, numbers)) == (len(m.layers), max(m.widths), m.nnz)
    exact = lsrl.compile(program("more_ones", "lstm"), target="linear_rnn", exact=True)
    assert "dtype=exact" in repr(exact)
    p = program("more_ones", "lstm")
    assert repr(p) == (f"<lsrl.ForEach @main dtype=exact: 1 -> 1, {len(p.ir.ops)} ops, 2 LinState, "
                       f"nnz {p.nnz}>")


# ------------------------------------------------------------------------------------------ command line

def test_lsrl_opt_emit_dot(tmp_path):
    source = tmp_path / "prog.mlir"
    program("more_ones", "lstm").save(source)
    done = subprocess.run([sys.executable, "-m", "lsrl.opt", str(source), "-p", "debranch", "--emit=dot"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    graph = parse_dot(done.stdout)
    assert len(dot_nodes(graph)) == len(lsrl.opt.run(program("more_ones", "lstm").ir, "debranch").ops)


def test_demo_writes_pictures_of_what_it_compiled(tmp_path):
    from lsrl import demo

    m = model("more_ones", "gru")
    demo._write_program_picture(tmp_path, "more_ones", program("more_ones", "gru"))
    demo._write_model_pictures(tmp_path, "more_ones", "gru", "ideal", m)
    assert_svg(tmp_path / "more_ones.program.svg")
    assert_svg(tmp_path / "more_ones.gru.ideal.layers.svg")
    assert_png(tmp_path / "more_ones.gru.ideal.weights.png")
    assert (tmp_path / "more_ones.gru.ideal.summary.txt").read_text() == m.summary() + "\n"


@pytest.mark.slow
def test_demo_plots_every_compiled_model(tmp_path, capsys):
    from lsrl import demo

    assert demo.main(["--plots", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if re.search(r"\s(ideal|standard)\s", line)]
    assert len(list(tmp_path.glob("*.weights.png"))) == len(rows)
    assert len(list(tmp_path.glob("*.program.svg"))) == 5
