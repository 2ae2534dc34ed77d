r"""Structural equality of graphs, up to value names and node order (alpha-equivalence).

Every value gets an interned structural id bottom-up (op, attributes, types, input ids; constants by
content), so comparing two graphs is O(nodes) and exact, with no hashing collisions.

>>> from graphopt.ir import parse
>>> a = parse('graph @f(%x: f32[2]) {\n  %a: f32[2] = relu(%x)\n  return %a\n}')
>>> b = parse('graph @f(%y: f32[2]) {\n  %0: f32[2] = relu(%y)\n  return %0\n}')
>>> graph_equal(a, b)
True
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["graph_equal", "assert_graph_equal", "structural_ids"]


def structural_ids(graph: Graph, table: dict[Any, int]) -> tuple[list[int], Counter[int]]:
    """Structural ids of the graph outputs and the multiset of node ids, interned in `table`."""

    def intern(key: Any) -> int:
        return table.setdefault(key, len(table))

    ids: dict[int, int] = {}
    for i, v in enumerate(graph.inputs):
        ids[id(v)] = intern(("input", i, v.type))
    for c in graph.constants.values():
        assert c.const is not None
        ids[id(c)] = intern(("const", c.type, c.const.tobytes()))
    nodes: Counter[int] = Counter()
    for node in graph:
        key = (node.op.name, tuple(node.attrs.items()), tuple(ids[id(v)] for v in node.inputs),
               tuple(o.type for o in node.outputs))
        nid = intern(key)
        nodes[nid] += 1
        for i, out in enumerate(node.outputs):
            ids[id(out)] = intern(("out", nid, i))
    return [ids[id(v)] for v in graph.outputs], nodes


def graph_equal(a: Graph, b: Graph, *, names: bool = False) -> bool:
    """True if `a` and `b` compute the same expression DAG with the same types (and names, if asked)."""
    table: dict[Any, int] = {}
    if len(a.inputs) != len(b.inputs) or len(a) != len(b) or len(a.constants) != len(b.constants):
        return False
    if structural_ids(a, table) != structural_ids(b, table):
        return False
    if names:
        return str(a) == str(b)
    return True


def assert_graph_equal(actual: Graph, expected: Graph, *, names: bool = False) -> None:
    """AssertionError with a unified diff of the two text forms unless the graphs are structurally equal."""
    if graph_equal(actual, expected, names=names):
        return
    diff = difflib.unified_diff(str(expected).splitlines(), str(actual).splitlines(), "expected", "actual",
                                lineterm="")
    raise AssertionError("graphs differ structurally:\n" + "\n".join(diff))
