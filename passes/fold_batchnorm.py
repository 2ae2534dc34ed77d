"""fold-batchnorm: inference BatchNorm after a convolution or linear layer folded into its weights and bias.

    conv(x, W, b) → batch_norm(·, γ, β, μ, σ²)   ⇒   conv(x, W·s, (b − μ)·s + β)   with s = γ / √(σ² + ε)

(per output channel; for `linear` the channel is the last axis of a 2-D output). One GEMM/convolution instead of
a convolution plus a pass over its output; computed in float64 and rounded once to the weight dtype.

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[1,1,4,4]) {
...   const @w: f32[2,1,1,1] = [[[[1.0]]], [[[2.0]]]]
...   const @g: f32[2] = [1.0, 1.0]
...   const @b: f32[2] = [0.0, 1.0]
...   const @m: f32[2] = [0.0, 0.5]
...   const @v: f32[2] = [1.0, 4.0]
...   %0: f32[1,2,4,4] = conv(%x, @w)
...   %1: f32[1,2,4,4] = batch_norm(%0, @g, @b, @m, @v) {eps=0.0}
...   return %1
... }''')
>>> _ = PassManager.parse("fold-batchnorm,dce").run(g)
>>> [n.op.name for n in g], [float(v) for v in next(iter(g)).inputs[2].const]
(['conv'], [0.0, 0.75])
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import Graph, Node, OpRef

from .context import PassContext
from .pattern import Const, Match, Pat, Var
from .registry import PassResult, register_pass
from .rewrite import Rewriter, Rule, apply_rules

_LINEAR = OpRef("linear")

__all__ = ["fold_batchnorm"]

X, W = Var("x"), Const(name="w")
BN = dict(gamma=Const(name="gamma"), beta=Const(name="beta"), mean=Const(name="mean"), var=Const(name="var"))


def _layer(m: Match) -> Node:
    layer = m.root.inputs[0].producer
    assert layer is not None  # the pattern matched a node there
    return layer


def _check(m: Match) -> bool | str:
    layer = _layer(m)
    # BN(act(layer(x))) is not act(BN∘layer(x)), and BN(layer(x) + skip) scales the skip too: only a bare
    # layer's output is affine in its weights.
    if layer.attrs["activation"] != "none":
        return f"the {layer.op.name} ends in {layer.attrs['activation']}; batch_norm after it does not fold"
    if len(layer.inputs) > 3:
        return f"the {layer.op.name} adds a residual; batch_norm after it does not fold"
    if _LINEAR.of(layer) and layer.outputs[0].type.rank != 2:
        return "batch_norm after a linear folds only for a 2-D output"
    if not m.w.type.dtype.is_float:
        return f"weights are {m.w.type.dtype}"
    return True


def _fold(rw: Rewriter, m: Match) -> object:
    layer = _layer(m)
    eps = m.root.attrs["eps"]
    scale = m.gamma.const.astype(np.float64) / np.sqrt(m.var.const.astype(np.float64) + eps)
    w = m.w.const.astype(np.float64)
    shape = (-1,) + (1,) * (w.ndim - 1)  # output channels lead both conv [M, C, k...] and linear [out, in]
    w_new = (w * scale.reshape(shape)).astype(m.w.const.dtype)
    b_old = layer.inputs[2].const.astype(np.float64) if len(layer.inputs) > 2 else 0.0
    b_new = ((b_old - m.mean.const) * scale + m.beta.const).astype(m.w.const.dtype)
    bias_like = layer.inputs[2] if len(layer.inputs) > 2 else m.beta
    return rw.op(layer.op.name, [m.x, rw.const(w_new, like=m.w), rw.const(b_new, like=bias_like)], **layer.attrs)


def _rules() -> list[Rule]:
    rules = []
    for op in ("conv", "linear"):
        for bias in (False, True):
            inner = Pat(op, X, W, *([Const(name="b0")] if bias else []), single_use=True)
            rules.append(Rule(f"{op}{'-bias' if bias else ''}-batchnorm",
                              Pat("batch_norm", inner, BN["gamma"], BN["beta"], BN["mean"], BN["var"]),
                              _fold, check=_check, commute=False, doc=f"{op} then batch_norm → one {op}"))
    return rules


FOLD_BATCHNORM_RULES = _rules()


@register_pass("fold-batchnorm")
def fold_batchnorm(graph: Graph, ctx: PassContext) -> PassResult:
    """Fold inference batch_norm into the conv/linear before it (constant weights and statistics)."""
    stats = apply_rules(graph, FOLD_BATCHNORM_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
