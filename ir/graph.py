"""The Graph: nodes in topological order, inputs, outputs and constants.

Nodes live in a doubly linked list, so inserting and erasing are O(1) and iterating stays safe while the
graph is rewritten: an erased node keeps its forward link, so a loop that erases the node it stands on goes
on with the next live one, and nodes inserted after the current one are visited too.

>>> from graphopt.ir import Graph, DType, TensorType
>>> g = Graph("demo")
>>> x = g.add_input("x", TensorType(DType.F32, ("batch", 4)))
>>> y = g.add("relu", [x])
>>> g.set_outputs([y])
>>> print(g)
graph @demo(%x: f32[batch,4]) {
  %0: f32[batch,4] = relu(%x)
  return %0
}
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from graphopt.errors import VerificationError

from .dtypes import DType
from .node import Node
from .ops.registry import OpDef, ShapeError, get_op
from .types import TensorType
from .value import Value

if TYPE_CHECKING:
    import networkx

__all__ = ["Graph", "NodeList"]

_NUMERIC = re.compile(r"\d+\Z")


class NodeList:
    """A live view of a graph's nodes in order: iterable (safely, while mutating), reversible, sized."""

    __slots__ = ("_graph",)

    def __init__(self, graph: Graph) -> None:
        self._graph = graph

    def __iter__(self) -> Iterator[Node]:
        root = self._graph._root
        node = root._next
        while node is not root:
            assert node is not None
            if not node._erased:
                yield node
            node = node._next

    def __reversed__(self) -> Iterator[Node]:
        root = self._graph._root
        node = root._prev
        while node is not root:
            assert node is not None
            if not node._erased:
                yield node
            node = node._prev

    def __len__(self) -> int:
        return self._graph._num_nodes

    def __bool__(self) -> bool:
        return self._graph._num_nodes > 0



class _InsertionPoint:
    """`Graph.inserting_before`'s context manager: a class, not a generator, because every rewrite enters one and
    a generator-based manager cost more than the rest of a small rewrite."""

    __slots__ = ("graph", "node", "origin", "saved")

    def __init__(self, graph: Graph, node: Node, origin: str) -> None:
        self.graph, self.node, self.origin = graph, node, origin

    def __enter__(self) -> None:
        g = self.graph
        self.saved = g._insert_before, g._default_origin
        g._insert_before, g._default_origin = self.node, self.origin

    def __exit__(self, *exc: object) -> None:
        self.graph._insert_before, self.graph._default_origin = self.saved

class Graph:
    """A dataflow graph in SSA form. See the module docstring for an example."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self._outputs: list[Value] = []
        self.constants: dict[str, Value] = {}
        self.metadata: dict[str, Any] = {}
        self._root = _make_root()
        self._num_nodes = 0
        self._values: dict[str, Value] = {}
        self._next_id = 0
        self._next_suffix: dict[str, int] = {}  # hint -> the first `_i` suffix fresh_name has not tried yet
        self._insert_before: Node = self._root
        self._default_origin = ""
        self._generation = 0

    @property
    def generation(self) -> int:
        """A counter every structural change made through Graph and Node bumps (nodes added or removed, inputs
        rewired, attributes set, values renamed, outputs or constants changed): analysis caches compare it to
        know their result is stale, whoever changed the graph."""
        return self._generation

    # -- naming ----------------------------------------------------------------------------------------
    def fresh_name(self, hint: str = "") -> str:
        """A value name not yet used in this graph: `hint` if free, else `hint_1`, ...; `0`, `1`, ... if no hint."""
        if hint:
            if hint not in self._values:
                return hint
            # Resume where the last call with this hint stopped: probing from `_1` every time made k constants
            # named after one hint ("c", a shared weight's derived copies) cost O(k^2).
            i = self._next_suffix.get(hint, 1)
            while f"{hint}_{i}" in self._values:
                i += 1
            self._next_suffix[hint] = i + 1
            return f"{hint}_{i}"
        while str(self._next_id) in self._values:
            self._next_id += 1
        name = str(self._next_id)
        self._next_id += 1
        return name

    def _claim(self, value: Value) -> Value:
        if value.name in self._values:
            raise VerificationError(f"value name %{value.name} is already used in graph @{self.name}", rule="ssa")
        self._values[value.name] = value
        value.graph = self
        name = value.name
        if name.isdigit() and name.isascii():  # what _NUMERIC matches, without the regex call per value
            self._next_id = max(self._next_id, int(name) + 1)
        return value

    def value(self, name: str) -> Value:
        """The value called `name` (without the `%`/`@` sigil). KeyError if absent."""
        return self._values[name]

    def rename(self, value: Value, name: str) -> None:
        """Give `value` a new unique name. O(1)."""
        if name in self._values and self._values[name] is not value:
            raise ValueError(f"value name %{name} is already used")
        self._generation += 1
        del self._values[value.name]
        if value.is_constant:
            self.constants = {(name if k == value.name else k): v for k, v in self.constants.items()}
        value.name = name
        self._values[name] = value

    # -- inputs, outputs, constants --------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType) -> Value:
        self._generation += 1
        value = self._claim(Value(name, type))
        self.inputs.append(value)
        return value

    def add_constant(self, data: Any, name: str | None = None, dtype: DType | None = None) -> Value:
        """Add a constant (a weight). The array is not copied; the graph keeps a read-only view of it."""
        array = np.asarray(data, dtype=dtype.numpy if dtype else None)
        view = array.view()
        view.flags.writeable = False
        name = name if name is not None else self.fresh_name("c")
        self._generation += 1
        value = self._claim(Value(name, TensorType(DType.from_numpy(array.dtype), array.shape), const=view))
        self.constants[name] = value
        return value

    def replace_constant(self, value: Value, data: Any) -> Value:
        """A constant with `data` (any shape) in place of `value`: same name, every use and output moved to it.
        Pruning and training rewrite weights this way; the users' types are theirs to re-infer."""
        name = value.name
        fresh = self.add_constant(data, self.fresh_name(name))
        value.replace_all_uses_with(fresh)
        self.remove_constant(value)
        self.rename(fresh, name)
        return fresh

    def remove_constant(self, value: Value) -> None:
        """Drop a constant nobody reads. O(1)."""
        if not value.is_dead:
            raise VerificationError(f"cannot remove constant @{value.name}: it still has {value.num_uses} uses")
        self._generation += 1
        del self.constants[value.name]
        del self._values[value.name]
        value.graph = None

    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    def set_outputs(self, values: Sequence[Value]) -> None:
        self._generation += 1
        for v in self._outputs:
            v._output_refs -= 1
        self._outputs = list(values)
        for v in self._outputs:
            v._output_refs += 1

    def _replace_output(self, old: Value, new: Value) -> None:
        """Point output slots at `new` instead of `old`. An output's name is part of the model's interface
        (`last_hidden_state`, an ONNX output `y`), so a computed `new` that is no other output takes it over —
        unless `old` is a graph input or constant, whose own name is interface too and must stay."""
        self._generation += 1
        for i, v in enumerate(self._outputs):
            if v is old:
                self._outputs[i] = new
                old._output_refs -= 1
                new._output_refs += 1
        if (new.producer is not None and old.producer is not None and new.output_refs == 1 and old.output_refs == 0
                and not _NUMERIC.match(old.name) and old.graph is self and new.graph is self):
            name = old.name
            self.rename(old, self.fresh_name(name + "_replaced"))
            self.rename(new, name)

    # -- nodes -----------------------------------------------------------------------------------------
    @property
    def nodes(self) -> NodeList:
        return NodeList(self)

    def __iter__(self) -> Iterator[Node]:
        return iter(NodeList(self))

    def __len__(self) -> int:
        return self._num_nodes

    def inserting_before(self, node: Node, origin: str | None = None) -> _InsertionPoint:
        """New nodes go before `node` and inherit its origin unless told otherwise (a context manager)."""
        return _InsertionPoint(self, node, node.origin if origin is None else origin)

    @contextlib.contextmanager
    def inserting_at_end(self, origin: str = "") -> Iterator[None]:
        """New nodes go at the end of the graph with the given origin (what frontends use)."""
        with self.inserting_before(self._root, origin):
            yield

    @contextlib.contextmanager
    def inserting_after(self, node: Node, origin: str | None = None) -> Iterator[None]:
        """New nodes go after `node` (in the order they are added)."""
        anchor = node._next
        assert anchor is not None
        with self.inserting_before(anchor, node.origin if origin is None else origin):
            yield

    def add_node(
        self,
        op: str | OpDef,
        inputs: Sequence[Value],
        attrs: Mapping[str, Any] | None = None,
        *,
        types: Sequence[TensorType | None] | None = None,
        names: Sequence[str] | None = None,
        origin: str | None = None,
    ) -> Node:
        """Create a node at the insertion point (end of graph by default). O(inputs + outputs).

        Output types are inferred from the input types unless `types` is given.
        """
        opdef = get_op(op) if isinstance(op, str) else op
        attrs = opdef.check_attrs(attrs or {})  # a new dict: the caller's is never kept
        in_types = []
        for v in inputs:
            if v.graph is not self:
                raise VerificationError(
                    f"cannot add {opdef.name}: input %{v.name} belongs to another graph",
                    rule="ownership",
                )
            in_types.append(v.type)
        if opdef.complete is not None:
            attrs = opdef.complete_attrs(in_types, attrs)
        n_out = opdef.num_outputs(attrs, len(inputs))
        if types is None:
            types = self._infer(opdef, inputs, in_types, attrs, n_out)
        if len(types) != n_out:
            raise VerificationError(f"{opdef.name} produces {n_out} outputs, got {len(types)} types", rule="schema")
        if names is None:
            names = [self.fresh_name() for _ in range(n_out)]
        outputs = [self._claim(Value(name, t)) for name, t in zip(names, types)]
        node = Node(opdef, inputs, outputs, attrs, self._default_origin if origin is None else origin)
        self._link_before(node, self._insert_before)
        return node

    def add(
        self,
        op: str | OpDef,
        inputs: Sequence[Value],
        attrs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Like `add_node`, but returns the output Value (or a tuple of them for multi-output ops)."""
        node = self.add_node(op, inputs, attrs, **kwargs)
        return node.outputs[0] if len(node.outputs) == 1 else node.outputs

    def _infer(self, op: OpDef, inputs: Sequence[Value], in_types: list[TensorType | None],
               attrs: Mapping[str, Any], n_out: int) -> list[TensorType | None]:
        if None in in_types:
            return [None] * n_out
        try:
            known: list[TensorType] = in_types  # type: ignore[assignment]  # no None: checked above
            return list(op.infer_types(known, attrs))
        except ShapeError as e:
            args = ", ".join(f"%{v.name}: {v.type}" for v in inputs)
            raise VerificationError(f"{op.name}({args}) {dict(attrs)}: {e}", rule="types") from None

    def remove_node(self, node: Node) -> None:
        """Erase a node whose outputs nobody reads. O(inputs + outputs)."""
        for out in node.outputs:
            if not out.is_dead:
                users = ", ".join(u.describe() for u in out.users) or "a graph output"
                raise VerificationError(
                    f"cannot remove {node.describe()}: %{out.name} is still used by {users}; "
                    "call replace_all_uses_with first",
                    node=node,
                    rule="uses",
                )
        self._generation += 1
        node._drop_inputs()
        for out in node.outputs:
            del self._values[out.name]
            out.graph = None
        # Keep node._next so that an iterator standing on this node can go on.
        prev, nxt = node._prev, node._next
        assert prev is not None and nxt is not None
        prev._next, nxt._prev = nxt, prev
        node._erased = True
        node.graph = None
        self._num_nodes -= 1

    def remove_nodes(self, nodes: Iterable[Node]) -> None:
        """Erase `nodes` (users before producers is not required). O(total inputs + outputs)."""
        pending = list(nodes)
        for node in pending:  # links between doomed nodes disappear with them
            node._drop_inputs()
        for node in pending:
            self.remove_node(node)

    def _link_before(self, node: Node, anchor: Node) -> None:
        prev = anchor._prev
        assert prev is not None
        node._prev, node._next = prev, anchor
        prev._next = node
        anchor._prev = node
        node.graph = self
        self._num_nodes += 1
        self._generation += 1

    # -- whole-graph operations ------------------------------------------------------------------------
    def copy(self) -> Graph:
        """A structural copy. Constant arrays are shared, not copied: O(nodes), independent of weight size."""
        new = Graph(self.name)
        new.metadata = dict(self.metadata)
        vmap: dict[Value, Value] = {}
        for v in self.inputs:
            vmap[v] = new.add_input(v.name, v.type)  # type: ignore[arg-type]
        for name, c in self.constants.items():
            vmap[c] = new.add_constant(c.const, name)
        for node in self:  # checked once already: the attributes (read-only, shared) and types are reused as they are
            outs = [new._claim(Value(o.name, o.type)) for o in node.outputs]
            new._link_before(Node(node.op, [vmap[v] for v in node.inputs], outs, node.attrs, node.origin), new._root)
            vmap.update(zip(node.outputs, outs))
        new.set_outputs([vmap[v] for v in self._outputs])
        return new

    def verify(self) -> None:
        """Check SSA, order, use lists, schemas and types. Raises VerificationError naming the node and rule."""
        from .verifier import verify

        verify(self)

    def to_networkx(self) -> networkx.MultiDiGraph:
        """Nodes and graph inputs/constants as networkx nodes, values as edges. See `ir.nx`."""
        from .nx import to_networkx

        return to_networkx(self)

    def to_dot(self) -> str:
        """Graphviz DOT source; render with `dot -Tsvg`."""
        from .nx import to_dot

        return to_dot(self)

    def format(self, *, max_inline: int = 64, uses: bool = False) -> str:
        """Text form; constants larger than `max_inline` elements print as `external`."""
        from .printer import format_graph

        return format_graph(self, max_inline=max_inline, show_uses=uses)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.inputs)} inputs, {self._num_nodes} nodes, {len(self.constants)} constants>"


def _make_root() -> Node:
    root = Node.__new__(Node)
    root._prev = root._next = root
    root._erased = True
    return root
