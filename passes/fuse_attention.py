"""fuse-attention: softmax(Q·Kᵀ·scale + mask)·V, in whatever layout the exporter left it, → one SDPA op.

Exporters disagree on the spelling: torch.export's decomposed SDPA scales Q and K by √scale each, merges batch and
heads into one dim around the matmuls and guards fully-masked rows with a `where`; eager attention divides the
scores; ONNX exports transpose K explicitly. So the matcher does not insist on one op sequence. From every softmax
over the last axis it walks *through* the layout ops that do not change the math (reshapes merging batch and heads,
scalar multiplies and divides, the zero-guard) to the three 4-D operands, and either fuses or records which
constraint failed at which node (`PassContext(explain=True)`, `graphopt explain`).

Rows whose every score is -inf give 0 (as torch's SDPA and the guarded exports do) where an unguarded spelling
would give NaN; nothing else changes beyond float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphopt.ir import Dim, Graph, Node, OpRef, Value
from graphopt.ir.symbolic import canon, dim_mul

from .context import PassContext
from .pattern import scalar_of
from .registry import PassResult, register_pass

__all__ = ["fuse_attention"]

_ADD, _MUL, _DIV, _RESHAPE, _MATMUL, _FULL, _WHERE, _ISNAN, _SOFTMAX = map(
    OpRef, ("add", "mul", "div", "reshape", "matmul", "full", "where", "isnan", "softmax"))


class _Reject(Exception):
    def __init__(self, reason: str, node: Node | None = None) -> None:
        super().__init__(reason)
        self.node = node


@dataclass
class _Site:
    q: Value
    kt: Value  # Kᵀ as [B, H, D, S]
    v: Value
    mask: Value | None
    scale: float
    mask_scale: float  # a scale applied after the mask add scales the mask too: softmax(s·(QKᵀ + M))
    out: Value  # the value the fused op replaces
    dead: list[Node] = field(default_factory=list)
    heads: tuple[Dim, Dim] | None = None  # (batch, heads) to split a [batch*heads, seq, dim] V into


def _merges_heads(src: Value, dst: Value) -> bool:
    """dst = reshape(src) from [B, H, X, Y] (or [B, Hkv, reps, X, Y] for grouped KV heads) to [B*H, X, Y]."""
    s, d = src.type.shape, dst.type.shape
    return len(s) in (4, 5) and len(d) == 3 and canon(dim_mul(*s[:-2])) == canon(d[0]) and s[-2:] == d[1:]


def _to_4d(v: Value) -> tuple[Value, float]:
    """Walk back through scalar multiplies/divides and a heads-merging reshape to a 4-D value; collect the scale.

    A 5-D [B, Hkv, reps, S, D] source (grouped-query attention's repeated KV heads) is returned as is; the
    rewrite reshapes it to [B, Hkv*reps, S, D]."""
    scale = 1.0
    while v.producer is not None:
        n = v.producer
        if _MUL.of(n) and (scalar_of(n.inputs[1]) is not None or scalar_of(n.inputs[0]) is not None):
            c = scalar_of(n.inputs[1])
            scale *= c if c is not None else scalar_of(n.inputs[0])  # type: ignore[operator]
            v = n.inputs[0] if c is not None else n.inputs[1]
        elif _DIV.of(n) and scalar_of(n.inputs[1]) is not None and n.attrs["rounding_mode"] == "none":
            scale /= scalar_of(n.inputs[1])  # type: ignore[operator]
            v = n.inputs[0]
        elif _RESHAPE.of(n) and _merges_heads(n.inputs[0], v):
            v = n.inputs[0]
        else:
            break
    if v.type.rank not in (4, 5):
        raise _Reject(f"%{v.name} is not a 4-D [batch, heads, seq, dim] tensor", v.producer)
    return v, scale


def _reaches_matmul(v: Value) -> bool:
    while any(op.produced(v) for op in (_RESHAPE, _MUL, _DIV)):
        v = v.producer.inputs[0]
    return _MATMUL.produced(v)


def _is_zero(v: Value) -> bool:
    if v.const is not None:
        return not np.any(v.const)
    return _FULL.produced(v) and v.producer.attrs["value"] == 0.0  # type: ignore[union-attr]


def _unguard(p: Value, sm: Node) -> tuple[Value, list[Node]]:
    """Skip the guard exporters put after the softmax for fully masked rows: `where(rows_all_masked, 0, p)`
    (torch.export) or `where(isnan(p), 0, p)` (ONNX); return (guarded value, guard nodes)."""
    guards = [u for u in p.users if _WHERE.of(u) and u.inputs[2] is p and _is_zero(u.inputs[1])]
    if len(guards) != 1:
        return p, []
    w = guards[0]
    others = [u for u in p.users if u is not w]
    if all(_ISNAN.of(u) and [x for x in u.outputs[0].users] == [w] for u in others):
        return w.outputs[0], [w, *others]
    return p, []


def _match(sm: Node) -> _Site:
    x = sm.inputs[0]
    if sm.attrs["axis"] not in (-1, x.type.rank - 1):
        raise _Reject("softmax is not over the last axis", sm)
    # consumer side: (guard) → (heads-merging reshape) → matmul(P, V)
    p, guard = _unguard(sm.outputs[0], sm)
    if sm.outputs[0].output_refs or p.output_refs:
        raise _Reject(f"the attention probabilities %{p.name} are a graph output (output_attentions?)", sm)
    if len(p.users) != 1:
        raise _Reject(f"the attention probabilities %{p.name} have {len(p.users)} users (need exactly one, the ·V "
                      "matmul)", sm)
    user = p.users[0]
    heads: tuple[Dim, Dim] | None = None  # (batch, heads) when P·V runs with batch and heads merged
    if _RESHAPE.of(user) and _merges_heads(p, user.outputs[0]) and len(user.outputs[0].users) == 1:
        heads = tuple(p.type.shape[:2]) if p.type.rank == 4 else None  # type: ignore[assignment]
        user = user.outputs[0].users[0]
    if not _MATMUL.of(user) or user.inputs[1] is p:
        raise _Reject(f"the probabilities feed {user.op.name}, not the left side of a matmul with V", user)
    v_in = user.inputs[1]
    if heads is not None and v_in.type.rank == 3 and canon(dim_mul(*heads)) == canon(v_in.type.shape[0]):
        # nn.MultiheadAttention lays V out as [batch*heads, seq, dim] (b-major, as P was merged): split it back
        v4, v_scale = v_in, 1.0
    else:
        v4, v_scale = _to_4d(v_in)
    if v_scale != 1.0:
        raise _Reject("V is scaled", user)
    # producer side: scores = (matmul(Q, Kᵀ) (reshaped) · scale) + mask
    # Walking back from the softmax, a scale seen before the add was applied after it, to the mask as well.
    s, mask, post, mask_scale = x, None, 1.0, 1.0
    while s.producer is not None:
        n = s.producer
        if _ADD.of(n) and mask is None:
            pick = next((i for i, v in enumerate(n.inputs) if _reaches_matmul(v)), None)
            if pick is None:
                raise _Reject("neither operand of the score add comes from a Q·Kᵀ matmul", n)
            s, mask, mask_scale = n.inputs[pick], n.inputs[1 - pick], post
        elif _RESHAPE.of(n) and (_merges_heads(s, n.inputs[0]) or _merges_heads(n.inputs[0], s)):
            s = n.inputs[0]
        elif (_MUL.of(n) or _DIV.of(n)) and scalar_of(n.inputs[1]) is not None:
            c = scalar_of(n.inputs[1])
            post = post * c if _MUL.of(n) else post / c  # type: ignore[operator]
            s = n.inputs[0]
        else:
            break
    if not _MATMUL.produced(s):
        raise _Reject("no Q·Kᵀ matmul feeds the softmax", sm)
    qk = s.producer
    q4, q_scale = _to_4d(qk.inputs[0])
    kt4, k_scale = _to_4d(qk.inputs[1])
    if mask is not None and mask.type.rank > 4:
        raise _Reject("the mask has more than 4 dims", sm)
    out = user.outputs[0]
    if not (q4.type.dtype == kt4.type.dtype == v4.type.dtype and q4.type.dtype.is_float):
        raise _Reject("Q, K and V differ in dtype or are not floating point", qk)
    if mask is not None and mask.type.dtype not in (q4.type.dtype,):
        raise _Reject(f"the mask is {mask.type.dtype}, not {q4.type.dtype}", sm)
    return _Site(q4, kt4, v4, mask, q_scale * k_scale * post, mask_scale, out, guard, heads)


def _as_4d(graph: Graph, created: list[Node], v: Value, heads: tuple[Dim, Dim] | None = None) -> Value:
    if v.type.rank == 4:
        return v
    if v.type.rank == 3 and heads is not None:
        created.append(graph.add_node("reshape", [v], {"shape": (*heads, *v.type.shape[1:])}))
        return created[-1].outputs[0]
    b, *kv_heads, x, y = v.type.shape  # GQA's [B, Hkv, reps, S, D]: merge the head axes
    created.append(graph.add_node("reshape", [v], {"shape": (b, dim_mul(*kv_heads), x, y)}))
    return created[-1].outputs[0]


@register_pass("fuse-attention")
def fuse_attention(graph: Graph, ctx: PassContext) -> PassResult:
    """Replace each softmax(Q·Kᵀ·scale + mask)·V with scaled_dot_product_attention; report the sites it rejects."""
    fused = rejected = 0
    for sm in [n for n in graph if _SOFTMAX.of(n)]:
        try:
            site = _match(sm)
        except _Reject as r:
            rejected += 1
            ctx.reject("fuse-attention", r.node or sm, str(r))
            continue
        out_node = site.out.producer
        assert out_node is not None
        created: list[Node] = []
        with graph.inserting_before(out_node):
            if site.mask is not None and site.mask.type.rank < 2:  # SDPA kernels want a [.., L, S] mask
                shape = (1,) * (2 - site.mask.type.rank) + tuple(site.mask.type.shape)
                created.append(graph.add_node("reshape", [site.mask], {"shape": shape}))
                site.mask = created[-1].outputs[0]
            if site.mask is not None and site.mask_scale != 1.0:  # SDPA adds the mask after scaling Q·Kᵀ
                factor = graph.add_constant(np.array(site.mask_scale, site.mask.type.dtype.numpy))
                created.append(graph.add_node("mul", [site.mask, factor]))
                site.mask = created[-1].outputs[0]
            q, kt = (_as_4d(graph, created, t) for t in (site.q, site.kt))
            v = _as_4d(graph, created, site.v, site.heads)
            created.append(graph.add_node("transpose", [kt], {"perm": (0, 1, 3, 2)}))
            args = [q, created[-1].outputs[0], v] + ([site.mask] if site.mask is not None else [])
            created.append(graph.add_node("scaled_dot_product_attention", args,
                                          {"scale": site.scale, "causal": False}))
            y = created[-1].outputs[0]
            if y.type.shape != site.out.type.shape and canon(dim_mul(*y.type.shape)) == canon(dim_mul(*site.out.type.shape)):
                created.append(graph.add_node("reshape", [y], {"shape": site.out.type.shape}))
                y = created[-1].outputs[0]
        if y.type != site.out.type:  # e.g. a mask laid out for merged heads: leave this site alone
            graph.remove_nodes(created)
            rejected += 1
            ctx.reject("fuse-attention", sm, f"the fused result would be {y.type}, not {site.out.type}")
            continue
        site.out.replace_all_uses_with(y)
        fused += 1
    if fused:
        from .dce import dce

        dce(graph, ctx)
    return PassResult(changed=fused > 0, stats={"fused": fused, "rejected": rejected})
