"""canonicalize: algebraic identities and no-op removal, as a table of rewrite rules.

Every rule here is exact: the result is bit-identical except that `x + 0` turns -0.0 into +0.0 (they compare
equal). Rules that would change a type (broadcasting, promotion) are rejected by their check.
"""

from __future__ import annotations

from graphopt.ir import DType, Graph, TensorType, Value
from graphopt.ir.symbolic import canon, dim_mul

from .context import PassContext
from .pattern import AttrVar, Const, Match, Pat, Var
from .registry import PassResult, register_pass
from .rewrite import Rewriter, Rule, Verdict, apply_rules, same_type

__all__ = ["canonicalize", "CANONICALIZE_RULES"]

X = Var("x")


def _x(rw: Rewriter, m: Match) -> object:
    return m.x


def _compose_transposes(rw: Rewriter, m: Match) -> object:
    inner, outer = m.p1, m.p2
    perm = tuple(inner[p] for p in outer)
    if perm == tuple(range(len(perm))):
        return m.x
    return rw.op("transpose", [m.x], perm=perm, known_type=m.root.outputs[0].type)  # the same permutation


_IDENTITY_PERMS = [tuple(range(n)) for n in range(9)]


def _identity_perm(m: Match) -> bool | str:
    p = m.p
    identity = _IDENTITY_PERMS[len(p)] if len(p) < len(_IDENTITY_PERMS) else tuple(range(len(p)))
    return p == identity or "not the identity permutation"


def _reshape_of_reshape(rw: Rewriter, m: Match) -> object:
    return rw.op("reshape", [m.x], shape=m.shape, known_type=m.root.outputs[0].type)  # the outer reshape's shape


# Exact casts: every value of the source dtype survives the round trip through the middle dtype.
_LOSSLESS = {
    DType.BOOL: set(DType),
    DType.U8: {DType.I16, DType.I32, DType.I64, DType.F16, DType.BF16, DType.F32, DType.F64, DType.U8, DType.U16,
               DType.U32, DType.U64},
    DType.U16: {DType.I32, DType.I64, DType.F32, DType.F64, DType.U16, DType.U32, DType.U64},
    DType.U32: {DType.I64, DType.F64, DType.U32, DType.U64},
    DType.U64: {DType.U64},
    DType.I8: {DType.I16, DType.I32, DType.I64, DType.F16, DType.BF16, DType.F32, DType.F64, DType.I8},
    DType.I16: {DType.I32, DType.I64, DType.F32, DType.F64, DType.I16},
    DType.I32: {DType.I64, DType.F64, DType.I32},
    DType.I64: {DType.I64},
    DType.F16: {DType.F32, DType.F64, DType.F16},
    DType.BF16: {DType.F32, DType.F64, DType.BF16},
    DType.F32: {DType.F64, DType.F32},
    DType.F64: {DType.F64},
}


def _lossless_inner_cast(m: Match) -> bool | str:
    src = m.x.type.dtype
    mid = m.mid
    return mid in _LOSSLESS[src] or f"cast {src} -> {mid} loses information; the two casts do not compose"


def _cast_of_cast(rw: Rewriter, m: Match) -> object:
    if m.dst == m.x.type.dtype:
        return m.x
    return rw.op("cast", [m.x], dtype=m.dst)


def _slice_is_full(m: Match) -> Verdict:
    node = m.root
    if any(s != 0 for s in node.attrs["starts"]) or any(s != 1 for s in node.attrs["steps"] or ()):
        return "not a full slice"
    return same_type("x")(m)


def _bmm_lead(m: Match) -> Verdict:
    """reshape(matmul(P, Q), [*lead, m, n]) with P [L, m, k], Q [L, k, n] and L = prod(lead)."""
    mm, out = m.root.inputs[0].producer, m.root.outputs[0].type
    p, q = mm.inputs[0].type, mm.inputs[1].type
    if p.rank != 3 or q.rank != 3 or out.rank < 4 or p.shape[0] != q.shape[0]:
        return "not a batched matmul of two rank-3 operands split into batch dims"
    if tuple(out.shape[-2:]) != (p.shape[1], q.shape[2]) or canon(dim_mul(*out.shape[:-2])) != canon(p.shape[0]):
        return f"the reshape to {list(out.shape)} does not split the {p.shape[0]} batch rows"
    return True


def _bmm_unflattened(rw: Rewriter, m: Match) -> object:
    # Splitting the batch dim of both operands is row-major consistent with splitting the result's, so the
    # matmul runs on the unflattened operands: the inputs of the flattening reshapes, reshaped once if needed
    # (one rewrite; building on the reshapes themselves left three more for reshape-reshape and reshape-noop).
    mm, lead = m.root.inputs[0].producer, list(m.root.outputs[0].type.shape[:-2])

    def unflattened(flat: Value, source: Value) -> Value:  # reshape the flattening reshape's input, not its output
        want = [*lead, *flat.type.shape[1:]]
        return source if list(source.type.shape) == want else rw.op(
            "reshape", [source], shape=want, known_type=TensorType(source.type.dtype, tuple(want)))

    # the types are known (_bmm_lead checked the shapes), so no node here pays for inference
    return rw.op("matmul", [unflattened(mm.inputs[0], m.p), unflattened(mm.inputs[1], m.q)],
                 known_type=m.root.outputs[0].type)


CANONICALIZE_RULES = [
    Rule("mul-one", Pat("mul", X, Const(1.0)), _x, same_type("x"), doc="x * 1 -> x"),
    Rule("add-zero", Pat("add", X, Const(0.0)), _x, same_type("x"), doc="x + 0 -> x"),
    Rule("sub-zero", Pat("sub", X, Const(0.0)), _x, same_type("x"), doc="x - 0 -> x"),
    Rule("div-one", Pat("div", X, Const(1.0), rounding_mode="none"), _x, same_type("x"), doc="x / 1 -> x"),
    Rule("pow-one", Pat("pow", X, Const(1.0)), _x, same_type("x"), doc="x ** 1 -> x"),
    Rule("identity", Pat("identity", X), _x, doc="identity(x) -> x"),
    Rule("dropout", Pat("dropout", X), _x, doc="dropout(x) -> x at inference"),
    Rule("cast-noop", Pat("cast", X), _x, same_type("x"), doc="cast(x: T, T) -> x"),
    Rule("cast-cast", Pat("cast", Pat("cast", X, dtype=AttrVar("mid")), dtype=AttrVar("dst")), _cast_of_cast,
         _lossless_inner_cast, doc="cast(cast(x, wider), T) -> cast(x, T)"),
    Rule("neg-neg", Pat("neg", Pat("neg", X)), _x, doc="-(-x) -> x"),
    Rule("relu-relu", Pat("relu", Pat("relu", X, name="inner")), lambda rw, m: m.inner, doc="relu(relu(x)) -> relu(x)"),
    Rule("transpose-identity", Pat("transpose", X, perm=AttrVar("p")), _x, _identity_perm, benefit=2,
         doc="transpose(x, identity perm) -> x"),
    Rule("transpose-transpose", Pat("transpose", Pat("transpose", X, perm=AttrVar("p1")), perm=AttrVar("p2")),
         _compose_transposes, doc="transpose(transpose(x, p1), p2) -> transpose(x, p1 o p2)"),
    Rule("reshape-noop", Pat("reshape", X), _x, same_type("x"), benefit=2, doc="reshape to the same shape -> x"),
    Rule("reshape-reshape", Pat("reshape", Pat("reshape", X), shape=AttrVar("shape")), _reshape_of_reshape,
         doc="reshape(reshape(x)) -> reshape(x)"),
    # torch.export writes a 4-D matmul as bmm over [batch*heads, ...] between reshapes; attention fusion and
    # pruning want the heads visible, as ONNX exporters leave them
    Rule("bmm-unflatten", Pat("reshape", Pat("matmul", Pat("reshape", Var("p")), Pat("reshape", Var("q")),
                                             single_use=True)), _bmm_unflattened, _bmm_lead,
         doc="reshape(matmul(reshape(a), reshape(b)), [*lead, m, n]) -> matmul over the unflattened batch dims"),
    Rule("expand-noop", Pat("expand", X), _x, same_type("x"), doc="expand to the same shape -> x"),
    Rule("slice-full", Pat("slice", X), _x, _slice_is_full, doc="slice covering everything -> x"),
    Rule("concat-single", Pat("concat", X), _x, doc="concat of one tensor -> x"),
    # the canonical spellings later fusions match (ONNX exporters write rsqrt and silu out)
    Rule("rsqrt", Pat("reciprocal", Pat("sqrt", X)), lambda rw, m: rw.op("rsqrt", [m.x]),
         doc="1 / sqrt(x) -> rsqrt(x)"),
    Rule("silu", Pat("mul", X, Pat("sigmoid", X)), lambda rw, m: rw.op("silu", [m.x]), doc="x * sigmoid(x) -> silu(x)"),
]


@register_pass("canonicalize", preserves=())
def canonicalize(graph: Graph, ctx: PassContext) -> PassResult:
    """Algebraic identities and no-op removal: x*1, x+0, double transpose, reshape of reshape, identity, dropout,
    no-op casts, ... (see CANONICALIZE_RULES)."""
    stats = apply_rules(graph, CANONICALIZE_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
