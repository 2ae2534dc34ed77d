"""fuse-layernorm: the decomposed LayerNorm exporters emit → one `layer_norm`.

    d = x − mean(x);  y = d / √(mean(d²) + ε)  (or d · rsqrt(...));  out = y · γ + β

over trailing axes, with `d²` as pow(d, 2) or d·d, and with or without the affine part.

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[2,4]) {
...   const @two: f32[] = 2.0
...   const @eps: f32[] = 1e-5
...   %0: f32[2,1] = reduce_mean(%x) {axes=[-1], keepdims=true}
...   %1: f32[2,4] = sub(%x, %0)
...   %2: f32[2,4] = pow(%1, @two)
...   %3: f32[2,1] = reduce_mean(%2) {axes=[-1], keepdims=true}
...   %4: f32[2,1] = add(%3, @eps)
...   %5: f32[2,1] = sqrt(%4)
...   %6: f32[2,4] = div(%1, %5)
...   return %6
... }''')
>>> _ = PassManager.parse("fuse-layernorm,dce").run(g)
>>> [(n.op.name, n.attrs["axis"]) for n in g]
[('layer_norm', 1)]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from graphopt.ir import Graph, OpRef

from .context import PassContext
from .pattern import AttrVar, Const, Match, Pat, Pattern, Var, scalar_of
from .registry import PassResult, register_pass
from .rewrite import Rewriter, Rule, apply_rules

_LAYER_NORM = OpRef("layer_norm")

__all__ = ["fuse_layernorm", "FUSE_LAYERNORM_RULES"]

X, EPS = Var("x"), Const(name="eps")


def trailing_axes_ok(m: Match) -> bool | str:
    """A decomposed norm reduces over the trailing axes (`axes`), with a scalar float epsilon (`eps`)."""
    rank = m.x.type.rank
    axes = sorted(a % rank for a in (m.attrs.get("axes") or ()))
    if not axes or axes != list(range(axes[0], rank)):
        return f"axes {list(m.attrs.get('axes') or [])} are not the trailing axes of a rank-{rank} input"
    if m.eps.const.size != 1 or not m.x.type.dtype.is_float:
        return "epsilon is not a scalar or the input is not floating point"
    return True


def normalized_with(op: str) -> Callable[[Rewriter, Match], object]:
    """Replacement: `op` (layer_norm, rms_norm) over the matched trailing axes with the matched epsilon."""

    def replace(rw: Rewriter, m: Match) -> object:
        axis = min(a % m.x.type.rank for a in m.attrs["axes"])
        return rw.op(op, [m.x], axis=axis, eps=scalar_of(m.eps))

    return replace


_replace = normalized_with("layer_norm")


def _normalized(square: str, norm: str) -> Pattern:
    axes = AttrVar("axes")
    d = Pat("sub", X, Pat("reduce_mean", X, axes=axes, keepdims=True))
    sq = Pat("pow", d, Const(2.0)) if square == "pow" else Pat("mul", d, d)
    var = Pat("add", Pat("reduce_mean", sq, axes=axes, keepdims=True), EPS)
    if norm == "div":
        return Pat("div", d, Pat("sqrt", var), rounding_mode="none")
    return Pat("mul", d, Pat("rsqrt", var))


def _param_ok(which: str) -> Callable[[Match], bool | str]:
    def check(m: Match) -> bool | str:
        ln, p = m.root.inputs[0].producer, m.p
        if not _LAYER_NORM.of(ln):
            ln = m.root.inputs[1].producer
        want = 1 if which == "gamma" else 2
        if len(ln.inputs) != want:
            return f"the layer_norm already has {len(ln.inputs) - 1} affine parameter(s)"
        normalized = tuple(ln.inputs[0].type.shape[ln.attrs["axis"] % ln.inputs[0].type.rank:])
        if p.type.dtype != ln.inputs[0].type.dtype or tuple(p.type.shape) != normalized:
            return f"@{p.name}: {p.type} is not one {which} per normalized element {list(normalized)}"
        return True

    return check


def _absorb(rw: Rewriter, m: Match) -> object:
    ln = m.root.inputs[0].producer
    if not _LAYER_NORM.of(ln):
        ln = m.root.inputs[1].producer
    return rw.op("layer_norm", [*ln.inputs, m.p], **ln.attrs)


FUSE_LAYERNORM_RULES = [
    *(Rule(f"layernorm-{sq}-{norm}", _normalized(sq, norm), _replace, check=trailing_axes_ok)
      for sq, norm in itertools.product(("pow", "mul"), ("div", "rsqrt"))),
    Rule("layernorm-scale", Pat("mul", Pat("layer_norm", Var("x"), single_use=True), Const(name="p")), _absorb,
         check=_param_ok("gamma"), doc="layer_norm(x) * gamma → layer_norm(x, gamma)"),
    Rule("layernorm-bias", Pat("add", Pat("layer_norm", Var("x"), Var("g"), single_use=True), Const(name="p")),
         _absorb, check=_param_ok("beta"), doc="layer_norm(x, gamma) + beta → layer_norm(x, gamma, beta)"),
]


@register_pass("fuse-layernorm")
def fuse_layernorm(graph: Graph, ctx: PassContext) -> PassResult:
    """Recognise decomposed LayerNorm (mean/sub/var/sqrt-or-rsqrt, then γ and β) and emit `layer_norm`."""
    stats = apply_rules(graph, FUSE_LAYERNORM_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
