"""Pictures of programs and compiled models (docs/inspection.md).

* :func:`to_dot` — DOT text of a program (the op DAG), an IR module, a layer-form module (what ``debranch``
  produces) or a compiled :class:`lsrl.Model` (its layers, stages S/R/M and which value lives where).
* :func:`render` — the same graph as an SVG or PNG file: with Graphviz's ``dot`` program when it is
  installed, else drawn by matplotlib (nodes layered by topological depth), so a pip-only install can
  always produce a picture.
* :func:`plot_weights` — every matrix of a model as a heatmap whose rows and columns are named from the
  model's layout (``Model.plot_weights``).

Sugar collapses: the nodes a sugar function builds are named ``<name>.<role>`` (docs/language.md), so the
ops named ``larger.*`` that feed the op named ``larger`` show as one node ``%larger`` unless ``collapse``
is False or ``"larger"`` is in ``expand`` (then they are drawn inside a box labelled ``larger``).

matplotlib is imported only when a picture is drawn (the ``plot`` extra); the core install needs neither it
nor Graphviz.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import LsrlError, OptionError
from .inspection import LayoutNames, capped, held_text, layer_infos
from .ir.core import OPS, Module, Op
from .ir.layer_form import LAYER_FORM_KINDS, chain_problems
from .ir.matrix import Matrix
from .ir.names import ssa_names

__all__ = ["to_dot", "render", "plot_weights", "graph_of", "graphviz_available", "Graph", "SUFFIXES", "ENGINES",
           "GRAPHVIZ_NODE_LIMIT"]

SUFFIXES = (".svg", ".png")
ENGINES = ("auto", "graphviz", "matplotlib")
# Longest line of a node label; longer lines end in "…".
MAX_LINE = 34
# Graphviz's layout time grows much faster than the graph (measured: 170 nodes 0.8 s, 500 nodes 3 s,
# 1,600 nodes 90 s); above this many nodes "auto" draws with matplotlib, whose layered layout stays linear.
GRAPHVIZ_NODE_LIMIT = 800
# Beyond this many edges, edge labels overlap into noise and dominate the matplotlib drawing time.
EDGE_LABEL_LIMIT = 1500

# Fill colours by role, shared by the DOT text and the matplotlib drawing.
FILL = {"input": "#e0e0e0", "linear": "#ffffff", "relu": "#cfe2f3", "multi": "#d9d2e9", "linstate": "#fce5cd",
        "concat": "#f3f3f3", "slice": "#f3f3f3", "group": "#fff2cc", "readout": "#d9ead3", "other": "#ffffff"}
_STAGE_FILL = {"S": "linstate", "R": "relu", "M": "multi"}


# ------------------------------------------------------------------------------------------ graph

@dataclass
class Node:
    key: str
    lines: list[str]
    fill: str
    stateful: bool = False  # carries a state from token to token (LinState, S stage, recurrent layer)
    output: bool = False
    group: bool = False  # a collapsed sugar group
    cluster: str | None = None


@dataclass
class Edge:
    src: str
    dst: str
    label: str


@dataclass
class Cluster:
    key: str
    label: str
    parent: str | None = None


@dataclass
class Graph:
    """What :func:`to_dot` and :func:`render` draw: nodes (in the order of the ops they show), edges and
    boxes (clusters, possibly nested)."""
    name: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    clusters: dict[str, Cluster] = field(default_factory=dict)


def graph_of(obj, *, collapse: bool = True, expand=()) -> Graph:
    """The :class:`Graph` of a program, an IR module or a :class:`lsrl.Model` (see :func:`to_dot`)."""
    from .model import Model

    if isinstance(obj, Model):
        return _model_graph(obj)
    module = getattr(obj, "ir", obj)
    if not isinstance(module, Module):
        raise TypeError(f"lsrl.viz: expected a program (lsrl.ForEach), an lsrl.ir.Module or an lsrl.Model, got "
                        f"{type(obj).__name__}")
    if module.metadata.get("target") is not None:
        return _model_graph(Model(module))
    if _is_layer_form(module):
        return _layer_form_graph(module, title=f"@{module.name} (layer form)")
    return _program_graph(module, collapse, expand)


# ------------------------------------------------------------------------------------------ programs

@dataclass
class _Group:
    result: Op
    members: set  # ids of the ops, the result included
    name: str = ""
    parent: "_Group | None" = None


def _sugar_groups(live: list[Op], names: dict[int, str]) -> list[_Group]:
    """Groups of ops a sugar function built: the op named ``N`` and the ops named ``N.*`` it reads through
    ops so named.  A group some outside op sits between (reads a member, is read by a member) is dropped:
    collapsing it would make a cycle."""
    groups = []
    for op in live:
        if not isinstance(op.name, str) or not op.name:
            continue
        prefix = op.name + "."
        members = {id(op)}
        stack = [op]
        while stack:
            for operand in stack.pop().operands:
                if id(operand) not in members and isinstance(operand.name, str) and operand.name.startswith(prefix):
                    members.add(id(operand))
                    stack.append(operand)
        if len(members) > 1:
            groups.append(_Group(op, members, names[id(op)]))
    if not groups:
        return []
    position = {id(op): i for i, op in enumerate(live)}
    users: dict[int, list[Op]] = {}
    for op in live:
        for operand in op.operands:
            users.setdefault(id(operand), []).append(op)
    groups = [g for g in groups if _convex(g, users, position)]
    # nesting: the smallest other group holding a group's result is its parent
    holders: dict[int, list[_Group]] = {}
    for g in sorted(groups, key=lambda g: len(g.members)):
        for member in g.members:
            holders.setdefault(member, []).append(g)
    for g in groups:
        outer = [h for h in holders[id(g.result)] if h is not g]
        g.parent = outer[0] if outer else None
    return groups


def _convex(group: _Group, users: dict, position: dict) -> bool:
    last = position[id(group.result)]
    seen: set[int] = set()
    stack = [u for m in group.members for u in users.get(m, ()) if id(u) not in group.members]
    while stack:
        op = stack.pop()
        if id(op) in seen or position[id(op)] > last:
            continue
        seen.add(id(op))
        for u in users.get(id(op), ()):
            if id(u) in group.members:
                return False
            stack.append(u)
    return True


def _op_lines(op: Op, name: str) -> list[str]:
    if op.kind == "input":
        return [f"%{name}", f"input : {op.dim}"]
    state = " (state)" if op.kind == "linstate" else ""
    return [capped(f"%{name}", MAX_LINE), f"{op.kind} : {op.dim}{state}"]


def _program_graph(module: Module, collapse: bool, expand) -> Graph:
    names = ssa_names(module)
    live = module.live_ops()
    graph = Graph(f"@{module.name}")
    groups = _sugar_groups(live, names) if (collapse or expand) else []
    by_name = {g.name: g for g in groups}
    wanted = [expand] if isinstance(expand, str) else list(expand)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        listed = ", ".join(sorted(by_name)[:12]) + (", …" if len(by_name) > 12 else "")
        raise OptionError(f"lsrl.viz: expand names no sugar group: {', '.join(map(repr, unknown))} "
                          f"(groups of @{module.name}: {listed or 'none'})")
    expanded: set[int] = set()
    for n in wanted:  # expanding a group expands the groups around it, else it would stay hidden
        g = by_name[n]
        while g is not None:
            expanded.add(id(g))
            g = g.parent
    # the outermost group that stays collapsed hides an op; expanded groups around it become boxes
    holders: dict[int, list[_Group]] = {}
    for g in sorted(groups, key=lambda g: -len(g.members)):
        for member in g.members:
            holders.setdefault(member, []).append(g)
    position = {id(op): i for i, op in enumerate(live)}
    op_of = {id(op): op for op in live}

    def group_key(g: _Group, prefix: str) -> str:
        return f"{prefix}{position[id(g.result)]}"

    shown: dict[int, str] = {}
    box: dict[int, str | None] = {}
    for op in live:
        key, cluster = f"n{position[id(op)]}", None
        for g in holders.get(id(op), ()):
            if id(g) in expanded:
                cluster = group_key(g, "c")
            elif collapse:
                key = group_key(g, "g")
                break
        shown[id(op)] = key
        box[id(op)] = cluster
    for g in groups:
        if id(g) in expanded:
            parent = g.parent
            graph.clusters[group_key(g, "c")] = Cluster(group_key(g, "c"), g.name,
                                                        group_key(parent, "c") if parent else None)
    group_of_key = {group_key(g, "g"): g for g in groups}
    drawn: set[str] = set()
    for op in live:
        key = shown[id(op)]
        if key in drawn:
            continue
        drawn.add(key)
        group = group_of_key.get(key)
        if group is None:
            graph.nodes.append(Node(key, _op_lines(op, names[id(op)]), FILL.get(op.kind, FILL["other"]),
                                    stateful=bool(OPS[op.kind].stateful) if op.kind in OPS else False,
                                    output=op is module.output, cluster=box[id(op)]))
        else:
            result = group.result
            states = sum(1 for m in group.members if op_of[m].kind == "linstate")
            detail = f"{len(group.members)} ops" + (f", {states} LinState" if states else "")
            parent = group.parent
            cluster = group_key(parent, "c") if parent is not None and id(parent) in expanded else None
            graph.nodes.append(Node(key, [capped(f"%{group.name}", MAX_LINE), detail, f"sugar : {result.dim}"],
                                    FILL["group"], stateful=states > 0, output=id(module.output) in group.members,
                                    group=True, cluster=cluster))
    seen_edges: set[tuple] = set()
    for op in live:
        for operand in op.operands:
            src, dst = shown[id(operand)], shown[id(op)]
            if src == dst or (src, dst, id(operand)) in seen_edges:
                continue
            seen_edges.add((src, dst, id(operand)))
            graph.edges.append(Edge(src, dst, str(operand.dim)))
    return graph


# ------------------------------------------------------------------------------------------ layer form

def _is_layer_form(module: Module) -> bool:
    """A chain ``input → op → …`` carrying debranch's per-op ``stages`` and ``layout`` metadata."""
    ops = module.ops
    meta = module.metadata
    stages, layout = meta.get("stages"), meta.get("layout")
    if not isinstance(stages, list) or not isinstance(layout, list) or not len(stages) == len(layout) == len(ops):
        return False
    return not chain_problems(module, LAYER_FORM_KINDS)


def _held_lines(names: LayoutNames, slots) -> list[str]:
    computed, carried = names.held(slots)
    lines = []
    if computed:
        lines.append("holds " + held_text(computed, [], MAX_LINE - 6))
    if carried:
        lines.append(held_text([], carried, MAX_LINE))
    return lines


def _layer_form_graph(module: Module, title: str) -> Graph:
    """One node per op of the chain, boxed by layer: stage, kind, width and the values each op holds."""
    ops = module.ops
    stages = module.metadata["stages"]
    layout = module.metadata["layout"]
    names = LayoutNames(layout)
    ssa = ssa_names(module)
    graph = Graph(title)
    for i, op in enumerate(ops):
        meta = stages[i] if isinstance(stages[i], dict) else {}
        stage = meta.get("stage", "?")
        layer = meta.get("layer")
        cluster = None
        if stage not in ("X", "readout") and layer is not None:
            cluster = f"layer{layer}"
            graph.clusters.setdefault(cluster, Cluster(cluster, f"layer {layer}"))
        if op.kind == "input":
            head, fill = f"%{ssa[id(op)]} input : {op.dim}", FILL["input"]
        elif stage == "readout" or op is module.output:
            head, fill = f"readout linear : {op.dim}", FILL["readout"]
        else:
            head, fill = f"{stage}{meta.get('index', '')} {op.kind} : {op.dim}", FILL.get(op.kind, FILL["other"])
        lines = [capped(head, MAX_LINE)]
        if op.kind in ("input", "linstate", "relu", "multi"):
            lines += _held_lines(names, layout[i])
        graph.nodes.append(Node(f"n{i}", lines, fill, stateful=op.kind == "linstate",
                                output=op is module.output, cluster=cluster))
        if i:
            graph.edges.append(Edge(f"n{i - 1}", f"n{i}", str(ops[i - 1].dim)))
    return graph


def _model_graph(model) -> Graph:
    title = f"{model.target}/{model.activations} model of @{model.module.name}"
    if model.architecture.layer_form:
        if _is_layer_form(model.module):
            return _layer_form_graph(model.module, title)
        return _program_graph(model.module, collapse=False, expand=())  # no layout: the chain of ops
    layout = model.layout or []
    names = LayoutNames(layout)
    graph = Graph(title)
    inp = model.module.input
    graph.nodes.append(Node("n0", [f"input : {inp.dim}"] + (_held_lines(names, layout[0]) if layout else []),
                            FILL["input"]))
    block = 0
    for info in layer_infos(model):
        if info.stage == "S" or not block:  # an S stage opens a layer of the layer form (numbered from 1)
            block += 1
            graph.clusters[f"layer{block}"] = Cluster(f"layer{block}", f"layer {block}")
        entry = layout[info.layout_index] if info.layout_index < len(layout) else {}
        slots = entry.get("values", []) if isinstance(entry, dict) else []
        lines = [f"L{info.index} {info.op} · {info.stage}", f"hidden {info.width}, state {info.state_size}"]
        lines += _held_lines(names, slots)
        key = f"n{info.index + 1}"
        graph.nodes.append(Node(key, lines, FILL[_STAGE_FILL.get(info.stage, "linear")], stateful=True,
                                cluster=f"layer{block}"))
        graph.edges.append(Edge(f"n{info.index}", key, str(info.input_size)))
    readout = model.module.ops[-1]
    last = f"n{len(graph.nodes) - 1}"
    graph.nodes.append(Node("readout", [f"readout linear : {readout.dim}"], FILL["readout"], output=True))
    graph.edges.append(Edge(last, "readout", str(readout.operands[0].dim)))
    return graph


# ------------------------------------------------------------------------------------------ DOT

def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _quote(text: str) -> str:
    return f'"{_escape(text)}"'


def _label(lines: list[str]) -> str:
    """A DOT label of several centred lines."""
    return '"' + "\\n".join(_escape(line) for line in lines) + '"'


def _dot_text(graph: Graph) -> str:
    out = [f"digraph {_quote(graph.name)} {{",
           f'  graph [rankdir=TB, fontname="Helvetica", fontsize=11, label={_quote(graph.name)}, labelloc=t];',
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=8, color="#555555", fontcolor="#555555"];']
    members: dict[str | None, list[Node]] = {}
    for node in graph.nodes:
        members.setdefault(node.cluster, []).append(node)
    children: dict[str | None, list[str]] = {}
    for key, cluster in graph.clusters.items():
        children.setdefault(cluster.parent, []).append(key)

    def node_line(node: Node, indent: str) -> str:
        attrs = [f"label={_label(node.lines)}", f'fillcolor="{node.fill}"']
        if node.stateful:
            attrs.append("peripheries=2")
        if node.group:
            attrs.append('style="rounded,filled,dashed"')
        if node.output:
            attrs.append("penwidth=2")
        return f"{indent}{node.key} [{', '.join(attrs)}];"

    def emit(cluster: str | None, indent: str) -> None:
        for node in members.get(cluster, ()):
            out.append(node_line(node, indent))
        for key in children.get(cluster, ()):
            out.append(f"{indent}subgraph cluster_{key} {{")
            out.append(f'{indent}  label={_quote(graph.clusters[key].label)}; style="rounded,dashed"; '
                       'color="#888888";')
            emit(key, indent + "  ")
            out.append(f"{indent}}}")

    emit(None, "  ")
    for edge in graph.edges:
        out.append(f"  {edge.src} -> {edge.dst} [label={_quote(edge.label)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def to_dot(obj, *, collapse: bool = True, expand=()) -> str:
    """DOT text of ``obj``.

    * a program (``lsrl.ForEach``) or an IR module: one node per live op (``%name``, kind, width; LinStates
      have a double border), edges labelled with the widths they carry.  Sugar groups collapse to one node
      (``collapse=True``) unless named in ``expand`` (a name or a list of names, e.g. ``"larger"``).
    * a layer-form module (``debranch``'s output) or an ``lsrl.Model``: the layer form — one node per stage
      (S/R/M) or target layer, boxed by layer, each listing the program values it holds and carries.
    """
    return _dot_text(graph_of(obj, collapse=collapse, expand=expand))


# ------------------------------------------------------------------------------------------ rendering

def _require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise LsrlError("lsrl.viz: drawing pictures needs matplotlib; install it with "
                        "pip install 'lsrl[plot]' (or pip install matplotlib)") from None
    return matplotlib


def _check_path(path, who: str) -> Path:
    """``path`` to draw into, its folder made (as :meth:`lsrl.Model.save` does)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise OptionError(f"{who}: cannot write {str(path)!r}: the file name must end in "
                          f"{' or '.join(SUFFIXES)} (got {path.suffix or 'no suffix'!r})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(who, path, e) from None
    return path


def _unwritable(who: str, path: Path, error: OSError) -> LsrlError:
    """The error for a picture that cannot be written, naming it (not the plotting library's OSError)."""
    return LsrlError(f"{who}: cannot write {str(path)!r}: {error.strerror or error}")


def graphviz_available() -> bool:
    """Whether Graphviz's ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


def render(obj, path, *, engine: str = "auto", collapse: bool = True, expand=()) -> Path:
    """Draw ``obj`` (as :func:`to_dot` describes) into ``path`` (``.svg`` or ``.png``); returns the path.

    ``engine="graphviz"`` runs Graphviz's ``dot``; ``"matplotlib"`` draws the nodes layered by topological
    depth; ``"auto"`` uses Graphviz when ``dot`` is installed and the graph has at most
    :data:`GRAPHVIZ_NODE_LIMIT` nodes, matplotlib otherwise."""
    path = _check_path(path, "lsrl.viz.render")
    if engine not in ENGINES:
        raise OptionError(f"lsrl.viz.render: engine must be one of {ENGINES}, got {engine!r}")
    graph = graph_of(obj, collapse=collapse, expand=expand)
    if engine == "graphviz" and not graphviz_available():
        raise LsrlError("lsrl.viz.render: engine='graphviz' needs Graphviz's dot program on the PATH "
                        "(e.g. apt-get install graphviz); engine='matplotlib' needs only pip packages")
    use_graphviz = engine == "graphviz" or (engine == "auto" and graphviz_available()
                                            and len(graph.nodes) <= GRAPHVIZ_NODE_LIMIT)
    try:
        if use_graphviz:
            _render_graphviz(graph, path)
        else:
            _render_matplotlib(graph, path)
    except OSError as e:
        raise _unwritable("lsrl.viz.render", path, e) from None
    return path


def _render_graphviz(graph: Graph, path: Path) -> None:
    fmt = path.suffix.lower().lstrip(".")
    done = subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input=_dot_text(graph).encode("utf-8"),
                          capture_output=True)
    if done.returncode != 0:
        raise LsrlError(f"lsrl.viz.render: dot failed (exit {done.returncode}): "
                        f"{done.stderr.decode('utf-8', 'replace').strip()}")


# Long edges get a waypoint on every level they cross, so they bend around the nodes there instead of
# running underneath; a graph needing more waypoints than this gets straight edges (the layout stays linear).
WAYPOINT_LIMIT = 20000
# Horizontal room of a waypoint, in node columns.
_WAYPOINT_WIDTH = 0.3


def _layered_layout(graph: Graph):
    """Positions ``{node key: (x, y)}`` (one level of y per longest-path depth, levels ordered by two
    barycenter sweeps to cut crossings), each edge's route (a list of points) and the width in columns."""
    preds: dict[str, list[str]] = {n.key: [] for n in graph.nodes}
    succs: dict[str, list[str]] = {n.key: [] for n in graph.nodes}
    for e in graph.edges:
        preds[e.dst].append(e.src)
        succs[e.src].append(e.dst)
    # longest-path depth in a topological order (a collapsed group can come after a node that reads it)
    waiting = {key: len(p) for key, p in preds.items()}
    ready = [n.key for n in graph.nodes if not waiting[n.key]]
    depth: dict[str, int] = {key: 0 for key in ready}
    while ready:
        key = ready.pop()
        for nxt in succs[key]:
            depth[nxt] = max(depth.get(nxt, 0), depth[key] + 1)
            waiting[nxt] -= 1
            if not waiting[nxt]:
                ready.append(nxt)
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in graph.nodes:
        levels[depth[node.key]].append(node.key)
    spans = [depth[e.dst] - depth[e.src] - 1 for e in graph.edges]
    chains: list[list[str]] = [[] for _ in graph.edges]
    if sum(max(0, s) for s in spans) <= WAYPOINT_LIMIT:
        for i, e in enumerate(graph.edges):
            previous = e.src
            for d in range(depth[e.src] + 1, depth[e.dst]):
                key = f"~{i}.{d}"
                chains[i].append(key)
                levels[d].append(key)
                preds[key], succs[key] = [previous], []
                succs[previous].append(key)
                previous = key
            if chains[i]:
                succs[chains[i][-1]].append(e.dst)
                preds[e.dst] = [chains[i][-1] if p == e.src else p for p in preds[e.dst]]
                succs[e.src].remove(e.dst)
    rank = {key: i for level in levels for i, key in enumerate(level)}

    def sweep(order, neighbours):
        for level in order:
            keyed = [(sum(rank[m] for m in neighbours[k]) / len(neighbours[k]) if neighbours[k] else rank[k], k)
                     for k in level]
            level[:] = [k for _, k in sorted(keyed, key=lambda pair: pair[0])]
            for i, k in enumerate(level):
                rank[k] = i

    sweep(levels, preds)
    sweep(levels[::-1], succs)
    pos: dict[str, tuple[float, float]] = {}
    widest = 1.0
    for d, level in enumerate(levels):
        widths = [_WAYPOINT_WIDTH if k.startswith("~") else 1.0 for k in level]
        total = sum(widths)
        widest = max(widest, total)
        x = -total / 2
        for key, w in zip(level, widths):
            pos[key] = (x + w / 2, -float(d))
            x += w
    routes = [[pos[e.src]] + [pos[k] for k in chain] + [pos[e.dst]] for e, chain in zip(graph.edges, chains)]
    return {n.key: pos[n.key] for n in graph.nodes}, routes, len(levels), widest


# Inches per node column and per depth level of the matplotlib drawing.
_COLUMN_IN, _LEVEL_IN = 2.3, 1.0
# Agg draws at most 2**16 pixels a side; stay well below, and below a size that PNG viewers open quickly.
_MAX_PIXELS = 30000
_MAX_AREA_PIXELS = 60e6
# Node labels rendered smaller than this (in pixels) cannot be read and are left out of a PNG.
_MIN_TEXT_PIXELS = 4.0


def _render_matplotlib(graph: Graph, path: Path) -> None:
    matplotlib = _require_matplotlib()
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.figure import Figure

    pos, routes, n_levels, widest = _layered_layout(graph)
    width_in = max(4.0, widest * _COLUMN_IN)
    height_in = max(2.5, n_levels * _LEVEL_IN + 0.8)
    dpi = min(100.0, _MAX_PIXELS / max(width_in, height_in), math.sqrt(_MAX_AREA_PIXELS / (width_in * height_in)))
    vector = path.suffix.lower() == ".svg"
    font = 7 if max((len(n.lines) for n in graph.nodes), default=1) <= 3 else 6
    # text too small to read in the PNG is not drawn (drawing text is most of the time of a large graph)
    labels = vector or font * dpi / 72 >= _MIN_TEXT_PIXELS
    fig = Figure(figsize=(width_in, height_in))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(-widest / 2 - 0.3, widest / 2 + 0.3)  # room for the boxes around clusters
    ax.set_ylim(-n_levels + 0.3, 0.8)
    half_w, half_h = 0.44, 0.3

    for key, members in _cluster_members(graph).items():
        nesting = _cluster_depth(graph, key)
        pad = 0.06 * (4 - min(nesting, 3))  # outer boxes a little larger than the boxes inside them
        xs = [pos[k][0] for k in members]
        ys = [pos[k][1] for k in members]
        x0, x1 = min(xs) - half_w - pad, max(xs) + half_w + pad
        y0, y1 = min(ys) - half_h - pad, max(ys) + half_h + pad + 0.12
        ax.add_patch(_rectangle(x0, y0, x1 - x0, y1 - y0))
        if labels:
            ax.text(x0 + 0.03, y1 - 0.02, graph.clusters[key].label, fontsize=6, color="#666666", va="top")

    # edges leave a node's bottom and enter the next node's top
    lines = [[(r[0][0], r[0][1] - half_h)] + r[1:-1] + [(r[-1][0], r[-1][1] + half_h)] for r in routes]
    ax.add_collection(LineCollection(lines, colors="#777777", linewidths=0.6, zorder=1))
    if lines:
        heads = np.array([line[-1] for line in lines])
        ax.scatter(heads[:, 0], heads[:, 1], marker="v", s=8, color="#777777", zorder=2)
    if labels and len(graph.edges) <= EDGE_LABEL_LIMIT:
        for e, line in zip(graph.edges, lines):
            (x0, y0), (x1, y1) = line[0], line[1]
            ax.text(x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0), e.label, fontsize=5, color="#555555",
                    ha="center", va="center", zorder=3)

    boxes = [[(x - half_w, y - half_h), (x + half_w, y - half_h), (x + half_w, y + half_h), (x - half_w, y + half_h)]
             for x, y in (pos[n.key] for n in graph.nodes)]
    ax.add_collection(PolyCollection(boxes, facecolors=[n.fill for n in graph.nodes],
                                     edgecolors=["#000000" if n.output else "#444444" for n in graph.nodes],
                                     linewidths=[2.0 if n.output or n.stateful else 0.7 for n in graph.nodes],
                                     linestyles=["--" if n.group else "-" for n in graph.nodes], zorder=4))
    if labels:
        for node in graph.nodes:
            x, y = pos[node.key]
            ax.text(x, y, "\n".join(node.lines), fontsize=font, ha="center", va="center", zorder=5)
        fig.suptitle(graph.name, fontsize=9, y=1 - 0.15 / height_in, va="top")
    # SVG text stays text (small files, searchable) instead of one path per glyph
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path, dpi=dpi)


def _cluster_members(graph: Graph) -> dict[str, list[str]]:
    """The nodes inside each box, the boxes inside it included."""
    members: dict[str, list[str]] = {}
    for node in graph.nodes:
        c = node.cluster
        while c is not None:
            members.setdefault(c, []).append(node.key)
            c = graph.clusters[c].parent
    return members


def _cluster_depth(graph: Graph, key: str) -> int:
    depth = 0
    parent = graph.clusters[key].parent
    while parent is not None:
        depth += 1
        parent = graph.clusters[parent].parent
    return depth


def _rectangle(x, y, w, h):
    from matplotlib.patches import FancyBboxPatch
    return FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08", facecolor="#fafafa",
                          edgecolor="#999999", linestyle="--", linewidth=0.6, zorder=0)


# ------------------------------------------------------------------------------------------ weights

@dataclass
class _Panel:
    title: str
    values: np.ndarray  # rows x (matrix columns + vector columns), float64
    columns: list[str]
    vectors: int  # how many trailing columns are bias / initial-state vectors
    # the gates of one matrix share its columns: only the first gate's panel names them (drawing every
    # label takes most of the time of a large picture)
    label_columns: bool = True


@dataclass
class _PanelRow:
    title: str
    rows: list[str]
    panels: list[_Panel]


def _dense(value) -> np.ndarray:
    """A Matrix as a dense float64 array, a Vector as one column."""
    if hasattr(value, "shape"):
        return value.to_float().to_dense()
    return value.to_float().values.reshape(-1, 1)


def _panel(title: str, matrix, vectors: list[tuple[str, object]], columns: list[str],
           rows: slice | None = None) -> _Panel:
    parts = [_dense(matrix)] + [_dense(v) for _, v in vectors]
    if rows is not None:
        parts = [p[rows] for p in parts]
    return _Panel(title, np.hstack(parts), columns + [name for name, _ in vectors], len(vectors))


def _selected_layers(model, layers) -> tuple[list[int], bool]:
    count = len(model.layers)
    if layers is None:
        return list(range(count)), True
    if isinstance(layers, (int, str)):
        layers = [layers]
    chosen, readout = [], False
    for item in layers:
        if item == "readout":
            readout = True
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < count:
            chosen.append(int(item))
        else:
            raise OptionError(f"plot_weights: no layer {item!r}; the model has layers 0..{count - 1} and "
                              "'readout'")
    return sorted(set(chosen)), readout


def _weight_rows(model, layers) -> list[_PanelRow]:
    chosen, with_readout = _selected_layers(model, layers)
    layout = model.layout or []
    names = LayoutNames(layout)
    ops = model.module.ops
    stages = model.module.metadata.get("stages") or []

    def slot_labels(j: int) -> list[str]:
        if j >= len(layout):
            return [f"#{k}" for k in range(ops[j].dim)]
        entry = layout[j]
        if isinstance(entry, dict):  # a recurrent layer: its hidden units
            return names.units(entry, ops[j].dim)
        following = layout[j + 1] if j + 1 < len(layout) and not isinstance(layout[j + 1], dict) else None
        return names.slots(entry, following)

    rows: list[_PanelRow] = []
    infos = layer_infos(model)
    for i in chosen:
        info = infos[i]
        for k, op in enumerate(info.ops):
            j = info.layout_index + k
            inputs, own = slot_labels(j - 1), slot_labels(j)
            a = op.attrs
            if op.kind == "linstate":
                rows.append(_PanelRow(f"layer {i} · S linstate", own, [
                    _panel("B | bias", a["B"], [("bias", a["bias"])], inputs),
                    _panel("A | init", a["A"], [("init", a["init"])], own)]))
            elif op.kind == "linear":
                meta = stages[j] if j < len(stages) and isinstance(stages[j], dict) else {}
                rows.append(_PanelRow(f"layer {i} · {meta.get('stage', '')}{meta.get('index', '')} linear", own,
                                      [_panel("A | b", a["A"], [("b", a["b"])], inputs)]))
            elif op.opdef.gates:
                h = op.dim
                gates = op.opdef.gates
                panels = []
                for matrix, bias, columns in (("W_ih", "b_ih", inputs), ("W_hh", "b_hh", own)):
                    for g, gate in enumerate(gates):
                        title = f"{matrix}·{gate} | {bias}" if len(gates) > 1 else f"{matrix} | {bias}"
                        panel = _panel(title, a[matrix], [(bias, a[bias])], columns, slice(g * h, (g + 1) * h))
                        panel.label_columns = g == 0
                        panels.append(panel)
                initial = [(name, a[name]) for name in ("h0", "c0") if name in a and a[name].nnz]
                if initial:  # zero initial states carry no information: shown only when set
                    panels.append(_Panel("initial state", np.hstack([_dense(v) for _, v in initial]),
                                         [name for name, _ in initial], len(initial)))
                rows.append(_PanelRow(f"layer {i} · {op.kind} {info.stage}", own, panels))
            else:  # an op with its own parameter layout: one panel row per matrix, its vectors beside it
                for name, value in a.items():
                    if isinstance(value, Matrix) and value.nnz:
                        rows.append(_PanelRow(f"layer {i} · {op.kind} {name}",
                                              [f"#{r}" for r in range(value.shape[0])],
                                              [_panel(name, value, [], [f"#{c}" for c in range(value.shape[1])])]))
    if with_readout:
        j = len(ops) - 1
        readout = ops[j]
        rows.append(_PanelRow("readout", slot_labels(j), [
            _panel("A | b", readout.attrs["A"], [("b", readout.attrs["b"])], slot_labels(j - 1))]))
    return rows


def _symlog_norm(rows: list[_PanelRow]):
    """A colour scale centred at 0 on the magnitudes' logarithm, from the smallest to the largest non-zero
    weight; zero alone is white, so the smallest weights (1e-20 in standard mode) stay visible."""
    from matplotlib.colors import FuncNorm

    magnitudes = np.concatenate([np.abs(p.values).ravel() for r in rows for p in r.panels] or [np.zeros(1)])
    nonzero = magnitudes[magnitudes > 0]
    lo, hi = (float(nonzero.min()), float(nonzero.max())) if nonzero.size else (1.0, 1.0)
    gap = max(1.0, math.log10(hi / lo) / 4)  # decades between white (0) and the smallest weight's colour

    def forward(x):
        a = np.abs(x)
        return np.where(a > 0, np.sign(x) * (gap + np.log10(np.maximum(a, lo) / lo)), 0.0)

    def inverse(y):
        a = np.abs(y)
        return np.where(a > gap, np.sign(y) * lo * 10.0 ** (a - gap), y / gap * lo)

    norm = FuncNorm((forward, inverse), vmin=-hi, vmax=hi)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    step = max(1, len(decades) // 4)
    room = max(0.5, step / 2)  # decades a tick keeps from the extremes, so labels do not overlap
    inner = [10.0 ** d for d in decades[::step]
             if math.log10(lo) + room <= d <= math.log10(hi) - room]
    ticks = sorted({lo, hi, *inner})
    return norm, [-t for t in reversed(ticks)] + [0.0] + ticks


# Inches per matrix cell (at most), width of one label character at the label font size, label font size.
_CELL_IN, _CHAR_IN, _LABEL_PT = 0.16, 0.045, 5.5
_LABELLED_CELL_IN = 0.08  # smaller cells than this get no row/column labels
_TITLE_CHAR_IN = 0.05  # width of one character of a panel title


def plot_weights(model, path, layers=None) -> Path:
    """Draw the model's matrices as heatmaps into ``path`` (``.png`` or ``.svg``); returns the path.

    One row of panels per weighted op: per gate for LSTM (i, f, g, o) and GRU (r, z, n) — ``W_ih`` then
    ``W_hh`` — with the bias as the last column(s) after a thin line; ``B | bias`` and ``A | init`` for a
    linear RNN's LinState, ``A | b`` for its linear maps and the readout.  Rows and columns are labelled with
    the program values they hold (``model.layout``; ``-v`` for a unit read negated).  The colours are on a
    shared symmetric log scale (diverging, white at 0).  ``layers`` selects layer indices and/or
    ``"readout"`` (default: everything)."""
    from .model import Model

    if not isinstance(model, Model):
        raise TypeError(f"plot_weights: expected an lsrl.Model, got {type(model).__name__}")
    path = _check_path(path, "plot_weights")
    rows = _weight_rows(model, layers)
    if not rows:
        raise OptionError("plot_weights: layers=[] selects nothing to draw")
    _require_matplotlib()
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    norm, ticks = _symlog_norm(rows)
    largest = max(max(p.values.shape) for r in rows for p in r.panels)
    cell = min(_CELL_IN, 12.0 / largest)
    labelled = cell >= _LABELLED_CELL_IN
    row_label_in = (max(len(t) for r in rows for t in r.rows) * _CHAR_IN + 0.15) if labelled else 0.2
    # One image per row of panels (panels side by side, NaN columns between them): a few axes draw much
    # faster than one per panel.
    placed = []  # (row, top offset in inches, image, first column of each panel)
    top = 0.45
    width_in = 0.0
    for r in rows:
        blocks, starts, column = [], [], 0
        for p in r.panels:
            starts.append(column)
            width = p.values.shape[1]
            room = max(width * cell, len(p.title) * _TITLE_CHAR_IN) + 0.3  # the title may be wider
            gap = math.ceil(room / cell) - width
            blocks += [p.values, np.full((len(r.rows), gap), np.nan)]
            column += width + gap
        image = np.ma.masked_invalid(np.hstack(blocks[:-1]))  # the gaps are drawn transparent
        col_label_in = (max(len(t) for p in r.panels for t in p.columns) * _CHAR_IN + 0.1) if labelled else 0.1
        placed.append((r, top, image, starts))
        width_in = max(width_in, row_label_in + 0.25 + image.shape[1] * cell)
        top += 0.42 + len(r.rows) * cell + col_label_in
    width_in += 1.2  # the colour bar
    height_in = top + 0.1
    fig = Figure(figsize=(width_in, height_in))
    dpi = min(100.0, _MAX_PIXELS / max(width_in, height_in))
    # diverging, white exactly at 0 (the gap of the norm keeps every non-zero weight visibly tinted)
    cmap = LinearSegmentedColormap.from_list("lsrl_weights", ["#053061", "#4393c3", "#ffffff", "#d6604d",
                                                              "#67001f"]).with_extremes(bad=(1, 1, 1, 0))

    def axes(left: float, top_: float, w: float, h: float):
        return fig.add_axes((left / width_in, 1 - (top_ + h) / height_in, w / width_in, h / height_in))

    shown = None
    for r, row_top, image, starts in placed:
        fig.text(0.1 / width_in, 1 - row_top / height_in, r.title, fontsize=8, weight="bold", va="bottom")
        n_rows = len(r.rows)
        ax = axes(row_label_in + 0.25, row_top + 0.22, image.shape[1] * cell, n_rows * cell)
        shown = ax.imshow(image, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        for p, start in zip(r.panels, starts):
            width = p.values.shape[1]
            ax.add_patch(Rectangle((start - 0.5, -0.5), width, n_rows, fill=False, linewidth=0.6, clip_on=False))
            ax.text(start - 0.5 + width / 2, -0.6, p.title, fontsize=6, ha="center", va="bottom")
            if p.vectors < width:  # a thin line before the bias columns
                ax.vlines(start + width - p.vectors - 0.5, -0.5, n_rows - 0.5, color="#333333", linewidth=0.6)
            if labelled and p.label_columns:
                for j, label in enumerate(p.columns):
                    ax.text(start + j, n_rows - 0.3, label, rotation=90, fontsize=_LABEL_PT, ha="center", va="top")
        if labelled:
            for i, label in enumerate(r.rows):
                ax.text(-0.8, i, label, fontsize=_LABEL_PT, ha="right", va="center")
    bar = axes(width_in - 0.85, 0.45, 0.15, min(4.0, height_in - 0.6))
    colorbar = fig.colorbar(shown, cax=bar, ticks=ticks)
    colorbar.ax.set_yticklabels([f"{t:.0e}" if t else "0" for t in ticks], fontsize=6)
    colorbar.set_label("weight (symmetric log scale)", fontsize=6)
    fig.suptitle(f"weights of the {model.target}/{model.activations} model of @{model.module.name}",
                 fontsize=9, x=0.1 / width_in, ha="left", y=1 - 0.08 / height_in, va="top")
    try:
        fig.savefig(path, dpi=dpi)
    except OSError as e:
        raise _unwritable("plot_weights", path, e) from None
    return path
