"""fuse-rmsnorm: the decomposed RMSNorm (Llama, T5, ONNX exports) → one `rms_norm`.

    y = x · rsqrt(mean(x²) + ε)   (or x / √(…), x · (1 / √(…)), x · reciprocal(√(…)));   out = γ · y

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[2,4]) {
...   const @two: f32[] = 2.0
...   const @eps: f32[] = 1e-6
...   const @w: f32[4] = [1.0, 2.0, 3.0, 4.0]
...   %0: f32[2,4] = pow(%x, @two)
...   %1: f32[2,1] = reduce_mean(%0) {axes=[-1], keepdims=true}
...   %2: f32[2,1] = add(%1, @eps)
...   %3: f32[2,1] = rsqrt(%2)
...   %4: f32[2,4] = mul(%x, %3)
...   %5: f32[2,4] = mul(@w, %4)
...   return %5
... }''')
>>> _ = PassManager.parse("fuse-rmsnorm,dce").run(g)
>>> [(n.op.name, len(n.inputs)) for n in g]
[('rms_norm', 2)]
"""

from __future__ import annotations

import itertools

from graphopt.ir import Graph, OpRef

from .context import PassContext
from .fuse_layernorm import normalized_with, trailing_axes_ok
from .pattern import AttrVar, Const, Match, Pat, Pattern, Var
from .registry import PassResult, register_pass
from .rewrite import Rewriter, Rule, apply_rules

__all__ = ["fuse_rmsnorm", "FUSE_RMSNORM_RULES"]

X, EPS = Var("x"), Const(name="eps")
_RMS_NORM = OpRef("rms_norm")


_check = trailing_axes_ok
_replace = normalized_with("rms_norm")


def _normalized(square: str, norm: str) -> Pattern:
    sq = Pat("pow", X, Const(2.0)) if square == "pow" else Pat("mul", X, X)
    ms = Pat("add", Pat("reduce_mean", sq, axes=AttrVar("axes"), keepdims=True), EPS)
    if norm == "div":
        return Pat("div", X, Pat("sqrt", ms), rounding_mode="none")
    if norm == "recip":  # x · (1 / √…): the TorchScript exporter's torch.rsqrt
        return Pat("mul", X, Pat("div", Const(1.0), Pat("sqrt", ms), rounding_mode="none"))
    if norm == "reciprocal":
        return Pat("mul", X, Pat("reciprocal", Pat("sqrt", ms)))
    return Pat("mul", X, Pat("rsqrt", ms))


def _scale_ok(m: Match) -> bool | str:
    rms = next(v.producer for v in m.root.inputs if _RMS_NORM.produced(v))
    x = rms.inputs[0]
    normalized = tuple(x.type.shape[rms.attrs["axis"] % x.type.rank:])
    if len(rms.inputs) != 1:
        return "the rms_norm already has a scale"
    if m.g.type.dtype != x.type.dtype or tuple(m.g.type.shape) != normalized:
        return f"@{m.g.name}: {m.g.type} is not one scale per normalized element {list(normalized)}"
    return True


def _absorb(rw: Rewriter, m: Match) -> object:
    rms = next(v.producer for v in m.root.inputs if _RMS_NORM.produced(v))
    return rw.op("rms_norm", [rms.inputs[0], m.g], **rms.attrs)


FUSE_RMSNORM_RULES = [
    *(Rule(f"rmsnorm-{sq}-{norm}", _normalized(sq, norm), _replace, check=_check)
      for sq, norm in itertools.product(("pow", "mul"), ("div", "rsqrt", "recip", "reciprocal"))),
    Rule("rmsnorm-scale", Pat("mul", Pat("rms_norm", Var("x"), single_use=True), Const(name="g")), _absorb,
         check=_scale_ok, doc="rms_norm(x) * gamma → rms_norm(x, gamma)"),
]


@register_pass("fuse-rmsnorm")
def fuse_rmsnorm(graph: Graph, ctx: PassContext) -> PassResult:
    """Recognise decomposed RMSNorm (mean of squares, rsqrt or 1/sqrt, then γ) and emit `rms_norm`."""
    stats = apply_rules(graph, FUSE_RMSNORM_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
