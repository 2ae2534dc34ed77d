"""eliminate-layout-ops: cancel the reshape/squeeze/unsqueeze/transpose chains that exporters and fusion leave.

Each layout op is cheap alone, but chains of them cost a kernel launch (and sometimes a copy) per step in the
generated code, and they hide patterns from later passes. Rules, applied to a fixpoint:

- chains of reshape-like ops (reshape, squeeze, unsqueeze) → one reshape, or nothing when the shape comes back;
- a transpose that moves only size-1 dims → a reshape (same memory order), which then joins reshape chains;
- layout ∘ elementwise ∘ layout that cancels, e.g. transpose(gelu(transpose(x))) → gelu(x).

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[b]) {
...   %0: f32[b,1] = unsqueeze(%x) {axes=[1]}
...   %1: f32[b,1,1] = unsqueeze(%0) {axes=[2]}
...   %2: f32[1,b,1] = transpose(%1) {perm=[1, 0, 2]}
...   return %2
... }''')
>>> _ = PassManager.parse("eliminate-layout-ops,dce").run(g)
>>> [(n.op.name, n.attrs["shape"]) for n in g]
[('reshape', (1, 'b', 1))]
"""

from __future__ import annotations

from graphopt.ir import Graph, OpRef, Trait, get_op, ops_with

from .context import PassContext
from .pattern import Match, Pat, Var
from .registry import PassResult, register_pass
from .rewrite import Rewriter, Rule, apply_rules

__all__ = ["eliminate_layout_ops", "ELIMINATE_LAYOUT_RULES"]

X = Var("x")
_RESHAPES = ("reshape", "squeeze", "unsqueeze")
_TRANSPOSE = OpRef("transpose")
# elementwise ops of one input: by the trait's definition their attributes do not depend on the layout
_UNARY = sorted(name for name in ops_with(Trait.ELEMENTWISE) if len(get_op(name).inputs) == 1)


def _to_reshape(rw: Rewriter, m: Match) -> object:
    out = m.root.outputs[0].type
    return m.x if m.x.type == out else rw.op("reshape", [m.x], shape=list(out.shape))


def _moves_only_unit_dims(m: Match) -> bool | str:
    shape, perm = m.x.type.shape, m.root.attrs["perm"]
    kept = [p for p in perm if shape[p] != 1]
    return kept == sorted(kept) or f"perm {list(perm)} reorders dims that are not 1"


def _cancels(m: Match) -> bool | str:
    inner, outer = m.root.inputs[0].producer.inputs[0].producer, m.root
    if m.x.type.shape != outer.outputs[0].type.shape:
        return "the layout ops around the elementwise op do not cancel"
    if _TRANSPOSE.of(inner) and _TRANSPOSE.of(outer):
        p, q = inner.attrs["perm"], outer.attrs["perm"]
        if [p[i] for i in q] != list(range(len(p))):
            return "the two transposes do not compose to the identity"
    elif _TRANSPOSE.of(inner) or _TRANSPOSE.of(outer):
        return "a transpose and a reshape only cancel when both are views of one order"
    return True


def _hoisted(rw: Rewriter, m: Match) -> object:
    u = m.root.inputs[0].producer
    return rw.op(u.op.name, [m.x], **u.attrs)


ELIMINATE_LAYOUT_RULES = [
    *(Rule(f"{outer}-of-{inner}", Pat(outer, Pat(inner, X)), _to_reshape, doc=f"{outer}({inner}(x)) → one reshape")
      for outer in _RESHAPES for inner in _RESHAPES),
    Rule("unit-transpose", Pat("transpose", X), _to_reshape, check=_moves_only_unit_dims,
         doc="a transpose that moves only size-1 dims → reshape"),
    *(Rule(f"{lay}-{u}-{lay2}", Pat(lay2, Pat(u, Pat(lay, X), single_use=True)), _hoisted, check=_cancels,
           doc=f"{lay2}({u}({lay}(x))) → {u}(x) when the layout ops cancel")
      for u in _UNARY for lay in ("transpose", "reshape") for lay2 in ("transpose", "reshape")),
]


@register_pass("eliminate-layout-ops")
def eliminate_layout_ops(graph: Graph, ctx: PassContext) -> PassResult:
    """Merge chains of layout ops and cancel the ones that undo each other."""
    stats = apply_rules(graph, ELIMINATE_LAYOUT_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
