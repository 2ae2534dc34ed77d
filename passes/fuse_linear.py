"""fuse-linear: matmul by a constant weight (+ bias, + activation) → one `linear` with the weight as [out, in].

Exporters spell a dense layer as `matmul(x, transpose(W))` (folded to a constant `W.T`) followed by `add(., b)`;
`linear` is the op every CPU GEMM library packs weights for, and the bias and a following relu, gelu, silu or tanh
ride in the GEMM's epilogue (`linear {activation=...}`), saving a pass over the output.

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''graph @f(%x: f32[b,3]) {
...   const @w: f32[3,2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
...   const @bias: f32[2] = [0.5, 0.25]
...   %0: f32[b,2] = matmul(%x, @w)
...   %1: f32[b,2] = add(%0, @bias)
...   return %1
... }''')
>>> _ = PassManager.parse("fuse-linear,dce").run(g)
>>> [(n.op.name, n.inputs[1].type.shape, len(n.inputs)) for n in g]
[('linear', (2, 3), 3)]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from graphopt.ir import Dim, Graph, Node, OpRef, TensorType, Value
from graphopt.ir.symbolic import canon, dim_mul

from .context import PassContext
from .pattern import Const, Match, Pat, Var
from .registry import PassResult, register_pass
from .rewrite import Rewriter, Rule, apply_rules

__all__ = ["fuse_linear", "FUSE_LINEAR_RULES"]

X, W, B = Var("x"), Const(name="w"), Const(name="b")


def _batched(w: Value) -> np.ndarray:
    """A constant weight as [batch, in, out] (batch 1 for a plain [in, out] matrix)."""
    return w.const.reshape(-1, *w.type.shape[-2:])


def _operands_ok(x: Value, w: Value) -> bool | str:
    if x.type.rank < 2:
        return f"input %{x.name} has rank {x.type.rank}; linear wants [..., in]"
    if not (x.type.dtype == w.type.dtype and x.type.dtype.is_float):
        return f"dtypes {x.type.dtype}/{w.type.dtype}: linear takes one floating dtype"
    return True


def _weight_ok(m: Match) -> bool | str:
    x, w = m.x, m.w
    if w.type.rank > 2:  # the same matrix for every batch entry, as a folded expand(W) leaves, is still a weight
        out = m.root.outputs[0].type.shape
        if tuple(out) != (*x.type.shape[:-1], w.type.shape[-1]):
            return f"weight @{w.name} {w.type} adds batch dims to the input's"
        data = _batched(w)
        if not np.array_equal(data, np.broadcast_to(data[:1], data.shape)):
            return f"weight @{w.name} {w.type} holds a different matrix per batch entry"
    elif w.type.rank != 2:
        return f"weight @{w.name} has rank {w.type.rank}, not 2"
    return _operands_ok(x, w)


def _to_linear(rw: Rewriter, m: Match) -> object:
    # A transposed view, not a copy: copying every weight made this pass cost its model's bytes (60% of its time
    # on BERT) and raised the peak; a target that wants the [out, in] layout contiguous copies once (weight_tensor).
    weight = rw.derived(m.w, "linear-weight", lambda: _batched(m.w)[0].T)
    return rw.op("linear", [m.x, weight])


def _expand_ok(m: Match) -> bool | str:
    lead, batch = m.x.type.shape[:-2], m.root.inputs[1].type.shape[:-2]
    if tuple(lead) != tuple(batch):
        return f"the weight is expanded to batch dims {list(batch)}, the input has {list(lead)}"
    return _weight_ok(m)


def _lead_dims(rows: Dim, out: tuple[Dim, ...]) -> tuple[Dim, ...] | None:
    """The leading dims of `out` whose product is `rows`, if any."""
    if isinstance(rows, int) and all(isinstance(d, int) for d in out):  # static: no symbolic algebra
        for k in range(len(out) - 1, 0, -1):
            if math.prod(out[:k]) == rows:  # type: ignore[arg-type]
                return tuple(out[:k])
        return None
    for k in range(len(out) - 1, 0, -1):
        if canon(dim_mul(*out[:k])) == canon(rows):
            return tuple(out[:k])
    return None


def _row_dims(m: Match) -> tuple[Dim, ...] | None:
    """The leading dims of the reshape after the linear whose product is the linear's row count, if any."""
    return _lead_dims(m.root.inputs[0].type.shape[0], m.root.outputs[0].type.shape)


def _unflatten_into(mm: Node) -> tuple[Value, tuple[Dim, ...]] | None:
    """For matmul(reshape(x, [rows, in]), W) read only by a reshape that splits the rows again: (x, leading dims).
    torch.export writes every nn.Linear on 3-D input this way; matmul-unflatten turns the three nodes into one
    linear in one rewrite (matmul-to-linear and then linear-unflatten took two, each building a node)."""
    out, flat = mm.outputs[0], mm.inputs[0]
    if out.is_graph_output or out.num_uses != 1 or flat.type.rank != 2 or not _RESHAPE.produced(flat):
        return None
    user = next(iter(out.users))
    if not _RESHAPE.of(user):
        return None
    lead = _lead_dims(flat.type.shape[0], user.outputs[0].type.shape)
    return (flat.producer.inputs[0], lead) if lead is not None else None


def _plain_weight_ok(m: Match) -> bool | str:
    # the structural test first: every matmul of an exported nn.Linear is matmul-unflatten's, and it is cheaper
    if m.w.type.rank == 2 and _unflatten_into(m.root) is not None:
        return "a reshape splits its rows again: matmul-unflatten's case"
    return _weight_ok(m)


def _matmul_unflatten_ok(m: Match) -> bool | str:
    mm = m.root.inputs[0].producer
    found = _unflatten_into(mm) if m.w.type.rank == 2 else None
    if found is None:
        return "not reshape(matmul(reshape(x, [rows, in]), W[in, out])) splitting the rows again"
    m.attrs["unflatten"] = found  # for the replacement: one structural walk per rewrite, not two
    return _operands_ok(mm.inputs[0], m.w)  # what matmul-to-linear checks on the same matmul: exactly one applies


def _matmul_unflattened(rw: Rewriter, m: Match) -> object:
    x, lead = m.attrs["unflatten"]  # found by _matmul_unflatten_ok
    n_in, n_out = m.w.type.shape
    x = x if tuple(x.type.shape) == (*lead, n_in) else rw.op("reshape", [x], shape=[*lead, n_in])
    # Both types are known: the linear's is [*lead, out] in the matmul's dtype, and a reshape to the root's
    # shape attribute gives the root's type (it replaces the root, which _try_rule checks).
    out = m.root.outputs[0].type
    y = rw.op("linear", [x, rw.derived(m.w, "linear-weight", lambda: m.w.const.T)],
              known_type=out if out.rank == len(lead) + 1 else TensorType(out.dtype, (*lead, n_out)))
    return y if out.rank == len(lead) + 1 else rw.op("reshape", [y], known_type=out, **m.root.attrs)


def _unflatten_ok(m: Match) -> bool | str:
    flat = m.root.inputs[0].producer.inputs[0].type
    if flat.rank != 2:
        return f"the linear's input has rank {flat.rank}, not the [rows, in] a flattening reshape makes"
    if _row_dims(m) is None:
        return f"no leading dims of {list(m.root.outputs[0].type.shape)} multiply to the {flat.shape[0]} rows"
    return True


def _unflattened(rw: Rewriter, m: Match) -> object:
    # Both reshapes are row-major, so rows = prod(lead): reshape the input to [*lead, in] instead and let the
    # linear run on it directly; the reshape after it survives only if it also splits the output features.
    lin, lead = m.root.inputs[0].producer, _row_dims(m)
    assert lead is not None  # _unflatten_ok checked it
    x = m.x if tuple(m.x.type.shape) == (*lead, m.w.type.shape[1]) else rw.op(
        "reshape", [m.x], shape=[*lead, m.w.type.shape[1]])
    y = rw.op("linear", [x, *lin.inputs[1:]], **lin.attrs)
    if m.root.outputs[0].type.rank == len(lead) + 1:
        return y
    return rw.op("reshape", [y], **m.root.attrs)


def _flattened_ok(m: Match) -> bool | str:
    lin, x = m.root, m.x
    flat = lin.inputs[0].type
    if x.type.rank < 3 or flat.rank != 2 or x.type.shape[-1] != flat.shape[-1]:
        return f"the reshape into the linear does not flatten the leading dims of {x.type}"
    if _lead_dims(flat.shape[0], x.type.shape) != tuple(x.type.shape[:-1]):
        return f"the {flat.shape[0]} rows are not the leading dims of {x.type}"
    users = lin.outputs[0].users
    if lin.outputs[0].is_graph_output or not users or not all(_RESHAPE.of(u) or _LINEAR.of(u) for u in users):
        return "the linear's result is read by other ops than reshapes and linears"
    return True


def _on_unflattened(rw: Rewriter, m: Match) -> object:
    # A linear runs on [..., in] directly; flattening only after it lets every user reshape collapse into its own
    # (reshape-of-linear-reshape), a user linear sink the flattening further, and the linear read the same value
    # as its siblings, so merge-parallel-linears can join them. ConvBERT's query (read by two reshapes) and
    # MobileBERT's bottleneck (read by the query linear) stayed alone on flattened copies without this.
    y = rw.op("linear", [m.x, *m.root.inputs[1:]], **m.root.attrs)
    return rw.op("reshape", [y], shape=list(m.root.outputs[0].type.shape))


def _from_linear(v: Value) -> bool | str:
    return _LINEAR.produced(v) or "not a linear's result"


def _collapse(rw: Rewriter, m: Match) -> object:
    y, shape = m.root.inputs[0].producer.inputs[0], m.root.outputs[0].type.shape
    return y if tuple(y.type.shape) == tuple(shape) else rw.op("reshape", [y], **m.root.attrs)


def _transposed_ok(m: Match) -> bool | str:
    if tuple(m.root.inputs[1].producer.attrs["perm"]) != (1, 0):
        return "the transpose is not a 2-D [1, 0]"
    return _operands_ok(m.x, m.w)


def _tied(rw: Rewriter, m: Match) -> object:
    return rw.op("linear", [m.x, m.w])  # x @ C.T is linear(x, C): the constant is used as is (tied embeddings)


def _bias_ok(m: Match) -> bool | str:
    lin = next(v.producer for v in m.root.inputs if _LINEAR.produced(v))
    if lin.attrs["activation"] != "none":
        return f"the linear ends in {lin.attrs['activation']}; a bias after it is not its bias"
    n = m.w.type.shape[0]
    b, out = m.b, m.root.outputs[0]
    if b.type.dtype != out.type.dtype:
        return f"bias dtype {b.type.dtype} differs from {out.type.dtype}"
    if b.type.numel() != n or any(d != 1 for d in b.type.shape[:-1]) or (b.type.shape and b.type.shape[-1] != n):
        return f"bias @{b.name}: {b.type} does not broadcast as one value per output feature ({n})"
    if b.type.rank > out.type.rank:
        return "bias has more dims than the output"
    return True


def _with_bias(rw: Rewriter, m: Match) -> object:
    # a 1-D bias (the usual case) is used as is; only a [1, ..., n] one becomes a new constant
    bias = m.b if m.b.type.rank == 1 else rw.derived(m.b, "linear-bias",
                                                     lambda: np.ascontiguousarray(m.b.const.reshape(-1)))
    return rw.op("linear", [m.x, m.w, bias])


def no_activation_yet(m: Match) -> bool | str:
    """Check for `act(producer(...))` rules: the producer (a linear or conv) has no epilogue yet."""
    p = m.root.inputs[0].producer
    return p.attrs["activation"] == "none" or f"the {p.op.name} already ends in {p.attrs['activation']}"


def with_activation(act: str) -> Callable[[Rewriter, Match], object]:
    """Replacement for `act(producer(...))`: the producer again, with `act` as its epilogue."""

    def replace(rw: Rewriter, m: Match) -> object:
        p = m.root.inputs[0].producer
        name = "gelu_tanh" if act == "gelu" and m.root.attrs.get("approximate") == "tanh" else act
        # an activation keeps its input's type, so the fused node has the activation's: no inference needed
        return rw.op(p.op.name, list(p.inputs), known_type=m.root.outputs[0].type, **{**p.attrs, "activation": name})

    return replace


_LINEAR, _RESHAPE = OpRef("linear"), OpRef("reshape")
_ACTS = ("relu", "gelu", "silu", "tanh")
FUSE_LINEAR_RULES = [
    Rule("matmul-to-linear", Pat("matmul", X, W), _to_linear, check=_plain_weight_ok, commute=False,
         doc="matmul(x, C) with C a constant [in, out] → linear(x, C.T)"),
    Rule("matmul-unflatten", Pat("reshape", Pat("matmul", Pat("reshape", X), W)), _matmul_unflattened,
         check=_matmul_unflatten_ok, commute=False,
         doc="reshape(matmul(reshape(x, [rows, in]), C), [*lead, ...]) → linear(x, C.T) on [*lead, in]"),
    Rule("matmul-expanded-weight", Pat("matmul", X, Pat("expand", W)), _to_linear, check=_expand_ok, commute=False,
         doc="matmul(x, expand(C)) over x's own batch dims → linear(x, C.T) (export's batched form of x @ W)"),
    Rule("matmul-transposed-weight", Pat("matmul", X, Pat("transpose", W)), _tied, check=_transposed_ok,
         commute=False, doc="matmul(x, transpose(C)) → linear(x, C) (a tied LM head keeps sharing its weight)"),
    *(Rule(f"linear-unflatten{'-bias' if bias else ''}",
           Pat("reshape", Pat("linear", Pat("reshape", X), W, *([B] if bias else []), single_use=True)),
           _unflattened, check=_unflatten_ok,
           doc="reshape(linear(reshape(x, [rows, in])), [*lead, ...]) → linear on [*lead, in] (linear takes [..., in])")
      for bias in (False, True)),
    *(Rule(f"linear-flattened-input{'-bias' if bias else ''}",
           Pat("linear", Pat("reshape", X), W, *([B] if bias else [])), _on_unflattened, check=_flattened_ok,
           doc="linear(reshape(x, [rows, in])) read by reshapes and linears → reshape(linear(x), [rows, out])")
      for bias in (False, True)),
    Rule("reshape-of-linear-reshape", Pat("reshape", Pat("reshape", Var("y", check=_from_linear))), _collapse,
         doc="reshape(reshape(linear(...))) → reshape(linear(...)), or the linear itself if the shapes agree"),
    Rule("linear-bias", Pat("add", Pat("linear", X, W, single_use=True), B), _with_bias, check=_bias_ok,
         doc="linear(x, W) + b → linear(x, W, b)"),
    *(Rule(f"linear-{act}{'-bias' if bias else ''}", Pat(act, Pat("linear", X, W, *([B] if bias else []),
                                                                 single_use=True)),
           with_activation(act), check=no_activation_yet, doc=f"{act}(linear(...)) → linear(..., activation={act})")
      for act in _ACTS for bias in (False, True)),
]


@register_pass("fuse-linear")
def fuse_linear(graph: Graph, ctx: PassContext) -> PassResult:
    """Turn matmuls by constant weights, and the bias adds after them, into `linear` ops."""
    stats = apply_rules(graph, FUSE_LINEAR_RULES, ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())
