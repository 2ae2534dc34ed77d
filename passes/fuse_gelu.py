"""fuse-gelu: GELU spelled out with erf or tanh (ONNX exports before opset 20, hand-written models) → `gelu`.

    0.5 · x · (1 + erf(x / √2))                         → gelu(x)
    0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))  → gelu(x) {approximate="tanh"}

Constants are matched to 1e-4 relative; x/√2 may be written x · (1/√2), x³ as pow(x, 3) or x·x·x, and the halving
may sit on either factor.

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[4]) {
...   const @r2: f32[] = 1.4142135
...   const @one: f32[] = 1.0
...   const @half: f32[] = 0.5
...   %0: f32[4] = div(%x, @r2)
...   %1: f32[4] = erf(%0)
...   %2: f32[4] = add(%1, @one)
...   %3: f32[4] = mul(%x, %2)
...   %4: f32[4] = mul(%3, @half)
...   return %4
... }''')
>>> _ = PassManager.parse("fuse-gelu,dce").run(g)
>>> [(n.op.name, n.attrs["approximate"]) for n in g]
[('gelu', 'none')]
"""

from __future__ import annotations

import math
from typing import Any

from graphopt.ir import Graph

from .context import PassContext
from .pattern import Const, Match, Pat, Pattern, Var
from .registry import PassResult, register_pass
from .rewrite import Rule, apply_rules

__all__ = ["fuse_gelu", "FUSE_GELU_RULES"]

X = Var("x")
_WANT = {"half": 0.5, "one": 1.0, "r2": math.sqrt(2.0), "ir2": 1 / math.sqrt(2.0), "c": math.sqrt(2 / math.pi),
         "k": 0.044715, "three": 3.0}


def _constants_ok(m: Match) -> bool | str:
    for name, want in _WANT.items():
        v = m.values.get(name)
        if v is None:
            continue
        if v.const.size != 1 or abs(float(v.const.reshape(())) - want) > 1e-4 * abs(want):
            return f"@{v.name} = {v.const.reshape(-1)[:1]} is not {want:.6g}"
    return m.x.type.dtype.is_float or f"%{m.x.name} is {m.x.type.dtype}"


def _gelu(approximate: str) -> Any:
    return lambda rw, m: rw.op("gelu", [m.x], approximate=approximate)


def C(name: str) -> Const:  # noqa: N802 - reads like the math
    return Const(name=name)


def _erf_inner() -> list[Pattern]:
    return [Pat("erf", Pat("div", X, C("r2"), rounding_mode="none")), Pat("erf", Pat("mul", X, C("ir2")))]


def _tanh_inner() -> list[Pattern]:
    cubes = [Pat("pow", X, C("three")), Pat("mul", Pat("mul", X, X), X)]
    return [Pat("tanh", Pat("mul", Pat("add", X, Pat("mul", cube, C("k"))), C("c"))) for cube in cubes]


def _shapes(inner: Pattern) -> list[Pattern]:
    """0.5·x·(1+t) in the groupings exporters emit."""
    one_plus = Pat("add", inner, C("one"))
    return [Pat("mul", Pat("mul", X, one_plus), C("half")),
            Pat("mul", Pat("mul", X, C("half")), one_plus),
            Pat("mul", X, Pat("mul", one_plus, C("half")))]


FUSE_GELU_RULES = [
    *(Rule(f"gelu-erf-{i}", p, _gelu("none"), check=_constants_ok)
      for i, p in enumerate(s for inner in _erf_inner() for s in _shapes(inner))),
    *(Rule(f"gelu-tanh-{i}", p, _gelu("tanh"), check=_constants_ok)
      for i, p in enumerate(s for inner in _tanh_inner() for s in _shapes(inner))),
]


@register_pass("fuse-gelu")
def fuse_gelu(graph: Graph, ctx: PassContext) -> PassResult:
    """Replace erf- and tanh-form GELU subgraphs with the `gelu` op."""
    stats = apply_rules(graph, FUSE_GELU_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
