"""cse: merge nodes that compute the same thing, and identical small constants."""

from __future__ import annotations

from typing import Any

from graphopt.ir import Graph, Value
from graphopt.ir.node import attrs_key

from .context import PassContext
from .registry import PassResult, register_pass

__all__ = ["cse"]


@register_pass("cse")
def cse(graph: Graph, ctx: PassContext, *, max_const_size: int = 4096) -> PassResult:
    """Common-subexpression elimination over pure nodes; constants up to max-const-size elements are merged
    by content. One forward sweep with a hash table, O(nodes)."""
    merged_consts = 0
    by_content: dict[tuple[Any, ...], Value] = {}
    for c in list(graph.constants.values()):
        assert c.const is not None
        if c.const.size > max_const_size:
            continue
        key = (c.type, c.const.tobytes())
        first = by_content.setdefault(key, c)
        if first is not c:
            c.replace_all_uses_with(first)
            graph.remove_constant(c)
            merged_consts += 1
    seen: dict[tuple[Any, ...], list[Value]] = {}
    merged = 0
    for node in graph:
        if not node.op.pure:
            continue
        ids = [id(v) for v in node.inputs]
        if node.op.commutative:
            ids.sort()
        nkey: tuple[Any, ...] = (node.op, attrs_key(node.attrs), tuple(ids), tuple(o.type for o in node.outputs))
        first = seen.get(nkey)
        if first is None:
            seen[nkey] = list(node.outputs)
            continue
        for old, new in zip(node.outputs, first):
            old.replace_all_uses_with(new)
        graph.remove_node(node)
        merged += 1
    return PassResult(changed=bool(merged or merged_consts),
                      stats={"nodes-merged": merged, "constants-merged": merged_consts})
