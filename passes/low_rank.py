"""low-rank: a linear layer's weight W[out, in] replaced by two thinner ones from its truncated SVD.

    linear(x, W, b)   ⇒   linear(linear(x, V), U, b)      W ≈ U·V,  U = U_r·Σ_r [out, r],  V = V_rᵀ [r, in]

The rank r is the smallest that keeps `energy` of Σσᵢ² (or, with `max-error`, the smallest whose relative
Frobenius error ‖W − UV‖/‖W‖ is within it). A layer is factorized only where it pays: r·(out + in) must be at most
`max-cost` of out·in multiply-adds (two GEMMs are slower than one of the same FLOPs; 0.6 leaves room for that).
With `measure=true` the pass also times the dense layer against the thin pair at `rows` rows on the machine it
runs on, through a `GemmTimer` the caller provides (`graphopt.compile` provides the cpu target's), and keeps the
dense layer unless the pair is at least 5% faster: thin GEMMs ([rows, r] with small r) run far below peak, so
FLOPs alone overstate the gain. The table gives each layer's rank, error and (measured) times, the seed's
per-layer error beside the quantization one.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> rng = np.random.default_rng(0)
>>> w = (rng.standard_normal((64, 4)) @ rng.standard_normal((4, 64))).astype(np.float32)  # rank 4
>>> g = parse('''graph @f(%x: f32[2,64]) {
...   const @w: f32[64,64] = external
...   %y: f32[2,64] = linear(%x, @w)
...   return %y
... }''', {"w": w})
>>> r = PassManager.parse("low-rank{energy=0.999 min-weights=0}").run(g)
>>> [str(n.inputs[1].type) for n in g]
['f32[4,64]', 'f32[64,4]']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from graphopt.errors import PassError
from graphopt.ir import Graph, OpRef

from .context import PassContext
from .quantize import layer_ids
from .registry import Budget, PassResult, Row, register_pass

__all__ = ["low_rank", "choose_rank", "GemmTimer"]

_LINEAR = OpRef("linear")


@dataclass(frozen=True)
class GemmTimer:
    """Times a chain of linears on the machine that will run the model: `chain_ms(rows, [(out, in), ...])` is the
    median milliseconds of applying them in order to a [rows, in] input. Passes cannot import a target (layers point
    one way), so whoever runs the pipeline provides one: `PassContext().provide(GemmTimer(...))`."""

    chain_ms: Callable[[int, Sequence[tuple[int, int]]], float]


_MARGIN = 0.05  # within this the pair and the dense layer tie, and a tie keeps the dense one (exact, one GEMM)


def choose_rank(s: np.ndarray, energy: float, max_error: float) -> int:
    """Smallest rank keeping `energy` of Σσ² — or, if `max_error` > 0, with relative error ≤ `max_error`."""
    sq = s.astype(np.float64) ** 2
    total = sq.sum()
    if total == 0:
        return 1
    tail = np.concatenate([np.cumsum(sq[::-1])[::-1][1:], [0.0]])  # energy left out after keeping k+1 values
    if max_error > 0:
        ok = np.sqrt(tail / total) <= max_error
    else:
        ok = (total - tail) / total >= energy
    return int(np.argmax(ok)) + 1


@register_pass("low-rank", budget=Budget(cosine=0.9, capacity=True))
def low_rank(graph: Graph, ctx: PassContext, *, energy: float = 0.9, max_error: float = 0.0,
             max_cost: float = 0.6, min_weights: int = 16384, skip: tuple[str, ...] = (), measure: bool = False,
             rows: int = 64) -> PassResult:
    """Factorize linear weights by truncated SVD into two linears where the rank keeping `energy` of the spectrum
    (or within `max-error`) makes it at most `max-cost` of the original multiply-adds — and, with `measure`, where
    the pair times at least 5% faster than the dense layer at `rows` rows here (needs a GemmTimer)."""
    if not 0.0 < energy <= 1.0 or max_error < 0 or max_cost <= 0 or rows < 1:
        raise PassError(f"low-rank: need 0 < energy <= 1, max-error >= 0, max-cost > 0, rows >= 1 (got {energy}, "
                        f"{max_error}, {max_cost}, {rows})")
    timer = ctx.need(GemmTimer) if measure else None
    table: list[Row] = []
    kept: list[Row] = []
    changed = 0
    for node, name in layer_ids(graph).items():
        w = node.inputs[1]
        if not _LINEAR.of(node) or w.const is None or not w.type.dtype.is_float:  # type: ignore[union-attr]
            continue
        if name in skip or w.const.size < min_weights:
            kept.append({"layer": name, "reason": "skipped" if name in skip else f"{w.const.size} weights < min"})
            continue
        out_f, in_f = w.const.shape
        u, s, vt = np.linalg.svd(w.const.astype(np.float64), full_matrices=False)
        r = choose_rank(s, energy, max_error)
        cost = r * (out_f + in_f) / (out_f * in_f)
        err = float(np.sqrt((s[r:] ** 2).sum() / max((s ** 2).sum(), 1e-300)))
        if cost > max_cost:
            kept.append({"layer": name, "reason": f"rank {r} costs {cost:.2f} of the dense layer > {max_cost}",
                         "rank": r, "error": err})
            continue
        timing: Row = {}
        if timer is not None:
            dense, pair = timer.chain_ms(rows, [(out_f, in_f)]), timer.chain_ms(rows, [(r, in_f), (out_f, r)])
            timing = {"dense_ms": dense, "pair_ms": pair}
            if pair > dense * (1 - _MARGIN):
                kept.append({"layer": name, "reason": f"rank {r}: the pair takes {pair:.3f} ms against {dense:.3f} "
                             f"ms dense at {rows} rows here", "rank": r, "error": err, **timing})
                continue
        dtype = w.const.dtype
        first = graph.add_constant(np.ascontiguousarray(vt[:r]).astype(dtype), graph.fresh_name(f"{w.name}.v"))
        second = graph.add_constant(np.ascontiguousarray(u[:, :r] * s[:r]).astype(dtype),
                                    graph.fresh_name(f"{w.name}.u"))
        with graph.inserting_before(node):
            thin = graph.add_node("linear", [node.inputs[0], first], {}).outputs[0]
        node.set_input(0, thin)
        node.set_input(1, second)
        changed += 1
        table.append({"layer": name, "shape": [out_f, in_f], "rank": r, "cost": cost, "error": err, **timing})
    for c in [c for c in graph.constants.values() if c.is_dead and not c.output_refs]:
        graph.remove_constant(c)
    return PassResult(changed=changed > 0, stats={"factorized": changed, "kept": len(kept)},
                      tables={"layers": table, "not-factorized": kept})
