"""Dependency groups for structured pruning, computed from the ops' dimension-flow rules.

Removing output channel k of a linear layer is only half an edit: the bias loses entry k, the next layer loses
input column k, a residual add couples the channel to every other layer writing the same stream, a reshape that
splits heads turns it into "head k // 32", and a concat shifts it by an offset. Torch-Pruning (DepGraph) finds these
couplings by tracing `nn.Module`s; here every op declares them (`graphopt.ir.ops.traits.Tie`), so the same walk
covers every op, frontend and fused form, and a new op joins by declaring its ties.

An *axis* is one dimension of one value. A *removal* maps axes to the indices removed from them. `propagate`
closes a removal over the ties until every tied axis agrees — one-to-one ties copy indices (shifted by a concat's
or slice's offset); block ties (a reshape splitting `hidden` into `heads x head_dim`) demand that what stays on
each side is a product of kept indices, which is what makes "remove head 3" legal and "remove element 5 of the
hidden axis" not. A *group* is a root axis whose single indices (its *units*: neurons, channels, heads) all
close consistently; `find_groups` proposes roots (every weight's output axis, every axis that a reshape splits)
and keeps the groups whose units close without touching a graph input or output, an op without dimension flow,
an axis a node does not carry (a reduction over it), a symbolic size, or an op whose size attributes cannot be
rewritten. Every refused root comes back with its reason, for `graphopt explain --pass prune-structured`.

>>> from graphopt.ir import parse
>>> g = parse('''graph @mlp(%x: f32[2,8]) {
...   const @w1: f32[16,8] = external
...   const @w2: f32[8,16] = external
...   %h: f32[2,16] = linear(%x, @w1) {activation="relu"}
...   %y: f32[2,8] = linear(%h, @w2)
...   return %y
... }''', {"w1": __import__("numpy").ones((16, 8), "float32"), "w2": __import__("numpy").ones((8, 16), "float32")})
>>> groups, refused = find_groups(g)
>>> [(grp.scope, grp.units, sorted(f"{v.name}[{a}]" for v, a in grp.members(0))) for grp in groups]
[('ffn', 16, ['h[1]', 'w1[0]', 'w2[1]'])]
>>> [f"{r.root}: {r.reason}" for r in refused]
['%w1[1]: reaches graph input %x axis 1', '%w2[0]: reaches graph output %y axis 1']
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from graphopt.ir import AxisRef, Graph, Node, Tie, Trait, Value, dim_flow

__all__ = ["Axis", "Removal", "Conflict", "DependencyGroup", "Refusal", "propagate", "find_groups", "node_removals"]

Axis = tuple[Value, int]
Removal = dict[Axis, frozenset[int]]


class Conflict(Exception):
    """A removal that cannot be closed over the ties (the reason is the message)."""


@dataclass
class _Link:
    """One tie of one node, with its axis references resolved to values."""

    node: Node
    tie: Tie
    a: tuple[Axis, ...]
    b: tuple[Axis, ...]


@dataclass
class _Flow:
    """Every tie of the graph, indexed by axis; and per node, which of its axes some tie carries."""

    links: dict[Axis, list[_Link]] = field(default_factory=lambda: defaultdict(list))
    carried: dict[Node, set[AxisRef]] = field(default_factory=dict)
    ties: dict[Node, list[Tie] | None] = field(default_factory=dict)

    @classmethod
    def of(cls, graph: Graph) -> _Flow:
        flow = cls()
        for node in graph:
            ties = dim_flow(node)
            flow.ties[node] = ties
            flow.carried[node] = set()
            for t in ties or ():
                link = _Link(node, t, tuple(_resolve(node, r) for r in t.a), tuple(_resolve(node, r) for r in t.b))
                for ax in dict.fromkeys(link.a + link.b):
                    flow.links[ax].append(link)
                flow.carried[node].update(t.a + t.b)
            if ties is not None and not node.inputs and node.op.resize is not None:
                # a generator (full): its shape is its attribute, so any output axis shrinks by rewriting it
                flow.carried[node].update(AxisRef("out", k, ax) for k, o in enumerate(node.outputs)
                                          for ax in range(o.type.rank if o.type is not None else 0))
        return flow


def _resolve(node: Node, r: AxisRef) -> Axis:
    return ((node.inputs if r.side == "in" else node.outputs)[r.index], r.axis)


def _size(ax: Axis) -> int:
    value, axis = ax
    d = value.type.shape[axis]  # type: ignore[union-attr]
    if not isinstance(d, int):
        raise Conflict(f"axis {axis} of %{value.name} is symbolic ({d})")
    return d


def _flat(axes: tuple[Axis, ...], kept: list[frozenset[int]]) -> set[int]:
    """Row-major flat indices of the product of kept indices over `axes`."""
    sizes = [_size(a) for a in axes]
    strides = [1] * len(sizes)
    for i in range(len(sizes) - 2, -1, -1):
        strides[i] = strides[i + 1] * sizes[i + 1]
    return {sum(i * s for i, s in zip(idx, strides)) for idx in itertools.product(*map(sorted, kept))}


def _project(axes: tuple[Axis, ...], flat: set[int]) -> list[frozenset[int]]:
    sizes = [_size(a) for a in axes]
    out: list[set[int]] = [set() for _ in sizes]
    for f in flat:
        for i in range(len(sizes) - 1, -1, -1):
            f, r = divmod(f, sizes[i])
            out[i].add(r)
    return [frozenset(o) for o in out]


def _step(link: _Link, removed: Mapping[Axis, frozenset[int]]) -> dict[Axis, frozenset[int]]:
    """What one tie implies for its axes, given the removals so far."""
    t = link.tie
    if t.blocks:
        return _step_blocks(link, removed)
    if len(link.a) == 1 and len(link.b) == 1:
        (a,), (b,) = link.a, link.b
        size_b = _size(b)
        got_a = {i + t.offset for i in removed.get(b, ())}
        got_b = {i - t.offset for i in removed.get(a, ()) if t.offset <= i < t.offset + size_b}
        return {a: frozenset(got_a), b: frozenset(got_b)}
    kept = []
    for side in (link.a, link.b):
        kept.append(_flat(side, [frozenset(range(_size(ax))) - removed.get(ax, frozenset()) for ax in side]))
    both = kept[0] & kept[1]
    out: dict[Axis, frozenset[int]] = {}
    for side in (link.a, link.b):
        proj = _project(side, both)
        if _flat(side, proj) != both:
            names = ", ".join(f"%{v.name}[{ax}]" for v, ax in side)
            raise Conflict(f"the removal does not split evenly over ({names}) at {link.node.describe()}")
        out.update({ax: frozenset(range(_size(ax))) - k for ax, k in zip(side, proj)})
    return out


def _step_blocks(link: _Link, removed: Mapping[Axis, frozenset[int]]) -> dict[Axis, frozenset[int]]:
    """A tie by blocks (a grouped convolution's channels): the blocks removed on either side, whole, on both."""
    g = link.tie.blocks
    block = {ax: _size(ax) // g for ax in (*link.a, *link.b)}  # indices per block, on each side
    whole: set[int] = set()
    for ax, size in block.items():
        ix = removed.get(ax, frozenset())
        for blk in {i // size for i in ix}:
            if not all(blk * size + j in ix for j in range(size)):
                raise Conflict(f"it removes part of group {blk} of {link.node.describe()}, whose {g} groups of "
                               f"channels go only as a whole")
            whole.add(blk)
    return {ax: frozenset(blk * size + j for blk in whole for j in range(size)) for ax, size in block.items()}


def propagate(flow: _Flow, seed: Mapping[Axis, Iterable[int]]) -> Removal:
    """Close `seed` over every tie: the smallest removal containing it that every tied axis agrees on.

    Conflict when no such removal exists (a block tie that would need a ragged shape) or when it empties an
    axis."""
    removed: dict[Axis, frozenset[int]] = {ax: frozenset(ix) for ax, ix in seed.items()}
    work = list(removed)
    while work:
        ax = work.pop()
        for link in flow.links.get(ax, ()):
            for other, ix in _step(link, removed).items():
                have = removed.get(other, frozenset())
                if not ix <= have:
                    removed[other] = have | ix
                    work.append(other)
    for ax, ix in removed.items():
        if ix and len(ix) >= _size(ax):
            raise Conflict(f"it would remove all of axis {ax[1]} of %{ax[0].name}")
    return {ax: ix for ax, ix in removed.items() if ix}


def _check(flow: _Flow, removal: Removal) -> None:
    """Conflict unless every node touching a removed axis carries it, and no graph input or output loses any."""
    for (value, axis) in removal:
        if value.is_graph_input or value.is_graph_output:
            raise Conflict(f"reaches graph {'input' if value.is_graph_input else 'output'} %{value.name} axis {axis}")
    for node, removed in node_removals(removal).items():
        if flow.ties.get(node) is None:
            raise Conflict(f"{node.describe()} declares no dimension flow")
        for r in removed:
            if r not in flow.carried[node]:
                raise Conflict(f"{node.describe()} does not carry {r} through (it reduces or indexes it)")


def node_removals(removal: Removal) -> dict[Node, dict[AxisRef, tuple[int, ...]]]:
    """Per node touching the removal, its removed indices by its own axis references (what `resize` rules take)."""
    out: dict[Node, dict[AxisRef, tuple[int, ...]]] = defaultdict(dict)
    for (value, axis), ix in removal.items():
        idx = tuple(sorted(ix))
        if value.producer is not None:
            for k, o in enumerate(value.producer.outputs):
                if o is value:
                    out[value.producer][AxisRef("out", k, axis)] = idx
        for node in value.users:
            for k, i in enumerate(node.inputs):
                if i is value:
                    out[node][AxisRef("in", k, axis)] = idx
    return dict(out)


def _check_resize(removal: Removal) -> None:
    for node, removed in node_removals(removal).items():
        op = node.op
        if op.resize is None:
            if any(spec.kind in ("dims", "dim") for spec in op.attrs.values()):
                raise Conflict(f"{node.describe()} holds sizes in its attributes and declares no resize rule")
            continue
        try:
            op.resize([v.type for v in node.inputs], [v.type for v in node.outputs], node.attrs,  # type: ignore[misc]
                      removed)
        except ValueError as e:
            raise Conflict(f"{node.describe()}: {e}") from None


@dataclass
class DependencyGroup:
    """Axes that lose indices together: removing unit u of `root` removes `members(u)` everywhere.

    `scope`: heads (a reshape's outer split axis), head-dim (its inner axis), ffn (one linear layer's output
    neurons), hidden (features several layers write: a residual stream, an embedding's width), channels (a
    convolution's output channels), recurrent (an LSTM/GRU/RNN's hidden units, whose gates stack in its weights); `lossy` when a tie in it changes the remaining values (the normalized axis of
    a norm), which only `scope=hidden` prunes."""

    root: Axis
    units: int
    scope: str
    lossy: bool
    _flow: _Flow = field(repr=False)
    block: int = 1  # indices of `root` per unit: a grouped convolution's channels per group, else 1
    _cache: dict[int, Removal] = field(default_factory=dict, repr=False)
    _shift: dict[Axis, int] | None = field(default=None, repr=False)
    _regular: bool = field(default=False, repr=False)

    def members(self, unit: int) -> Removal:
        """The axes and indices that removing `unit` removes."""
        if unit not in self._cache:
            shift = self._shifts()
            self._cache[unit] = ({ax: frozenset({unit + off}) for ax, off in shift.items()} if shift is not None
                                 else propagate(self._flow, {self.root: self._indices([unit])}))
        return self._cache[unit]

    def _indices(self, units: Iterable[int]) -> set[int]:
        """The root's indices that `units` cover."""
        return {u * self.block + j for u in units for j in range(self.block)}

    def _shifts(self) -> dict[Axis, int] | None:
        """Per axis, unit u's index minus u — when every unit removes one index per axis at a fixed offset (an FFN,
        a conv's channels: most groups), which units 0, 1 and the last show; None otherwise (heads: a block)."""
        if self._shift is None:
            probes = [propagate(self._flow, {self.root: self._indices([u])}) for u in sorted({0, 1, self.units - 1})]
            first = probes[0]
            regular = all(len(ix) == 1 for ix in first.values())
            shift = {ax: next(iter(ix)) for ax, ix in first.items()} if regular else {}
            for u, probe in zip(sorted({0, 1, self.units - 1}), probes):
                regular = regular and probe == {ax: frozenset({u + off}) for ax, off in shift.items()}
            self._shift = shift if regular else {}
            self._regular = regular
        return self._shift if self._regular else None

    def removal(self, units: Iterable[int]) -> Removal:
        """The closed removal for several units at once (checked: it may not empty an axis)."""
        units = sorted(set(units))
        if not units:
            return {}
        removal = propagate(self._flow, {self.root: self._indices(units)})
        _check(self._flow, removal)
        _check_resize(removal)
        return removal

    def close(self, removal: Removal) -> Removal:
        """Close and check any removal over this group's graph (several groups' removals merged)."""
        closed = propagate(self._flow, removal)
        _check(self._flow, closed)
        _check_resize(closed)
        return closed

    @property
    def name(self) -> str:
        value, axis = self.root
        where = value.users[0].origin if value.is_constant and value.users else (
            value.producer.origin if value.producer is not None else "")
        return f"{self.scope} of %{value.name}[{axis}]" + (f" ({where})" if where else "")


@dataclass(frozen=True)
class Refusal:
    """A root that is not a group, and why (shown by `graphopt explain --pass prune-structured`)."""

    root: str
    reason: str


def _roots(graph: Graph, flow: _Flow) -> list[tuple[Axis, str, int]]:
    """Candidate roots (axis, scope, indices per unit), finest first: each weight's first two axes (a grouped
    convolution's output channels by whole groups), then each axis a reshape splits or merges."""
    roots: list[tuple[Axis, str, int]] = []
    seen: set[Axis] = set()
    for node in graph:
        w = node.inputs[1] if node.op.name == "conv" and len(node.inputs) > 1 else None
        if w is not None and w.is_constant and node.attrs["groups"] > 1 and w.type is not None:
            seen.add((w, 0))
            roots.append(((w, 0), "channels", int(w.type.shape[0]) // node.attrs["groups"]))
        for v in node.inputs:
            if v.is_constant and v.type is not None and v.type.rank >= 2 and v.type.dtype.is_float:
                # a GEMM's weight: its neurons (a conv's channels); an embedding table's width is a stream
                scope = "channels" if v.type.rank > 2 else "ffn" if node.op.has(Trait.QUANTIZABLE) else "hidden"
                for axis in (0, 1):  # [out, in] of a linear or conv; [in, out] of a matmul's right operand
                    if (v, axis) not in seen:
                        seen.add((v, axis))
                        roots.append(((v, axis), scope, 1))
    for node in graph:
        for t in flow.ties.get(node) or ():
            for side in (t.a, t.b):
                if len(side) > 1:
                    axes = [_resolve(node, r) for r in side]
                    roots.append((axes[0], "heads", 1))
                    roots += [(ax, "head-dim", 1) for ax in axes[1:]]
    return roots


def _lossy(flow: _Flow, removal: Removal) -> bool:
    touched = set(removal)
    return any(not link.tie.exact and any(ax in touched for ax in link.a + link.b)
               for ax in touched for link in flow.links.get(ax, ()))


def _writers(removal: Removal) -> int:
    """How many nodes write removed features from weights (linear and conv outputs, embedding lookups, norms)."""
    cut = {v for v, _ in removal if v.is_constant}
    writers = {v.producer for v, _ in removal if v.producer is not None and any(i in cut for i in v.producer.inputs)}
    return len(writers)


def find_groups(graph: Graph) -> tuple[list[DependencyGroup], list[Refusal]]:
    """The graph's dependency groups (one per distinct set of coupled axes), and the roots refused with why."""
    flow = _Flow.of(graph)
    groups: list[DependencyGroup] = []
    refused: list[Refusal] = []
    seen: set[frozenset[Axis]] = set()
    for root, scope, block in _roots(graph, flow):
        value, axis = root
        label = f"%{value.name}[{axis}]"
        try:
            size = _size(root) // block
            if size < 2:
                continue
            unit = propagate(flow, {root: set(range(block))})
            if block == 1 and len(unit[root]) > 1:  # a gate-stacked axis (4H rows of an LSTM): re-root where one unit is one index
                root = min((ax for ax, ix in unit.items() if len(ix) == 1), key=_size, default=root)
                size, scope = _size(root), "recurrent"
                unit = propagate(flow, {root: {0}})
            key = frozenset(unit)  # the axes a unit touches: roots of one group (q's, k's, v's heads) share them
            if key in seen:
                continue
            seen.add(key)
            _check(flow, unit)
            _check_resize(unit)
        except Conflict as e:
            refused.append(Refusal(label, str(e)))
            continue
        lossy = _lossy(flow, unit)
        if scope == "ffn" and (lossy or _writers(unit) > 1):
            scope = "hidden"  # several layers write these features: the residual stream, not one layer's neurons
        group = DependencyGroup(root, size, scope, lossy, flow, block)
        group._cache[0] = unit
        groups.append(group)
    return groups, refused
