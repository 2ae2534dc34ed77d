r"""Graph algorithms and drawing: the IR as a networkx graph, and Graphviz DOT text.

>>> from graphopt.ir import parse
>>> g = parse('graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x)\n  return %0\n}')
>>> sorted(g.to_networkx().nodes(data="kind"))
[('%0', 'node'), ('%x', 'input'), ('return', 'output')]
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .lazy import lazy_module
from .printer import format_name

if TYPE_CHECKING:
    import networkx as nx

    from .graph import Graph
    from .node import Node
    from .value import Value
else:
    nx = lazy_module("networkx")  # 0.2 s to import; needed only when a graph is converted

__all__ = ["to_networkx", "to_dot", "node_key"]


def node_key(node: Node) -> str:
    """The networkx key of a node: its first output's name with the % sigil."""
    return format_name(node.outputs[0]) if node.outputs else f"node@{id(node):x}"


def _source_key(v: Value) -> str:
    if v.producer is not None:
        return node_key(v.producer)
    return format_name(v)


def to_networkx(graph: Graph) -> nx.MultiDiGraph:
    """A MultiDiGraph: one vertex per node, graph input and constant, plus `return`; one edge per use.

    Vertex attributes: kind (node/input/const/output), op, node (the Node). Edge attributes: value, index.
    """
    g = nx.MultiDiGraph(name=graph.name)
    for v in graph.inputs:
        g.add_node(format_name(v), kind="input", type=str(v.type))
    for c in graph.constants.values():
        g.add_node(format_name(c), kind="const", type=str(c.type))
    for node in graph:
        key = node_key(node)
        g.add_node(key, kind="node", op=node.op.name, node=node)
        for i, v in enumerate(node.inputs):
            g.add_edge(_source_key(v), key, value=v.name, index=i)
    g.add_node("return", kind="output")
    for i, v in enumerate(graph.outputs):
        g.add_edge(_source_key(v), "return", value=v.name, index=i)
    return g


def to_dot(graph: Graph) -> str:
    """Graphviz DOT source (render with `dot -Tsvg`). Constants are folded into their users' labels."""
    q = json.dumps
    lines = [f"digraph {q(graph.name)} {{", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    for v in graph.inputs:
        lines.append(f"  {q(format_name(v))} [shape=ellipse, label={q(format_name(v) + ': ' + str(v.type))}];")
    for node in graph:
        consts = [f"{format_name(v)}: {v.type}" for v in node.inputs if v.is_constant]
        label = node.op.name + "".join("\n" + c for c in consts)
        lines.append(f"  {q(node_key(node))} [label={q(label)}];")
        for v in node.inputs:
            if not v.is_constant:
                lines.append(f"  {q(_source_key(v))} -> {q(node_key(node))} [label={q(str(v.type))}];")
    lines.append('  "return" [shape=ellipse];')
    for v in graph.outputs:
        lines.append(f"  {q(_source_key(v))} -> \"return\";")
    lines.append("}")
    return "\n".join(lines) + "\n"
