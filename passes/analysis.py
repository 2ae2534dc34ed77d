r"""Analyses computed on demand and cached until a pass that does not preserve them changes the graph.

>>> from graphopt.ir import parse
>>> from graphopt.passes import AnalysisManager
>>> g = parse('graph @f(%x: f32[n]) {\n  %0: f32[n] = relu(%x)\n  %1: f32[n] = add(%0, %0)\n  return %1\n}')
>>> am = AnalysisManager()
>>> am.get("use-counts", g)["0"]
2
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from graphopt.errors import VerificationError
from graphopt.ir import ConcreteType, Graph, Node, TensorType
from graphopt.ir.types import resolve_shape

__all__ = ["AnalysisManager", "register_analysis", "known_analyses", "CostReport", "NodeCost"]

_ANALYSES: dict[str, Callable[[Graph], Any]] = {}


def register_analysis(name: str) -> Callable[[Callable[[Graph], Any]], Callable[[Graph], Any]]:
    """Register `fn(graph) -> result` as a named analysis."""

    def decorator(fn: Callable[[Graph], Any]) -> Callable[[Graph], Any]:
        _ANALYSES[name] = fn
        return fn

    return decorator


class AnalysisManager:
    """Caches analysis results per graph. A result is reused only while the graph's `generation` is the one it was
    computed at, so a change made anywhere — a pass, user code between runs — is never answered from a stale
    cache. `invalidate(preserved, graph)` after a pass re-stamps the analyses it declared preserved and drops the
    rest."""

    def __init__(self) -> None:
        # per graph (weakly held: a cache must not keep dead graphs alive, nor mistake a new graph for a freed
        # one that had the same id), analysis name -> (generation it was computed at, result)
        self._cache: weakref.WeakKeyDictionary[Graph, dict[str, tuple[int, Any]]] = weakref.WeakKeyDictionary()
        self.computed: dict[str, int] = {}  # how often each analysis really ran (for tests and reports)

    def get(self, name: str, graph: Graph) -> Any:
        entries = self._cache.setdefault(graph, {})
        hit = entries.get(name)
        if hit is None or hit[0] != graph.generation:
            if name not in _ANALYSES:
                raise KeyError(f"unknown analysis {name!r}; known: {', '.join(sorted(_ANALYSES))}")
            hit = (graph.generation, _ANALYSES[name](graph))
            entries[name] = hit
            self.computed[name] = self.computed.get(name, 0) + 1
        return hit[1]

    def invalidate(self, graph: Graph, preserved: Iterable[str] | str = ()) -> None:
        """After a pass changed `graph`: keep the analyses it preserved (valid at its new generation), drop the
        others. Other graphs need nothing: their generation tells."""
        entries = self._cache.get(graph)
        if not entries:
            return
        keep = set(_ANALYSES) if preserved == "all" else set(preserved)
        for name in list(entries):
            if name in keep:
                entries[name] = (graph.generation, entries[name][1])
            else:
                del entries[name]


def known_analyses() -> frozenset[str]:
    """The names `preserves` may use."""
    return frozenset(_ANALYSES)


@register_analysis("use-counts")
def use_counts(graph: Graph) -> dict[str, int]:
    """Value name -> number of uses (graph outputs count as one use each)."""
    values = [*graph.inputs, *graph.constants.values(), *(v for n in graph for v in n.outputs)]
    return {v.name: v.num_uses + v.output_refs for v in values}


@register_analysis("shapes")
def shapes(graph: Graph) -> dict[str, TensorType]:
    """Value name -> type, re-inferred from the graph inputs (declared types are not trusted)."""
    types: dict[str, TensorType] = {v.name: v.type for v in graph.inputs if v.type is not None}
    types.update({c.name: c.type for c in graph.constants.values() if c.type is not None})
    for node in graph:
        in_types = [types[v.name] for v in node.inputs]
        for out, t in zip(node.outputs, node.op.infer_types(in_types, node.attrs)):
            types[out.name] = t
    return types


@register_analysis("dominators")
def dominators(graph: Graph) -> dict[str, str]:
    """networkx key -> key of its immediate dominator, from a virtual source feeding every input/constant."""
    g = nx.DiGraph(graph.to_networkx())
    roots = [n for n, d in g.in_degree() if d == 0]
    g.add_edges_from(("<source>", r) for r in roots)
    idom = nx.immediate_dominators(g, "<source>")
    return {k: v for k, v in idom.items() if k != "<source>"}


@dataclass
class NodeCost:
    node: Node
    flops: int
    bytes: int


@dataclass
class CostReport:
    """Per-node flops and bytes moved (inputs read + outputs written) with symbols bound as given."""

    nodes: list[NodeCost] = field(default_factory=list)
    weight_bytes: int = 0

    @property
    def flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    @property
    def bytes(self) -> int:
        return sum(n.bytes for n in self.nodes)

    def by_op(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.node.op.name] = out.get(n.node.op.name, 0) + n.flops
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def cost(graph: Graph, bindings: Mapping[str, int] | None = None, default_dim: int = 1) -> CostReport:
    """Static cost of one run; unbound symbols count as `default_dim`."""
    bind = dict(bindings or {})

    def concrete(t: TensorType | None) -> ConcreteType:
        if t is None:
            raise VerificationError("cost needs types on every value; run infer-shapes first")
        for d in t.symbols:
            bind.setdefault(d, default_dim)
        return ConcreteType(t.dtype, resolve_shape(t.shape, bind))

    report = CostReport(weight_bytes=sum(c.const.nbytes for c in graph.constants.values()))  # type: ignore[union-attr]
    for node in graph:
        ins = [concrete(v.type) for v in node.inputs]
        outs = [concrete(v.type) for v in node.outputs]
        flops = node.op.flops(ins, outs, node.attrs)
        report.nodes.append(NodeCost(node, int(flops), sum(t.nbytes for t in ins + outs)))
    return report


register_analysis("cost")(cost)
