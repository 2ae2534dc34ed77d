"""prune-magnitude: unstructured pruning — the smallest weights set to zero, globally or per layer.

Zeros keep every shape, so nothing downstream changes; the table gives each layer's fraction of zeros and the seed's
sparsity metric S = Σ|pᵢ|/n before and after. Measured honestly: dense CPU GEMMs do not skip zeros, so this does
not make a model faster (benchmarks/COMPRESSION.md); a saved artifact stores an f32 weight with more than half
zeros as indices + values, so it does make artifacts smaller. It acts on linear and conv layers (run it
after O2's fusions, which turn matmul + add into them) and is the baseline structured pruning must beat.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[1,4]) {
...   const @w: f32[2,4] = external
...   %y: f32[1,2] = linear(%x, @w)
...   return %y
... }''', {"w": np.array([[1, -2, 3, -4], [5, -6, 7, -8]], np.float32)})
>>> r = PassManager.parse("prune-magnitude{sparsity=0.5 min-weights=0}").run(g)
>>> g.value("w").const.tolist()
[[0.0, 0.0, 0.0, 0.0], [5.0, -6.0, 7.0, -8.0]]
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from graphopt.errors import PassError
from graphopt.ir import Graph

from .context import PassContext
from .quantize import layer_ids
from .registry import Budget, PassResult, Row, register_pass

__all__ = ["prune_magnitude"]


@register_pass("prune-magnitude", budget=Budget(cosine=0.9, capacity=True))
def prune_magnitude(graph: Graph, ctx: PassContext, *, sparsity: float = 0.5,
                    ranking: Literal["global", "layer"] = "layer", min_weights: int = 4096) -> PassResult:
    """Zero the `sparsity` fraction of smallest-magnitude weights of linear and conv layers, per layer or with one
    global threshold (layers are then pruned unevenly: small-magnitude layers lose more)."""
    if not 0.0 <= sparsity < 1.0:
        raise PassError(f"prune-magnitude: sparsity must be in [0, 1), got {sparsity}")
    layers = [(n, name) for n, name in layer_ids(graph).items()
              if n.inputs[1].const is not None and n.inputs[1].type.dtype.is_float  # type: ignore[union-attr]
              and n.inputs[1].const.size >= min_weights]
    weights = {n.inputs[1] for n, _ in layers}
    threshold = None
    if ranking == "global" and weights:
        mags = np.concatenate([np.abs(w.const).ravel() for w in weights])  # type: ignore[arg-type]
        k = int(sparsity * mags.size)
        threshold = float(np.partition(mags, k - 1)[k - 1]) if k else -1.0
    rows: list[Row] = []
    done: set[object] = set()
    zeros = total = 0
    for node, name in layers:
        w = node.inputs[1]
        if w in done:
            continue
        done.add(w)
        a = np.asarray(w.const)
        mags = np.abs(a)
        if threshold is None:
            k = int(sparsity * a.size)
            cut = float(np.partition(mags.ravel(), k - 1)[k - 1]) if k else -1.0
        else:
            cut = threshold
        pruned = np.where(mags <= cut, 0, a).astype(a.dtype)
        graph.replace_constant(w, pruned)
        z = int(np.count_nonzero(pruned == 0))
        zeros, total = zeros + z, total + a.size
        rows.append({"layer": name, "zeros": z / a.size, "S-before": float(mags.mean()),
                     "S-after": float(np.abs(pruned).mean())})
    return PassResult(changed=bool(rows) and sparsity > 0, stats={"layers": len(rows),
                      "zeros": zeros / total if total else 0.0}, tables={"layers": rows})
