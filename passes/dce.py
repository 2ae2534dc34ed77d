"""dce: remove pure nodes and constants whose results nobody reads."""

from __future__ import annotations

from graphopt.ir import Graph

from .context import PassContext
from .registry import PassResult, register_pass

__all__ = ["dce"]


@register_pass("dce", preserves=())
def dce(graph: Graph, ctx: PassContext) -> PassResult:
    """Dead-code elimination: drop unread pure nodes and unused constants. One reverse sweep, O(nodes)."""
    removed = 0
    for node in reversed(graph.nodes):  # users before producers, so chains die in one sweep
        if node.op.pure and all(v.is_dead for v in node.outputs):
            graph.remove_node(node)
            removed += 1
    dead_consts = [c for c in graph.constants.values() if c.is_dead]
    for c in dead_consts:
        graph.remove_constant(c)
    return PassResult(changed=bool(removed or dead_consts),
                      stats={"nodes-removed": removed, "constants-removed": len(dead_consts)})
