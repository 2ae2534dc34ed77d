"""infer-shapes: recompute every value's type from the graph inputs."""

from __future__ import annotations

from graphopt.errors import VerificationError
from graphopt.ir import Graph, ShapeError

from .context import PassContext
from .registry import PassResult, register_pass

__all__ = ["infer_shapes"]


@register_pass("infer-shapes", preserves=("use-counts", "dominators"))
def infer_shapes(graph: Graph, ctx: PassContext) -> PassResult:
    """Fill in missing types and refine stale ones by running each op's type inference in order, and the attribute
    defaults that depend on them (a conv's strides). O(nodes)."""
    updated = 0
    for node in graph:
        in_types = [v.type for v in node.inputs]
        if any(t is None for t in in_types):
            missing = next(v for v in node.inputs if v.type is None)
            raise VerificationError(f"cannot infer types at {node.describe()}: %{missing.name} has no type "
                                    "(is it a graph input without a type?)", node=node, rule="types")
        if node.op.complete is not None:  # defaults that needed the input types (a node parsed with `?` types)
            filled = node.op.complete_attrs(in_types, dict(node.attrs))
            if filled != dict(node.attrs):
                node.attrs = filled
                updated += 1
        try:
            types = node.op.infer_types(in_types, node.attrs)  # type: ignore[arg-type]
        except ShapeError as e:
            raise VerificationError(f"type inference failed at {node.describe()}: {e}", node=node,
                                    rule="types") from None
        for out, t in zip(node.outputs, types):
            if out.type != t:
                out.type = t
                updated += 1
    return PassResult(changed=updated > 0, stats={"types-updated": updated})
