"""fold-constants: evaluate nodes whose inputs are all constants with the reference kernels."""

from __future__ import annotations

from graphopt.ir import Graph, Node, Value
from graphopt.ir.interpreter import evaluate, resolve_attrs
from graphopt.ir.node import attrs_key

from .context import PassContext
from .registry import PassResult, register_pass

__all__ = ["fold_constants"]

# A fold whose result outgrows its inputs (expand/tile of a weight, a `full` of zeros, a broadcast) stores what the
# kernels compute for free at run time — batch-many copies of a weight hide it from fuse-linear, too. Up to this
# many elements it is folded anyway (shape arithmetic, small masks).
_SMALL = 4096


@register_pass("fold-constants")
def fold_constants(graph: Graph, ctx: PassContext, *, max_size: int = 1 << 24) -> PassResult:
    """Replace pure nodes with all-constant inputs by their results, up to max-size elements per result.

    One forward sweep (a folded result feeds folding further down), O(nodes) plus the kernels' work.
    Results are computed by the same kernels the reference interpreter uses, so folding is exact.
    """
    folded = 0
    # the same op on the same constants folds to the same constant: a parameter shared by every layer (ALBERT)
    # is transposed once per use in the export, and must stay one weight, not one copy per layer
    done = _FoldTable()
    for node in graph:
        if not node.op.pure or not all(v.is_constant for v in node.inputs):
            continue
        key = (node.op, attrs_key(node.attrs), tuple(id(v) for v in node.inputs))
        earlier = done.get(key)
        if earlier and all(o.type == d.type and d.graph is graph for o, d in zip(node.outputs, earlier)):
            inputs = list(node.inputs)
            for out, same in zip(node.outputs, earlier):
                out.replace_all_uses_with(same)
            graph.remove_node(node)
            done.drop_dead(graph, inputs)
            folded += 1
            continue
        types = [o.type for o in node.outputs]
        if any(t is None or not t.is_static or t.numel() > max_size for t in types):
            continue
        out_size = sum(t.numel() for t in types)
        if out_size > _SMALL and out_size > sum(v.const.size for v in node.inputs):  # type: ignore[union-attr]
            continue  # cheap to compute, costly to store: a [batch, heads, seq, seq] zero mask stays a `full`
        try:
            attrs = resolve_attrs(node, {})
        except KeyError:
            continue  # symbolic attributes: the size is only known at run time
        results = evaluate(node, [v.const for v in node.inputs], attrs)  # type: ignore[misc]
        inputs = list(node.inputs)
        made = tuple(graph.add_constant(data, graph.fresh_name(_folded_name(node, out)))
                     for out, data in zip(node.outputs, results))
        for out, c in zip(node.outputs, made):
            out.replace_all_uses_with(c)
        done.put(key, inputs, made)
        graph.remove_node(node)
        done.drop_dead(graph, inputs)
        folded += 1
    return PassResult(changed=folded > 0, stats={"folded": folded})


def _folded_name(node: Node, out: Value) -> str:
    """A folded weight is named after the parameter it came from (`query.weight.folded`), not `c_17`."""
    sources = [v for v in node.inputs if v.const is not None and v.const.size > 1]
    return sources[0].name.split(".folded")[0] + ".folded" if sources else out.name + "_folded"


class _FoldTable:
    """Folded results by (op, attributes, input ids). An entry goes when one of its inputs is removed, so a new
    constant that reuses a freed id never finds another's result — and no removed weight is kept alive."""

    def __init__(self) -> None:
        self.results: dict[tuple[object, ...], tuple[Value, ...]] = {}
        self.by_input: dict[int, list[tuple[object, ...]]] = {}

    def get(self, key: tuple[object, ...]) -> tuple[Value, ...]:
        return self.results.get(key, ())

    def put(self, key: tuple[object, ...], inputs: list[Value], made: tuple[Value, ...]) -> None:
        self.results[key] = made
        for v in inputs:
            self.by_input.setdefault(id(v), []).append(key)

    def drop_dead(self, graph: Graph, inputs: list[Value]) -> None:
        """Remove the inputs nobody reads any more, and forget the folds that used them."""
        for c in inputs:
            if c.is_dead and c.name in graph.constants:
                graph.remove_constant(c)
                for key in self.by_input.pop(id(c), ()):
                    self.results.pop(key, None)
