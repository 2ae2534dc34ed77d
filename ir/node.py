"""Nodes: one op applied to input Values, producing output Values.

A node's attributes are plain immutable data (ints, floats, strings, tuples, dtypes), checked against the
op's schema when set. `origin` says where the node came from in the user's model (module path, ONNX node
name) so that errors and reports can point there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .printer import format_name
from .value import Use, Value

if TYPE_CHECKING:
    from .graph import Graph
    from .ops.registry import OpDef

__all__ = ["Node", "attrs_key"]


class Node:
    """An op application. Create nodes with `Graph.add` / `Graph.add_node`, not directly."""

    __slots__ = ("op", "_inputs", "outputs", "_attrs", "origin", "graph", "_prev", "_next", "_erased")

    def __init__(
        self,
        op: OpDef,
        inputs: Sequence[Value],
        outputs: Sequence[Value],
        attrs: Mapping[str, Any] | None = None,
        origin: str = "",
    ) -> None:
        self.op = op
        self._inputs: tuple[Value, ...] = ()
        self.outputs: tuple[Value, ...] = tuple(outputs)
        # Graph.add_node has already checked `attrs` against the schema (and owns the dict, or passes a read-only
        # view it may share, as copies do); the setter below checks later changes.
        self._attrs: Mapping[str, Any] = (attrs if isinstance(attrs, MappingProxyType)
                                          else MappingProxyType(attrs if type(attrs) is dict else dict(attrs or {})))
        self.origin = origin
        self.graph: Graph | None = None
        self._prev: Node | None = None
        self._next: Node | None = None
        self._erased = False
        for i, out in enumerate(self.outputs):
            out.producer, out.index = self, i
        self.inputs = inputs

    # -- inputs keep the use lists of their values up to date -----------------------------------------
    @property
    def inputs(self) -> tuple[Value, ...]:
        return self._inputs

    @inputs.setter
    def inputs(self, values: Iterable[Value]) -> None:
        """Replace all inputs, re-linking uses. O(len(old) + len(new))."""
        if self.graph is not None:
            self.graph._generation += 1
        for i, old in enumerate(self._inputs):
            old._remove_use(Use(self, i))
        self._inputs = tuple(values)
        for i, new in enumerate(self._inputs):
            if not isinstance(new, Value):
                raise TypeError(f"input {i} of {self.op.name} must be a Value, got {type(new).__name__}")
            new._add_use(Use(self, i))

    def set_input(self, index: int, value: Value) -> None:
        """Replace one input, re-linking uses. O(1)."""
        old = self._inputs[index]
        if old is value:
            return
        if self.graph is not None:
            self.graph._generation += 1
        old._remove_use(Use(self, index))
        items = list(self._inputs)
        items[index] = value
        self._inputs = tuple(items)
        value._add_use(Use(self, index))

    # -- attributes ------------------------------------------------------------------------------------
    @property
    def attrs(self) -> Mapping[str, Any]:
        """Read-only, schema-checked attributes, defaults filled in."""
        return self._attrs

    @attrs.setter
    def attrs(self, attrs: Mapping[str, Any]) -> None:
        if self.graph is not None:
            self.graph._generation += 1
        checked = self.op.check_attrs(dict(attrs))
        self._attrs = MappingProxyType(self.op.complete_attrs([v.type for v in self._inputs], checked))

    # -- convenience -----------------------------------------------------------------------------------
    @property
    def output(self) -> Value:
        """The only output; raises for multi-output nodes."""
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op.name} has {len(self.outputs)} outputs; use .outputs")
        return self.outputs[0]

    def is_op(self, name: str) -> bool:
        """`node.op.name == name`, but a misspelled name raises instead of silently being False."""
        from .ops.registry import get_op

        return self.op is get_op(name)

    @property
    def is_erased(self) -> bool:
        return self._erased

    def _drop_inputs(self) -> None:
        for i, old in enumerate(self._inputs):
            old._remove_use(Use(self, i))
        self._inputs = ()

    def describe(self) -> str:
        """One line naming the node for error messages: `%3 = mul(%1, %2) from encoder.layer.0`."""
        outs = ", ".join(format_name(v) for v in self.outputs)
        ins = ", ".join(format_name(v) for v in self._inputs)
        where = f" (from {self.origin})" if self.origin else ""
        return f"{outs} = {self.op.name}({ins}){where}"

    def __repr__(self) -> str:
        return f"Node({self.describe()})"


def attrs_key(attrs: Any) -> tuple[Any, ...]:
    """A hashable key under which two attribute sets are equal only if they mean the same: floats by their bits,
    since `0.0 == -0.0` (a leaky_relu slope of -0.0 flips the sign of zero) and `nan != nan`."""
    return tuple((k, _value_key(v)) for k, v in attrs.items())


def _value_key(v: Any) -> Any:
    if isinstance(v, float):
        return ("float", v.hex())
    if isinstance(v, tuple):
        return tuple(_value_key(x) for x in v)
    return (type(v).__name__, v)
