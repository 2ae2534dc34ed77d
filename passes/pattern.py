r"""Declarative patterns over op trees. A failed match says why, naming the node where it failed.

    Pat("transpose", Pat("transpose", X, perm=P1), perm=P2)   # transpose of transpose; P1, P2 captured
    Pat("mul", X, Const(1.0))                                 # x * 1, with the constant on either side

`Var` binds any value, `Const` a constant (optionally all equal to a scalar), `AttrVar` captures an attribute,
`Pat` matches a node by op (checked against the registry when the pattern is built).

>>> from graphopt.ir import parse
>>> g = parse('graph @f(%x: f32[2]) {\n  const @one: f32[] = 1.0\n  %0: f32[2] = mul(%x, @one)\n  return %0\n}')
>>> m = Pat("mul", Var("x"), Const(1.0)).match(g.outputs[0])
>>> m.x.name
'x'
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from graphopt.ir import Node, OpDef, Value, get_op

__all__ = ["Pattern", "Var", "Const", "Pat", "AttrVar", "Match", "MatchFailure", "scalar_of"]


def scalar_of(value: Value) -> float | None:
    """The float a one-element floating constant holds, in the shortest form that round-trips its dtype
    (an f32 1e-5 reads 1e-05, not 9.999999747378752e-06), or None for anything else."""
    if value.const is None or value.const.size != 1 or not value.type.dtype.is_float:
        return None
    return float(np.format_float_positional(value.const.reshape(-1)[0], unique=True))


class MatchFailure(Exception):
    """Why a pattern did not match: `reason`, and the node where it failed (if any).

    The reason may be given as a function that spells it: nearly every failure is dropped unread (the next
    candidate is tried), and formatting names and attributes for each cost more than the match itself."""

    def __init__(self, reason: str | Callable[[], str], node: Node | None = None) -> None:
        super().__init__()
        self._reason = reason
        self.node = node
        self.progress = 0  # op nodes matched before the failure: 1 means only the root's op matched

    @property
    def reason(self) -> str:
        if callable(self._reason):
            self._reason = self._reason()
        return self._reason

    def __str__(self) -> str:
        return self.reason


@dataclass
class Match:
    """Bindings of a successful match: `m.x` or `m["x"]` for values, `m.attr("p")` for captured attributes."""

    root: Node
    values: dict[str, Value] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    reached: int = 0  # nodes whose op matched, so far (a failed match's progress)

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        attrs = self.__dict__.get("attrs", {})
        if name in attrs:
            return attrs[name]
        raise AttributeError(f"pattern bound no value or attribute named {name!r}")


_MATCH_FIELDS = frozenset(dir(Match)) | {"root", "values", "attrs", "nodes", "reached"}


class Pattern:
    """Base of all patterns."""

    name: str | None = None

    def _match(self, value: Value, m: Match) -> None:
        raise NotImplementedError

    def variants(self) -> Iterator[Pattern]:
        """This pattern and its commuted forms (inputs of commutative ops swapped)."""
        yield self

    def match(self, value: Value) -> Match:
        """Match rooted at `value`'s producer; raises MatchFailure with the reason."""
        if value.producer is None:
            raise MatchFailure(lambda: f"%{value.name} is not produced by a node")
        m = Match(value.producer)
        try:
            self._match(value, m)
        except MatchFailure as f:
            f.progress = m.reached
            raise
        return m

    def _bind(self, value: Value, m: Match) -> None:
        if self.name is None:
            return
        bound = m.values.get(self.name)
        if bound is not None and bound is not value:
            raise MatchFailure(lambda: f"{self.name} is bound to %{bound.name} but here it is %{value.name}", value.producer)
        m.values[self.name] = value
        if self.name not in _MATCH_FIELDS:
            # also a plain attribute: `m.x` then skips __getattr__, which Python reaches only after a failed
            # lookup has raised and caught an AttributeError (a rule's check reads several bindings)
            m.__dict__[self.name] = value


@dataclass(eq=False)
class Var(Pattern):
    """Any value; the same name twice means the same value. `check(value)` may return False or a reason."""

    name: str | None = None
    check: Callable[[Value], bool | str] | None = None

    def _match(self, value: Value, m: Match) -> None:
        if self.check is not None:
            ok = self.check(value)
            if ok is not True and ok is not None:
                raise MatchFailure(ok if isinstance(ok, str) else lambda: f"%{value.name} fails the check on {self.name}",
                                   value.producer)
        self._bind(value, m)


@dataclass(eq=False)
class Const(Pattern):
    """A constant value; with `value`, every element must equal it."""

    value: float | None = None
    name: str | None = None

    def _match(self, value: Value, m: Match) -> None:
        if value.const is None:
            raise MatchFailure(lambda: f"expected a constant, got %{value.name} ("
                               + (f"produced by {value.producer.op.name})" if value.producer else "a graph input)"),
                               value.producer)
        if self.value is not None:
            data = value.const
            # a scalar (the common case: x * 1.0) is compared in Python, and an array whose first element
            # differs (a mask, an embedding table) is rejected on it; numpy's reduction costs 5 µs a call
            flat = data.reshape(-1)
            same = data.size > 0 and flat[0] == self.value and (data.size == 1 or bool((flat == self.value).all()))
            if not same:
                raise MatchFailure(lambda: f"@{value.name} is not all {self.value}")
        self._bind(value, m)


@dataclass(frozen=True)
class AttrVar:
    """Captures an attribute into the match; the same name twice must see equal values."""

    name: str


class Pat(Pattern):
    """A node of op `op` whose inputs match `inputs` and whose attributes match `attrs`.

    Attribute patterns are literal values, AttrVars, or predicates `f(value) -> bool`. `single_use=True`
    requires the node's output to have no other users (so fusing it duplicates nothing).
    """

    def __init__(self, op: str, *inputs: Pattern, name: str | None = None, single_use: bool = False,
                 **attrs: Any) -> None:
        self.op: OpDef = get_op(op)
        unknown = [k for k in attrs if k not in self.op.attrs]
        if unknown:
            raise TypeError(f"pattern on {op} names unknown attribute(s) {', '.join(unknown)}")
        self.inputs = inputs
        self.name = name
        self.single_use = single_use
        self.attrs = attrs

    def _match(self, value: Value, m: Match) -> None:
        node = value.producer
        if node is None:
            raise MatchFailure(lambda: f"expected {self.op.name}, got %{value.name} (a graph input or constant)")
        if node.op is not self.op:
            raise MatchFailure(lambda: f"expected {self.op.name}, got {node.op.name} at %{value.name}", node)
        if len(node.inputs) != len(self.inputs):
            raise MatchFailure(lambda: f"{node.op.name} at %{value.name} has {len(node.inputs)} inputs, the pattern "
                               f"{len(self.inputs)}", node)
        m.reached += 1
        if self.single_use and m.nodes and (value.num_uses > 1 or value.is_graph_output):
            raise MatchFailure(lambda: f"%{value.name} ({node.op.name}) has other users; fusing would duplicate it", node)
        for key, want in self.attrs.items():
            have = node.attrs[key]
            if isinstance(want, AttrVar):
                if want.name in m.attrs and m.attrs[want.name] != have:
                    raise MatchFailure(partial("attribute {}={!r} differs from {}={!r}".format, key, have,
                                               want.name, m.attrs[want.name]), node)
                m.attrs[want.name] = have
                if want.name not in _MATCH_FIELDS:
                    m.__dict__[want.name] = have  # a plain attribute, as _bind does for values
            elif callable(want):
                if not want(have):
                    raise MatchFailure(partial("attribute {}={!r} of {} fails the pattern's check".format, key,
                                               have, node.op.name), node)
            elif have != want:
                raise MatchFailure(partial("attribute {} of {} is {!r}, the pattern wants {!r}".format, key,
                                           node.op.name, have, want), node)
        m.nodes.append(node)
        for sub, v in zip(self.inputs, node.inputs):
            sub._match(v, m)
        self._bind(value, m)

    def variants(self) -> Iterator[Pattern]:
        subs = [list(p.variants()) for p in self.inputs]
        for combo in itertools.product(*subs):
            orders = [combo]
            if self.op.commutative and len(combo) == 2 and combo[0] is not combo[1]:
                orders.append((combo[1], combo[0]))
            for inputs in orders:
                yield Pat(self.op.name, *inputs, name=self.name, single_use=self.single_use, **self.attrs)

    def __repr__(self) -> str:
        return f"Pat({self.op.name}, {', '.join(map(repr, self.inputs))})"
