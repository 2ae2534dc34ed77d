"""fuse-conv: a convolution's residual add and activation join its epilogue: act(conv(x) + skip) → one `conv`.

A residual block ends in `relu(conv(...) + shortcut)`; oneDNN runs the add and the relu as post-ops of the
convolution, on the output tile still in cache, instead of two more passes over the activation map.

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[1,2,5,5], %skip: f32[1,2,5,5]) {
...   const @w: f32[2,2,1,1] = [[[[1.0]], [[0.5]]], [[[0.0]], [[-1.0]]]]
...   %0: f32[1,2,5,5] = conv(%x, @w)
...   %1: f32[1,2,5,5] = add(%0, %skip)
...   %2: f32[1,2,5,5] = relu(%1)
...   return %2
... }''')
>>> _ = PassManager.parse("fuse-conv,dce").run(g)
>>> [(n.op.name, len(n.inputs), n.attrs["activation"]) for n in g]
[('conv', 4, 'relu')]
"""

from __future__ import annotations

import numpy as np

from graphopt.ir import Graph, Node

from .context import PassContext
from .fuse_linear import no_activation_yet, with_activation
from .pattern import Match, Pat, Var
from .registry import PassResult, register_pass
from .rewrite import Rewriter, Rule, apply_rules

__all__ = ["fuse_conv", "FUSE_CONV_RULES"]

X, W, B, R, SKIP = Var("x"), Var("w"), Var("b"), Var("r"), Var("skip")
_ACTS = ("relu", "gelu", "silu", "tanh")


def _conv_of(m: Match) -> Node:
    """The matched conv: the add's operand that is not the skip. (When both operands are convs, the first conv
    found is not necessarily the one the pattern bound x and w from; its bias and attributes would be wrong.)"""
    return next(v.producer for v in m.root.inputs if v is not m.skip and v.producer is not None)


def _residual_ok(m: Match) -> bool | str:
    conv = _conv_of(m)
    if conv.attrs["activation"] != "none":
        return f"the conv ends in {conv.attrs['activation']}; an add after it is not a residual of its sum"
    out = m.root.outputs[0]
    if m.skip.type != out.type:
        return f"the skip %{m.skip.name} is {m.skip.type}, the sum {out.type}: a broadcast is no residual"
    return True


def _with_residual(rw: Rewriter, m: Match) -> object:
    conv = _conv_of(m)
    bias = conv.inputs[2] if len(conv.inputs) > 2 else rw.const(np.zeros(m.w.type.shape[0], m.x.type.dtype.numpy))
    return rw.op("conv", [m.x, m.w, bias, m.skip], **conv.attrs)


_OPERANDS = ((X, W), (X, W, B), (X, W, B, R))
FUSE_CONV_RULES = [
    *(Rule(f"conv-residual{'-bias' if len(ops) > 2 else ''}", Pat("add", Pat("conv", *ops, single_use=True), SKIP),
           _with_residual, check=_residual_ok, doc="conv(x) + skip → conv(x, residual=skip)")
      for ops in _OPERANDS[:2]),
    *(Rule(f"conv-{act}-{len(ops)}", Pat(act, Pat("conv", *ops, single_use=True)), with_activation(act),
           check=no_activation_yet, doc=f"{act}(conv(...)) → conv(..., activation={act})")
      for act in _ACTS for ops in _OPERANDS),
]


@register_pass("fuse-conv")
def fuse_conv(graph: Graph, ctx: PassContext) -> PassResult:
    """Fold residual adds and activations after convolutions into the convolution's epilogue."""
    stats = apply_rules(graph, FUSE_CONV_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
