"""The one verifier: SSA, order, use lists, schemas and types.

Each failure is a VerificationError naming the rule, the node (with its origin) and what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphopt.errors import VerificationError

from .ops.registry import ShapeError
from .value import Use

if TYPE_CHECKING:
    from .graph import Graph
    from .node import Node

__all__ = ["verify"]


def _fail(rule: str, node: Node | None, problem: str, hint: str = "") -> VerificationError:
    where = f" at {node.describe()}" if node is not None else ""
    text = f"[{rule}]{where}: {problem}"
    if hint:
        text += f". {hint}"
    return VerificationError(text, node=node, rule=rule)


def verify(graph: Graph, *, check_types: bool = True) -> None:
    """Raise VerificationError on the first broken rule. O(nodes + edges)."""
    defined: set[int] = set()
    for v in graph.inputs:
        if v.producer is not None or v.is_constant or v.graph is not graph:
            raise _fail("ssa", None, f"graph input %{v.name} is not a plain input of this graph")
        if v.type is None:
            raise _fail("types", None, f"graph input %{v.name} has no type")
        defined.add(id(v))
    for name, c in graph.constants.items():
        if c.name != name or c.graph is not graph or c.const is None:
            raise _fail("ssa", None, f"constant table entry {name!r} is inconsistent")
        defined.add(id(c))
    count = 0
    for node in graph:
        count += 1
        _verify_node(graph, node, defined, check_types)
    if count != len(graph):
        raise _fail("order", None, f"graph holds {len(graph)} nodes by count but {count} in its list")
    for v in graph.outputs:
        if id(v) not in defined:
            raise _fail("ssa", None, f"graph output %{v.name} is not defined in this graph",
                        "set outputs to values produced in this graph")


def _verify_node(graph: Graph, node: Node, defined: set[int], check_types: bool) -> None:
    if node.graph is not graph:
        raise _fail("ownership", node, "the node's graph pointer is not this graph")
    reason = node.op.check_arity(len(node.inputs))
    if reason:
        raise _fail("schema", node, reason)
    try:
        node.op.check_attrs(dict(node.attrs))
    except TypeError as e:
        raise _fail("schema", node, str(e)) from None
    n_out = node.op.num_outputs(node.attrs, len(node.inputs))
    if len(node.outputs) != n_out:
        raise _fail("schema", node, f"{node.op.name} must have {n_out} outputs, has {len(node.outputs)}")
    for i, v in enumerate(node.inputs):
        if id(v) not in defined:
            if v.graph is not graph:
                raise _fail("ssa", node, f"input {i} (%{v.name}) is not a value of this graph",
                            "values must be created in the graph that uses them (see Graph.copy)")
            raise _fail("order", node, f"input {i} (%{v.name}) is used before it is defined",
                        "insert new nodes with graph.inserting_before(user)")
        if Use(node, i) not in v._uses:
            raise _fail("uses", node, f"%{v.name} does not list this node as a user",
                        "change inputs through Node.set_input / Node.inputs, not by hand")
    for i, out in enumerate(node.outputs):
        if out.producer is not node or out.index != i or out.graph is not graph:
            raise _fail("ssa", node, f"output %{out.name} does not point back at its producer")
        if id(out) in defined:
            raise _fail("ssa", node, f"%{out.name} is defined twice")
        for use in out._uses:
            if use.node.is_erased or use.node.inputs[use.index] is not out:
                raise _fail("uses", node, f"%{out.name} lists a stale use by {use.node.op.name}")
        defined.add(id(out))
    if check_types:
        _verify_types(node)


def _verify_types(node: Node) -> None:
    in_types = [v.type for v in node.inputs]
    for v, t in zip(node.inputs, in_types):
        if t is None:
            raise _fail("types", node, f"input %{v.name} has no type", "run the infer-shapes pass")
    try:
        inferred = node.op.infer_types(in_types, node.attrs)  # type: ignore[arg-type]
    except ShapeError as e:
        raise _fail("types", node, str(e)) from None
    for out, want in zip(node.outputs, inferred):
        if out.type is None:
            raise _fail("types", node, f"%{out.name} has no type", "run the infer-shapes pass")
        if out.type != want:
            raise _fail("types", node, f"%{out.name} is declared {out.type} but {node.op.name} gives {want}",
                        "run the infer-shapes pass after changing inputs")

