"""Values: the edges of the graph. A Value is produced by at most one node and used by any number.

Use lists live here and only IR methods touch them: setting a node's input re-links the uses, so
`replace_all_uses_with` costs O(uses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .types import TensorType

if TYPE_CHECKING:
    from .graph import Graph
    from .node import Node

__all__ = ["Value", "Use"]


class Use(NamedTuple):
    """`node.inputs[index] is value`."""

    node: Node
    index: int  # type: ignore[assignment]  # (shadows tuple.index: a Use is read by name)


class Value:
    """A tensor in the graph: a graph input, a constant (`const` holds its data) or a node output.

    Values compare by identity. `type` may be None until shape inference fills it in.
    """

    __slots__ = ("name", "type", "producer", "index", "const", "graph", "_uses", "_output_refs")

    def __init__(
        self,
        name: str,
        type: TensorType | None = None,
        *,
        producer: Node | None = None,
        index: int = 0,
        const: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.producer = producer
        self.index = index
        self.const = const
        self.graph: Graph | None = None
        # dict as an ordered set: O(1) add/remove, deterministic iteration order.
        self._uses: dict[Use, None] = {}
        # How many slots of graph.outputs hold this value.
        self._output_refs = 0

    # -- queries ---------------------------------------------------------------------------------------
    @property
    def uses(self) -> list[Use]:
        """Every (node, input_index) reading this value, in the order they were linked."""
        return list(self._uses)

    @property
    def users(self) -> list[Node]:
        """The distinct nodes reading this value."""
        if len(self._uses) == 1:  # the common case, without building a dict (rewrite drivers ask at every node)
            return [next(iter(self._uses)).node]
        return list(dict.fromkeys(u.node for u in self._uses))

    @property
    def num_uses(self) -> int:
        return len(self._uses)

    @property
    def is_constant(self) -> bool:
        return self.const is not None

    @property
    def is_graph_input(self) -> bool:
        return self.producer is None and self.const is None

    @property
    def is_graph_output(self) -> bool:
        return self._output_refs > 0

    @property
    def output_refs(self) -> int:
        """How many slots of `graph.outputs` hold this value."""
        return self._output_refs

    @property
    def is_dead(self) -> bool:
        """Nothing reads it: no uses and not a graph output."""
        return not self._uses and self._output_refs == 0

    # -- mutation --------------------------------------------------------------------------------------
    def replace_all_uses_with(self, other: Value, *, include_graph_outputs: bool = True) -> None:
        """Make every user of `self` read `other` instead. O(uses)."""
        if other is self:
            return
        for use in list(self._uses):
            use.node.set_input(use.index, other)
        if include_graph_outputs and self._output_refs and self.graph is not None:
            self.graph._replace_output(self, other)

    def _add_use(self, use: Use) -> None:
        self._uses[use] = None

    def _remove_use(self, use: Use) -> None:
        del self._uses[use]

    def __repr__(self) -> str:
        kind = "const" if self.is_constant else "input" if self.producer is None else self.producer.op.name
        return f"Value(%{self.name}: {self.type}, {kind})"
