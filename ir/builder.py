"""One way to build IR: `b.op(name, inputs, **attrs)` and `b.const(data)` at the graph's insertion point.

Frontends (a converter per ATen or ONNX op), rewrite rules (`Rewriter` builds the replacement) and passes all build
through this API, so a rule written for a pass reads like a converter, and a helper written once (an activation
epilogue, a reshape of heads) serves all three. Subclasses add what their setting needs — a rewrite remembers
the nodes it created, the ONNX importer folds shape arithmetic as it goes — without changing the call.

>>> from graphopt.ir import Graph, TensorType, DType
>>> g = Graph("g")
>>> b = Builder(g)
>>> x = g.add_input("x", TensorType(DType.F32, ("n", 4)))
>>> y = b.op("relu", [b.op("mul", [x, b.const(2.0, DType.F32)])])
>>> [n.op.name for n in b.created], str(y.type)
(['mul', 'relu'], 'f32[n,4]')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .dtypes import DType
from .graph import Graph
from .node import Node
from .types import TensorType
from .value import Value

__all__ = ["Builder"]


class Builder:
    """Adds nodes and constants to `graph` at its insertion point; `created` lists the nodes, in order."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.created: list[Node] = []

    def op(self, op: str, inputs: Sequence[Value], *, known_type: TensorType | None = None, **attrs: Any) -> Any:
        """Add a node applying `op`; its output value (a tuple of them for multi-output ops). Types are inferred,
        attributes checked against the op's schema (a misspelled one names the closest).

        `known_type` skips inference for a one-output op whose result type the caller already holds — a rewrite
        rebuilding a value of the same type; inference is most of a node's cost, and a rule that fires at
        every layer pays it per layer. A wrong one is caught by `Graph.verify`, not here."""
        types = None if known_type is None else [known_type]
        node = self.graph.add_node(op, list(inputs), attrs, types=types)
        self.created.append(node)
        return node.outputs[0] if len(node.outputs) == 1 else node.outputs

    def const(self, data: Any, dtype: DType | None = None, *, name: str | None = None) -> Value:
        """Add a constant (not copied; the graph keeps a read-only view)."""
        return self.graph.add_constant(np.asarray(data, dtype=dtype.numpy if dtype is not None else None),
                                       name=name)
