"""merge-parallel-linears: linears that read the same input (attention's Q, K, V projections) → one linear + split.

One GEMM with N = n1 + n2 + n3 streams the input once instead of three times and keeps both cores busy on
one larger problem. Measured on a 2-core AVX2 machine with oneDNN packed weights: 3×(128×768 @ 768×768)
6.48 ms → 6.37 ms merged (2%); at one row (a decoding step) 0.386 → 0.273 ms (29%).

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[2,3]) {
...   const @wq: f32[4,3] = external
...   const @wk: f32[4,3] = external
...   %q: f32[2,4] = linear(%x, @wq)
...   %k: f32[2,4] = linear(%x, @wk)
...   return %q, %k
... }''', constants={"wq": np.ones((4, 3), np.float32), "wk": np.zeros((4, 3), np.float32)})
>>> _ = PassManager.parse("merge-parallel-linears").run(g)
>>> [(n.op.name, n.inputs[1].type.shape if n.op.name == "linear" else n.attrs["sizes"]) for n in g]
[('linear', (8, 3)), ('split', (4, 4))]
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from graphopt.ir import Graph, Node, OpRef, Value

from .context import PassContext
from .registry import PassResult, register_pass
from .rewrite import param_name

_LINEAR = OpRef("linear")

__all__ = ["merge_parallel_linears"]


def _mergeable(n: Node) -> bool:
    return _LINEAR.of(n) and all(v.const is not None for v in n.inputs[1:])


def _merge(graph: Graph, group: list[Node], made: dict[tuple[int, ...], list[Value]]) -> None:
    x, first = group[0].inputs[0], group[0]
    sizes = [n.inputs[1].type.shape[0] for n in group]
    # layers sharing their Q/K/V weights (ALBERT) share the merged weight too: one copy, not one per layer
    key = tuple(id(v) for n in group for v in n.inputs[1:]) + tuple(len(n.inputs) for n in group)
    if key not in made:
        made[key] = _merged_constants(graph, group, sizes)
    operands = [x, *made[key]]
    with graph.inserting_before(first, origin=first.origin):
        merged = graph.add_node("linear", operands, {"activation": first.attrs["activation"]})
        parts = graph.add_node("split", merged.outputs, {"axis": -1, "sizes": sizes})
    for n, part in zip(group, parts.outputs):
        n.outputs[0].replace_all_uses_with(part)
    graph.remove_nodes(group)


def _merged_constants(graph: Graph, group: list[Node], sizes: list[int]) -> list[Value]:
    """The concatenated weight (and bias, zeros for linears without one) of `group`, named after the first."""
    first, dtype = group[0], group[0].inputs[0].type.dtype
    weight = np.concatenate([n.inputs[1].const for n in group])
    merged_name = graph.fresh_name(param_name(first.inputs[1]) + ".merged")  # q.weight.merged for Q, K, V
    out = [graph.add_constant(weight, name=merged_name, dtype=dtype)]
    if any(len(n.inputs) > 2 for n in group):
        # a bias may be a scalar or [1] (broadcast over the outputs); spell each out as [out_features]
        bias = np.concatenate([np.broadcast_to(n.inputs[2].const.reshape(-1), (s,)) if len(n.inputs) > 2
                               else np.zeros(s, dtype.numpy) for n, s in zip(group, sizes)])
        bias_name = param_name(first.inputs[2]) if len(first.inputs) > 2 else merged_name + "_bias"
        out.append(graph.add_constant(bias, name=graph.fresh_name(bias_name + ".merged"), dtype=dtype))
    return out


@register_pass("merge-parallel-linears")
def merge_parallel_linears(graph: Graph, ctx: PassContext) -> PassResult:
    """Merge linears with constant weights that share their input, activation and dtype into one linear + split."""
    groups: dict[tuple[int, str], list[Node]] = defaultdict(list)
    for n in graph:
        if _mergeable(n):
            groups[(id(n.inputs[0]), n.attrs["activation"])].append(n)
    merged = done = 0
    made: dict[tuple[int, ...], list[Value]] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        if len({n.inputs[1].type.dtype for n in group} | {group[0].inputs[0].type.dtype}) != 1:
            ctx.reject("merge-parallel-linears", group[0], "the linears' weights differ in dtype")
            continue
        _merge(graph, group, made)
        merged, done = merged + len(group), done + 1
    return PassResult(changed=merged > 0, stats={"linears-merged": merged, "groups": done})
