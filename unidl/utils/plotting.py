"""``plot_model`` / ``model_to_dot``: a model's layer graph as a Graphviz picture.

unidl writes the DOT text itself (:func:`dot_source`, no dependency); turning
it into a picture needs the ``pydot`` package and Graphviz's ``dot`` program:
``pip install pydot`` and ``apt-get install graphviz`` (or ``brew install
graphviz``, ``conda install graphviz``). Without them ``plot_model`` raises an
ImportError saying which is missing.

What is drawn, as in Keras 3: a ``Sequential`` model as its chain of layers,
a functional model as its graph (``Input`` boxes included), a subclassed
model as one box (its wiring lives in Python code, not in a graph).
``expand_nested=True`` draws nested models as dashed clusters of their layers.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from html import escape
from typing import Any

__all__ = ["plot_model", "model_to_dot", "dot_source", "layer_graph"]


# ------------------------------------------------------------------ the graph

@dataclass
class GraphNode:
    """One box: a layer (or an unexpanded model); ``cluster`` is the chain of nested models it sits in."""

    key: str
    layer: Any
    cluster: tuple = ()


@dataclass
class LayerGraph:
    """Boxes and arrows of a model; ``clusters`` maps a cluster path to the model it stands for."""

    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    clusters: dict[tuple, Any] = field(default_factory=dict)


def _is_model(layer: Any) -> bool:
    return getattr(layer, "_kind", "") == "model"


def _is_input(layer: Any) -> bool:
    return type(layer).__name__ == "InputLayer"


def _graph_of(model: Any) -> Any:
    return getattr(model, "graph", None)


def _is_sequential(model: Any) -> bool:
    return _is_model(model) and _graph_of(model) is None and hasattr(model, "_layers")


def _expandable(layer: Any) -> bool:
    return _is_model(layer) and (_graph_of(layer) is not None or _is_sequential(layer)) and bool(layer.layers)


def layer_graph(model: Any, expand_nested: bool = False) -> LayerGraph:
    """The boxes (layers) and arrows (which layer feeds which) of a built model.

    Box keys are stable strings ("n0", "n1", ...), in the model's layer order.
    """
    graph = LayerGraph()
    keys: dict[tuple, str] = {}

    def key_of(layer: Any, cluster: tuple) -> str:
        k = (id(layer), cluster)
        if k not in keys:
            keys[k] = f"n{len(keys)}"
            graph.nodes.append(GraphNode(keys[k], layer, cluster))
        return keys[k]

    def add_edge(src: str, dst: str) -> None:
        if (src, dst) not in graph.edges:
            graph.edges.append((src, dst))

    def connect(sources: list[str], targets: list[str]) -> None:
        for src in sources:
            for dst in targets:
                add_edge(src, dst)

    def expand(m: Any, cluster: tuple) -> tuple[list[list[str]], list[str]]:
        """Add ``m``'s layers; return the keys each model input enters at, and those its outputs leave from."""
        if cluster:
            graph.clusters[cluster] = m
        if _is_sequential(m):
            entries: list[list[str]] | None = None
            exits: list[str] = []
            for layer in m.layers:
                ins, outs = place(layer, cluster)
                if entries is None:
                    entries = ins
                else:
                    connect(exits, [k for keys in ins for k in keys])
                exits = outs
            return entries or [], exits
        g = _graph_of(m)
        produced: dict[int, list[str]] = {}  # id(symbolic tensor) -> the boxes producing it
        for node in g.nodes:
            layer = node.layer
            if _is_input(layer):
                outs = [key_of(layer, cluster)]
            else:
                ins, outs = place(layer, cluster)
                inputs = _flat(node.inputs)
                for i, t in enumerate(inputs):
                    # A nested model's i-th input enters at its i-th entry; a layer takes all inputs in one box.
                    targets = ins[i] if len(ins) == len(inputs) else [k for keys in ins for k in keys]
                    connect(produced.get(id(t), []), targets)
            for t in _flat(node.outputs):
                produced[id(t)] = outs
        entries = [produced.get(id(t), []) for t in g.inputs]
        exits = [k for t in g.outputs for k in produced.get(id(t), [])]
        return entries, exits

    def place(layer: Any, cluster: tuple) -> tuple[list[list[str]], list[str]]:
        if expand_nested and _expandable(layer):
            return expand(layer, cluster + (layer.name,))
        k = key_of(layer, cluster)
        return [[k]], [k]

    if _is_sequential(model) or _graph_of(model) is not None:
        expand(model, ())
    else:  # subclassed: one box, as Keras draws it
        key_of(model, ())
    return graph


def _flat(structure: Any) -> list:
    if structure is None:
        return []
    if isinstance(structure, dict):
        return [x for k in sorted(structure) for x in _flat(structure[k])]
    if isinstance(structure, (list, tuple)):
        return [x for item in structure for x in _flat(item)]
    return [structure]


# ------------------------------------------------------------------ DOT text

def _shape_text(shape: Any) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return str(tuple(shape))


def _activation_name(layer: Any) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    from .. import activations  # here: unidl.utils imports no unidl module at import time
    try:
        return str(activations.serialize(activation))
    except Exception:  # a user's callable without a registered name
        return getattr(activation, "__name__", type(activation).__name__)


def _output_dtype(model: Any) -> str:
    backend = getattr(model, "backend", None)
    policy = getattr(model, "dtype_policy", None)
    if policy is not None and getattr(policy, "mixed", False):
        return str(policy.compute_dtype)
    return str(backend.dtype) if backend is not None else "?"


def _label(layer: Any, model: Any, show_shapes: bool, show_dtype: bool, show_layer_names: bool,
           show_layer_activations: bool, show_trainable: bool) -> str:
    """An HTML-like Graphviz label in Keras 3's layout: a dark title row, then detail cells."""
    class_name = type(layer).__name__
    cells = []
    if show_shapes:
        if not _is_input(layer):
            cells.append(f'<td bgcolor="white"><font point-size="14">Input shape: '
                         f'<b>{escape(_shape_text(getattr(layer, "input_shape", None)))}</b></font></td>')
        shape = getattr(layer, "output_shape", None)
        if _is_input(layer) and shape is None and getattr(layer, "shape", None) is not None:
            shape = (None, *layer.shape)  # an Input declares one sample's shape
        cells.append(f'<td bgcolor="white"><font point-size="14">Output shape: '
                     f'<b>{escape(_shape_text(shape))}</b></font></td>')
    if show_dtype:
        cells.append(f'<td bgcolor="white"><font point-size="14">Output dtype: '
                     f'<b>{escape(_output_dtype(model))}</b></font></td>')
    if show_trainable and getattr(layer, "weights", None):
        if layer.trainable:
            cells.append('<td bgcolor="forestgreen"><font point-size="14" color="white"><b>Trainable</b></font></td>')
        else:
            cells.append('<td bgcolor="firebrick"><font point-size="14" color="white"><b>Non-trainable</b></font>'
                         '</td>')
    span = max(1, len(cells))
    title = (f"<b>{escape(str(layer.name))}</b> ({escape(class_name)})" if show_layer_names and layer.name
             else f"<b>{escape(class_name)}</b>")
    rows = [f'<tr><td colspan="{span}" bgcolor="black"><font point-size="16" color="white">{title}</font></td></tr>']
    activation = _activation_name(layer) if show_layer_activations else None
    if activation is not None:
        rows.append(f'<tr><td bgcolor="white" colspan="{span}"><font point-size="14">Activation: '
                    f'<b>{escape(activation)}</b></font></td></tr>')
    if cells:
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return '<<table border="0" cellborder="1" bgcolor="black" cellpadding="10">' + "".join(rows) + "</table>>"


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_source(model: Any, show_shapes: bool = False, show_dtype: bool = False, show_layer_names: bool = True,
               rankdir: str = "TB", expand_nested: bool = False, dpi: int = 200,
               show_layer_activations: bool = False, show_trainable: bool = False, splines: str = "ortho") -> str:
    """The model's layer graph as Graphviz DOT text (what :func:`model_to_dot` parses; needs nothing).

    ``dot -Tpng -o model.png`` renders it, as does any Graphviz viewer. Arguments as in :func:`plot_model`.
    """
    _check_model(model)
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"rankdir must be 'TB', 'LR', 'BT' or 'RL', got rankdir={rankdir!r}")
    graph = layer_graph(model, expand_nested)
    options = dict(show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                   show_layer_activations=show_layer_activations, show_trainable=show_trainable)
    lines = [f"digraph {_quote(model.name or 'model')} {{",
             f"  graph [rankdir={rankdir}, concentrate=true, dpi={int(dpi)}, splines={splines}];",
             '  node [shape=record, fontname="Helvetica", border=0, margin=0];']

    def node_line(node: GraphNode, indent: str) -> str:
        return f"{indent}{node.key} [label={_label(node.layer, model, **options)}];"

    # Nodes grouped by cluster, nested clusters written inside their parent.
    def write_cluster(path: tuple, indent: str) -> None:
        for node in graph.nodes:
            if node.cluster == path:
                lines.append(node_line(node, indent))
        children = sorted({n.cluster[:len(path) + 1] for n in graph.nodes
                           if len(n.cluster) > len(path) and n.cluster[:len(path)] == path},
                          key=lambda c: [n.cluster[:len(c)] for n in graph.nodes].index(c))
        for child in children:
            name = "cluster_" + "_".join(str(p) for p in child)
            lines.append(f"{indent}subgraph {_quote(name)} {{")
            lines.append(f"{indent}  graph [label={_quote(child[-1])}, labeljust=l, style=dashed];")
            write_cluster(child, indent + "  ")
            lines.append(f"{indent}}}")

    write_cluster((), "  ")
    lines += [f"  {src} -> {dst} [penwidth=2];" for src, dst in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _check_model(model: Any) -> None:
    if not _is_model(model):
        raise TypeError(f"expected a unidl model (Sequential or Model), got {type(model).__name__}")
    if not getattr(model, "built", False):
        raise ValueError(f"model {model.name!r} has not been built yet: give the first layer input_shape=(...), "
                         "start with layers.Input(shape), or call model.build((None, ...)) / fit() first")


# ------------------------------------------------------------------ pydot + Graphviz

PYDOT_MISSING = ("You must install pydot (`pip install pydot`) and Graphviz (the `dot` program: `apt-get install "
                 "graphviz`, `brew install graphviz` or `conda install graphviz`; see https://graphviz.org/download/) "
                 "for {what} to work. unidl.utils.dot_source(model) gives the DOT text without either.")
GRAPHVIZ_MISSING = ("pydot is installed, but Graphviz's `dot` program was not found: install Graphviz (`apt-get "
                    "install graphviz`, `brew install graphviz` or `conda install graphviz`; see "
                    "https://graphviz.org/download/) and make sure `dot` is on PATH, for {what} to work.")


def _import_pydot(what: str):
    try:
        import pydot
    except ImportError as exc:
        raise ImportError(PYDOT_MISSING.format(what=what)) from exc
    return pydot


def _check_graphviz(pydot, what: str) -> None:
    try:
        pydot.Dot.create(pydot.Dot())  # runs `dot` once: fails without Graphviz
    except (OSError, FileNotFoundError, getattr(pydot, "PydotException", OSError)) as exc:
        raise ImportError(GRAPHVIZ_MISSING.format(what=what)) from exc


def model_to_dot(model: Any, show_shapes: bool = False, show_dtype: bool = False, show_layer_names: bool = True,
                 rankdir: str = "TB", expand_nested: bool = False, dpi: int = 200, subgraph: bool = False,
                 show_layer_activations: bool = False, show_trainable: bool = False, splines: str = "ortho",
                 **kwargs):
    """The model's layer graph as a ``pydot.Dot`` (needs ``pip install pydot``).

    Arguments as in :func:`plot_model`; ``subgraph`` is accepted for Keras
    compatibility and must be False.
    """
    if kwargs.pop("layer_range", None) is not None:
        raise ValueError("Argument `layer_range` is no longer supported.")
    if kwargs:
        raise ValueError(f"Unrecognized keyword arguments: {kwargs}")
    if subgraph:
        raise ValueError("model_to_dot(subgraph=True) is not supported; use expand_nested=True to draw nested "
                         "models as clusters")
    text = dot_source(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                      rankdir=rankdir, expand_nested=expand_nested, dpi=dpi,
                      show_layer_activations=show_layer_activations, show_trainable=show_trainable, splines=splines)
    pydot = _import_pydot("model_to_dot")
    graphs = pydot.graph_from_dot_data(text)
    if not graphs:
        raise RuntimeError(f"pydot could not parse the DOT text unidl wrote for model {model.name!r}:\n{text}")
    return graphs[0]


def plot_model(model: Any, to_file: str | os.PathLike = "model.png", show_shapes: bool = False,
               show_dtype: bool = False, show_layer_names: bool = False, rankdir: str = "TB",
               expand_nested: bool = False, dpi: int = 200, show_layer_activations: bool = False,
               show_trainable: bool = False, splines: str = "ortho", **kwargs):
    """Draw the model's layer graph into ``to_file`` (png, svg, pdf... by its suffix), as Keras does.

    Args:
        model: a built unidl model.
        to_file: the picture's path; its suffix is the format (no suffix: png).
        show_shapes: show each layer's input and output shapes.
        show_dtype: show the compute dtype (the compiled backend's; "?" before compile).
        show_layer_names: title boxes "name (Class)" instead of "Class" (Keras 3's default, False).
        rankdir: "TB" (top to bottom) or "LR" (left to right), "BT", "RL".
        expand_nested: draw nested models as clusters of their layers.
        dpi: the picture's resolution.
        show_layer_activations: show the activation of layers that have one.
        show_trainable: mark each layer with weights as trainable or not.
        splines: how Graphviz draws the arrows ("ortho", "curved", "polyline", "spline", "line").

    Returns:
        an ``IPython.display.Image`` when IPython is loaded (a notebook shows
        it), else None.

    Raises:
        ImportError: pydot or Graphviz is missing (the message says what to install).
    """
    _check_model(model)
    pydot = _import_pydot("plot_model")
    _check_graphviz(pydot, "plot_model")
    dot = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                       rankdir=rankdir, expand_nested=expand_nested, dpi=dpi,
                       show_layer_activations=show_layer_activations, show_trainable=show_trainable,
                       splines=splines, **kwargs)
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1][1:] or "png"
    dot.write(to_file, format=extension)
    if extension != "pdf" and "IPython" in sys.modules:
        try:
            from IPython import display
        except ImportError:
            return None
        return display.Image(filename=to_file)
    return None
