"""prune-structured: remove whole heads, neurons and channels, physically — smaller tensors, fewer FLOPs.

For every dependency group in `scope` (see passes/dependency.py: the axes that lose indices together, computed
from the ops' dimension flow), rank its units by importance (passes/importance.py) and remove the lowest `ratio`
of them — per group, or with `global-ranking` over all groups at once (keeping at least one unit per group). The
removal is then carried out: every member constant is cut along its axis, every attribute holding a size (a
reshape's head count, a split's sizes, a depthwise conv's groups) is rewritten by its op's `resize` rule, and types
are re-inferred. `multiple` rounds the units kept to a multiple (GEMMs like multiples of 8).

Pruning changes what the model computes (the removed units' contributions are gone); what it must not change is
the rest: the units kept compute exactly what they computed before. Ratio 0 is the identity, and pruning units
whose weights are zero is exact — tests/test_prune_structured.py checks both, and the tie cases (residual groups,
concat, depthwise and grouped convs, grouped-query attention, tied embeddings).

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> rng = np.random.default_rng(0)
>>> g = parse('''graph @convs(%x: f32[1,3,8,8]) {
...   const @w1: f32[16,3,3,3] = external
...   const @w2: f32[4,16,1,1] = external
...   %h: f32[1,16,6,6] = conv(%x, @w1) {activation="relu"}
...   %y: f32[1,4,6,6] = conv(%h, @w2)
...   return %y
... }''', {"w1": rng.standard_normal((16, 3, 3, 3), np.float32), "w2": rng.standard_normal((4, 16, 1, 1), np.float32)})
>>> r = PassManager.parse("prune-structured{ratio=0.25}").run(g)
>>> str(g.value("w1").type), str(g.value("w2").type)
('f32[12,3,3,3]', 'f32[4,12,1,1]')
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from graphopt.errors import PassError
from graphopt.ir import Graph, Node, OpRef, Value

from .context import PassContext
from .dependency import Conflict, DependencyGroup, Removal, find_groups, node_removals
from .importance import Importance, Saliency, reader_grams, refit_error_picks, unit_scores
from .infer_shapes import infer_shapes
from .reconstruct import InputGrams, refit, relative_error
from .registry import Budget, PassResult, Row, register_pass

__all__ = ["prune_structured", "shrink", "parameter_count"]

_LINEAR = OpRef("linear")
SCOPES = ("heads", "head-dim", "ffn", "channels", "recurrent", "hidden")


def parameter_count(graph: Graph) -> int:
    """Elements in the graph's float constants that some node reads."""
    return sum(int(c.const.size) for c in graph.constants.values()  # type: ignore[union-attr]
               if c.num_uses and c.type is not None and c.type.dtype.is_float)


def shrink(graph: Graph, removal: Removal, ctx: PassContext) -> None:
    """Carry out a closed removal: cut constants, rewrite size attributes, re-infer types."""
    attrs = {}
    for node, removed in node_removals(removal).items():
        if node.op.resize is not None:
            try:
                changed = node.op.resize([v.type for v in node.inputs], [v.type for v in node.outputs],  # type: ignore[misc]
                                         node.attrs, removed)
                attrs[node] = {**node.attrs, **changed}
            except ValueError as e:
                raise PassError(f"prune-structured: cannot resize {node.describe()}: {e}") from None
    per_const: dict[Value, list[tuple[int, list[int]]]] = defaultdict(list)
    for (value, axis), ix in removal.items():
        if value.is_constant:
            per_const[value].append((axis, sorted(ix)))
    for value, cuts in per_const.items():
        data = np.asarray(value.const)
        for axis, cut in cuts:
            data = np.delete(data, cut, axis=axis)
        graph.replace_constant(value, np.ascontiguousarray(data))
    for node, new in attrs.items():
        node.attrs = new
    infer_shapes(graph, ctx)


def _choose(groups: list[DependencyGroup], scores: list[np.ndarray], ratio: float, global_ranking: bool,
            multiple: int) -> list[list[int]]:
    """Per group, the units to remove."""
    def keep_count(units: int, remove: int) -> int:
        keep = max(units - remove, 1)
        if multiple > 1 and units >= multiple:
            keep = min(units, max(multiple, -(-keep // multiple) * multiple))
        return keep

    if not global_ranking:
        out = []
        for g, s in zip(groups, scores):
            keep = keep_count(g.units, int(ratio * g.units))
            out.append(sorted(np.argsort(s, kind="stable")[: g.units - keep].tolist()))
        return out
    pool = sorted((float(s[u]), gi, u) for gi, s in enumerate(scores) for u in range(len(s)))
    budget = int(ratio * len(pool))
    chosen: list[list[int]] = [[] for _ in groups]
    for _, gi, u in pool:
        if budget == 0:
            break
        if groups[gi].units - len(chosen[gi]) > 1:
            chosen[gi].append(u)
            budget -= 1
    return [sorted(c[: groups[gi].units - keep_count(groups[gi].units, len(c))]) for gi, c in enumerate(chosen)]


@register_pass("prune-structured", budget=Budget(cosine=0.5, capacity=True))
def prune_structured(graph: Graph, ctx: PassContext, *, ratio: float = 0.5,
                     importance: Importance = "l2",
                     scope: tuple[str, ...] = ("heads", "ffn", "channels", "recurrent"), global_ranking: bool = False,
                     multiple: int = 1, reconstruct: bool = False) -> PassResult:
    """Remove the least important `ratio` of the units (attention heads, FFN neurons, conv channels, recurrent
    hidden units) of every dependency group in `scope`, shrinking every coupled weight and size attribute; taylor
    and activation importance need calibration data (a Saliency from graphopt.compression). `reconstruct` refits
    the linears that read removed units to the unpruned output by least squares over calibration data (an
    InputGrams; see passes/reconstruct.py); `refit-error` importance ranks units by what that refit cannot recover
    (the same InputGrams; see passes/importance.py)."""
    if not 0.0 <= ratio < 1.0:
        raise PassError(f"prune-structured: ratio must be in [0, 1), got {ratio}")
    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        raise PassError(f"prune-structured: unknown scope {unknown}; scopes: {', '.join(SCOPES)}")
    if multiple < 1:
        raise PassError(f"prune-structured: multiple must be at least 1, got {multiple}")
    saliency = ctx.need(Saliency) if importance in ("taylor", "activation") else None
    grams = ctx.need(InputGrams) if reconstruct or importance == "refit-error" else None
    groups, refused = find_groups(graph)
    kept_rows: list[Row] = [{"group": r.root, "reason": r.reason} for r in refused]
    chosen_groups = []
    for g in groups:
        if g.scope not in scope:
            kept_rows.append({"group": g.name, "reason": f"scope {g.scope} not in {','.join(scope)}"})
        elif g.lossy and "hidden" not in scope:
            kept_rows.append({"group": g.name, "reason": "couples a normalized axis (the residual stream): "
                              "only scope=hidden prunes it"})
        elif importance == "refit-error" and not reader_grams(g):
            kept_rows.append({"group": g.name, "reason": "refit-error importance needs a linear that reads the "
                              "group's units, and none does"})
        else:
            chosen_groups.append(g)
    before = parameter_count(graph)
    known: dict[str, np.ndarray] = {}  # Gram matrices already gathered: the refit reuses the ranking's
    if importance == "refit-error":
        assert grams is not None
        known = grams(graph, sorted({n for g in chosen_groups for n in reader_grams(g)}))
    inverses: dict[str, np.ndarray] = {}  # each reader's inverse Gram, computed once for scores and greedy picks
    scores = [unit_scores(g, importance, saliency, known, inverses) for g in chosen_groups]
    picks = _choose(chosen_groups, scores, ratio, global_ranking, multiple)
    if importance == "refit-error" and not global_ranking:  # per group: the greedy order, not the one-shot scores
        picks = [refit_error_picks(g, len(p), known, inverses=inverses) or [] for g, p in zip(chosen_groups, picks)]
    rows: list[Row] = []
    removals: list[Removal] = []
    for g, s, pick in zip(chosen_groups, scores, picks):
        row: Row = {"group": g.name, "scope": g.scope, "units": g.units, "removed": len(pick),
                    "members": len(g.members(0)), "lowest-kept": float(np.delete(s, pick).min()) if g.units else 0.0}
        if pick:
            try:
                removals.append(g.removal(pick))
            except Conflict as e:  # a union of legal units can still empty an axis shared with another group
                kept_rows.append({"group": g.name, "reason": str(e)})
                continue
        rows.append(row)
    merged: Removal = {}
    for r in removals:
        for ax, ix in r.items():
            merged[ax] = merged.get(ax, frozenset()) | ix
    refitted: list[Row] = []
    if merged:  # groups are closed one by one; their union is closed again (heads and head-dim share axes)
        merged = chosen_groups[0].close(merged)
        fits = _refits(graph, merged, grams, known) if reconstruct and grams is not None else {}
        shrink(graph, merged, ctx)
        refitted = _write_refits(graph, fits)
    after = parameter_count(graph)
    stats = {"groups": len(chosen_groups), "units-removed": sum(len(p) for p in picks),
             "params-before": before, "params-after": after,
             "params-removed-fraction": (before - after) / before if before else 0.0}
    if reconstruct:
        stats["linears-refitted"] = len(refitted)
        return PassResult(changed=bool(merged), stats=stats,
                          tables={"groups": rows, "not-pruned": kept_rows, "refitted": refitted})
    return PassResult(changed=bool(merged), stats=stats, tables={"groups": rows, "not-pruned": kept_rows})


Fit = tuple[np.ndarray, np.ndarray, Row]


def _refits(graph: Graph, removal: Removal, grams: InputGrams, known: dict[str, np.ndarray]) -> dict[Node, Fit]:
    """For every linear whose input units `removal` cuts: its refitted (weight, bias) restricted to the rows it
    keeps, and a report row with the relative output error on the calibration rows of the plain cut and of the
    refit (measured before shrinking)."""
    readers = []
    for node in graph:
        if not _LINEAR.of(node) or (node.inputs[1], 1) not in removal:
            continue
        w, b = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
        consts = [w] if b is None else [w, b]
        # a shared weight (tied embeddings) or a non-float one is cut as it is: a refit would change other readers
        if all(c.is_constant and c.num_uses == 1 and c.type.dtype.is_float for c in consts) and w.type.rank == 2:
            readers.append(node)
    wanted = {n.inputs[0].name for n in readers}
    g = {**grams(graph, sorted(wanted - set(known))), **{k: v for k, v in known.items() if k in wanted}}
    out = {}
    for node in readers:
        w = np.asarray(node.inputs[1].const)
        b = np.asarray(node.inputs[2].const).reshape(-1) if len(node.inputs) > 2 else None
        cut = removal[(node.inputs[1], 1)]
        keep = [i for i in range(w.shape[1]) if i not in cut]
        rows = [i for i in range(w.shape[0]) if i not in removal.get((node.inputs[1], 0), frozenset())]
        gx = g.get(node.inputs[0].name)
        if gx is None or not keep:
            continue
        new_w, new_b = refit(gx, w, b, keep)
        row: Row = {"linear": node.outputs[0].name, "origin": node.origin, "inputs-kept": f"{len(keep)}/{w.shape[1]}",
                    "error-cut": relative_error(gx, w, b, keep, w[:, keep], b),
                    "error-refit": relative_error(gx, w, b, keep, new_w, new_b)}
        out[node] = (new_w[rows].astype(w.dtype), new_b[rows].astype(w.dtype), row)
    return out


def _write_refits(graph: Graph, fits: dict[Node, Fit]) -> list[Row]:
    rows: list[Row] = []
    for node, (w, b, row) in fits.items():
        graph.replace_constant(node.inputs[1], np.ascontiguousarray(w))
        if len(node.inputs) > 2:
            graph.replace_constant(node.inputs[2], np.ascontiguousarray(b.reshape(node.inputs[2].type.shape)))
        else:  # the refit has a bias even where the layer had none: what the removed units contributed on average
            node.inputs = [*node.inputs, graph.add_constant(b, graph.fresh_name(f"{node.inputs[1].name}.bias"))]
        rows.append(row)
    return rows
