"""ATen ops that graphopt expresses through several IR ops: inverse trig, atan2, flip, sort, vector norms, group
norm, masked index_put, scatter_add, transposed convolution, clamp with tensor bounds, log2/log10/exp2.

They are what small real models and PyTorch's OpInfo sweep hit (benchmarks/opinfo.py). Each is a decomposition
into ops every target already runs, so the reference, cpu and onnxruntime targets get them at once; the fusion
passes see the pieces (a group norm's mean/var, an L2 norm's sum of squares) as they see ONNX's decompositions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphopt.ir import SLICE_END, DType, Value

__all__ = ["conv_transposed"]

from .aten import _scalar, converter, op_name

for _op in ("asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "tan"):
    converter(f"aten.{_op}.default")(lambda cx, node, x, _ir=_op: cx.op(_ir, [x]))


def _const(cx: Any, value: float, like: Value) -> Value:
    return cx.const(value, like.type.dtype)


@converter("aten.atan2.default")
def _atan2(cx: Any, node: Any, y: Value, x: Value) -> Value:
    """atan(y/x) moved to the right quadrant; x == 0 gives ±pi/2 (or 0 at the origin), as torch does."""
    base = cx.op("atan", [cx.op("div", [y, x], rounding_mode="none")])
    zero = _const(cx, 0.0, y)
    pi = _const(cx, math.pi, y)
    upper = cx.op("ge", [y, zero])
    left = cx.op("where", [upper, cx.op("add", [base, pi]), cx.op("sub", [base, pi])])
    axis = cx.op("where", [cx.op("gt", [y, zero]), _const(cx, math.pi / 2, y),
                           cx.op("where", [cx.op("lt", [y, zero]), _const(cx, -math.pi / 2, y), zero])])
    return cx.op("where", [cx.op("gt", [x, zero]), base,
                           cx.op("where", [cx.op("lt", [x, zero]), left, axis])])


@converter("aten.flip.default")
def _flip(cx: Any, node: Any, x: Value, dims: Sequence[int]) -> Value:
    axes = [d % x.type.rank for d in dims]
    if not axes:
        return cx.op("identity", [x])
    return cx.op("slice", [x], starts=[-1] * len(axes), ends=[-SLICE_END] * len(axes), axes=axes,
                 steps=[-1] * len(axes))


@converter("aten.sort.default", "aten.sort.stable")
def _sort(cx: Any, node: Any, x: Value, *args: Any, **kwargs: Any) -> Any:
    if op_name(node.target) == "aten.sort.stable":  # (self, *, stable, dim, descending)
        dim, descending = kwargs.get("dim", -1), kwargs.get("descending", False)
    else:
        dim = args[0] if args else kwargs.get("dim", -1)
        descending = args[1] if len(args) > 1 else kwargs.get("descending", False)
    if x.type.rank == 0:
        return cx.op("identity", [x]), cx.const(np.array(0, np.int64), DType.I64)
    n = x.type.shape[dim % x.type.rank]
    if not isinstance(n, int):
        raise NotImplementedError("sort along a symbolic dim")
    # the IR's topk is stable (argsort kind="stable"), so ties keep their order as torch's stable sort does
    return cx.op("topk", [x], k=n, axis=dim, largest=bool(descending), sorted=True)


@converter("aten.linalg_vector_norm.default")
def _vector_norm(cx: Any, node: Any, x: Value, ord: Any = 2, dim: Any = None, keepdim: bool = False,  # noqa: A002
                 dtype: Any = None) -> Value:
    if dtype is not None and DType.from_torch(dtype) != x.type.dtype:
        x = cx.op("cast", [x], dtype=DType.from_torch(dtype))
    axes = None if dim is None or dim == [] else [dim] if isinstance(dim, int) else list(dim)
    kw = {"axes": axes, "keepdims": bool(keepdim)}
    a = cx.op("abs", [x])
    if ord == math.inf:
        return cx.op("reduce_max", [a], **kw)
    if ord == -math.inf:
        return cx.op("reduce_min", [a], **kw)
    if ord == 0:
        nz = cx.op("cast", [cx.op("ne", [x, _const(cx, 0.0, x)])], dtype=x.type.dtype)
        return cx.op("reduce_sum", [nz], **kw)
    if ord == 1:
        return cx.op("reduce_sum", [a], **kw)
    if ord == 2:
        return cx.op("sqrt", [cx.op("reduce_sum", [cx.op("mul", [x, x])], **kw)])
    p = float(ord)
    powered = cx.op("reduce_sum", [cx.op("pow", [a, _const(cx, p, x)])], **kw)
    return cx.op("pow", [powered, _const(cx, 1.0 / p, x)])


@converter("aten.native_group_norm.default")
def _group_norm(cx: Any, node: Any, x: Value, w: Any, b: Any, n: Any, c: Any, hw: Any, groups: int,
                eps: float) -> Any:
    """Normalize over (channels of a group, spatial) per sample: reshape [N, G, C/G * HW], mean and variance,
    reshape back, then the per-channel affine."""
    shape = list(x.type.shape)
    c = shape[1]
    if not isinstance(c, int):
        raise NotImplementedError("group norm over a symbolic channel count")
    g = cx.op("reshape", [x], shape=[shape[0], groups, -1])
    mean = cx.op("reduce_mean", [g], axes=[2], keepdims=True)
    centered = cx.op("sub", [g, mean])
    var = cx.op("reduce_mean", [cx.op("mul", [centered, centered])], axes=[2], keepdims=True)
    rstd = cx.op("rsqrt", [cx.op("add", [var, _const(cx, float(eps), x)])])
    y = cx.op("reshape", [cx.op("mul", [centered, rstd])], shape=shape)
    bshape = [c] + [1] * (len(shape) - 2)
    if w is not None:
        y = cx.op("mul", [y, cx.op("reshape", [w], shape=bshape)])
    if b is not None:
        y = cx.op("add", [y, cx.op("reshape", [b], shape=bshape)])
    return (y, cx.op("reshape", [mean], shape=[shape[0], groups]),
            cx.op("reshape", [rstd], shape=[shape[0], groups]))


@converter("aten.index_put.default", "aten.index_put_.default")
def _index_put(cx: Any, node: Any, x: Value, indices: Sequence[Any], values: Value,
               accumulate: bool = False) -> Value:
    """`y[y < 0] = 0`: one boolean mask of x's shape is a select; integer indices are a scatter."""
    used = [t for t in indices if t is not None]
    if len(used) == 1 and used[0].type.dtype == DType.BOOL and len(indices) == 1 \
            and used[0].type.shape == x.type.shape[: used[0].type.rank]:
        mask = used[0]
        if values.type.rank > 0 and any(d != 1 for d in values.type.shape):
            return _masked_put(cx, x, mask, values, accumulate)
        while mask.type.rank < x.type.rank:
            mask = cx.op("unsqueeze", [mask], axes=[mask.type.rank])
        v = values if values.type.rank == 0 else cx.op("reshape", [values], shape=[])
        v = v if v.type.dtype == x.type.dtype else cx.op("cast", [v], dtype=x.type.dtype)
        if accumulate:
            return cx.op("add", [x, cx.op("where", [mask, v, _const(cx, 0, x)])])
        return cx.op("where", [mask, v, x])
    if len(used) == len(indices) and all(t.type.dtype.is_int for t in used):
        # x[i0, i1, ...] = values: ScatterND over the leading len(indices) axes
        k = len(indices)
        lead = [cx.op("unsqueeze", [t], axes=[-1]) for t in used]
        idx = lead[0] if k == 1 else cx.op("concat", lead, axis=-1)
        upd_shape = list(idx.type.shape[:-1]) + list(x.type.shape[k:])
        upd = values if list(values.type.shape) == upd_shape else cx.op("expand", [values], shape=upd_shape)
        upd = upd if upd.type.dtype == x.type.dtype else cx.op("cast", [upd], dtype=x.type.dtype)
        return cx.op("scatter_nd", [x, idx, upd], reduction="add" if accumulate else "none")
    raise NotImplementedError("index_put with this mix of index tensors")


def _masked_put(cx: Any, x: Value, mask: Value, values: Value, accumulate: bool) -> Value:
    """`y[mask] = v` with one row of v per true position (X-MOD's per-language adapters): the positions are
    nonzero(mask), with v's leading dim as their count (torch.export's unbacked symbol: the same mask gives the
    same count), and a ScatterND writes the rows."""
    k = mask.type.rank
    if values.type.rank != 1 + x.type.rank - k or list(values.type.shape[1:]) != list(x.type.shape[k:]):
        raise NotImplementedError(f"index_put of a boolean mask with values {values.type} (want one row per true "
                                  f"position: [count, {', '.join(map(str, x.type.shape[k:]))}])")
    nz = cx.op("nonzero", [mask], count=str(values.type.shape[0]))
    idx = cx.op("transpose", [nz], perm=[1, 0])
    upd = values if values.type.dtype == x.type.dtype else cx.op("cast", [values], dtype=x.type.dtype)
    return cx.op("scatter_nd", [x, idx, upd], reduction="add" if accumulate else "none")


@converter("aten.scatter_add.default")
def _scatter_add(cx: Any, node: Any, x: Value, dim: int, index: Value, src: Value) -> Value:
    if list(src.type.shape) != list(index.type.shape):  # torch reads only src[:index.shape]
        src = cx.op("slice", [src], starts=[0] * index.type.rank, ends=list(index.type.shape),
                    axes=list(range(index.type.rank)))
    return cx.op("scatter_elements", [x, index, src], axis=dim, reduction="add")


@converter("aten.scatter.src", "aten.scatter.value")
def _scatter(cx: Any, node: Any, x: Value, dim: int, index: Value, src: Any) -> Value:
    if not isinstance(src, Value):
        src = cx.op("expand", [_scalar(cx, x, src)], shape=list(index.type.shape))
    elif list(src.type.shape) != list(index.type.shape):
        src = cx.op("slice", [src], starts=[0] * index.type.rank, ends=list(index.type.shape),
                    axes=list(range(index.type.rank)))
    return cx.op("scatter_elements", [x, index, src], axis=dim)


@converter("aten.clamp.Tensor")
def _clamp_tensor(cx: Any, node: Any, x: Value, lo: Any = None, hi: Any = None) -> Value:
    y = x
    if lo is not None:
        y = cx.op("maximum", [y, _scalar(cx, x, lo)])
    if hi is not None:
        y = cx.op("minimum", [y, _scalar(cx, x, hi)])
    return y if y is not x else cx.op("identity", [x])


@converter("aten.log2.default", "aten.log10.default")
def _log_base(cx: Any, node: Any, x: Value) -> Value:
    return _log_base_of(cx, x, 2.0 if "log2" in op_name(node.target) else 10.0)


@converter("aten.exp2.default")
def _exp2(cx: Any, node: Any, x: Value) -> Value:
    return cx.op("exp", [cx.op("mul", [x, _const(cx, math.log(2.0), x)])])


@converter("aten.copysign.Tensor", "aten.copysign.Scalar")
def _copysign(cx: Any, node: Any, a: Value, b: Any) -> Value:
    if not a.type.dtype.is_float:
        a = cx.op("cast", [a], dtype=DType.F32)
    b = _scalar(cx, a, b)
    mag = cx.op("abs", [a])
    return cx.op("where", [cx.op("lt", [b, _const(cx, 0.0, a)]), cx.op("neg", [mag]), mag])


@converter("aten.fmax.default", "aten.fmin.default")
def _fmax(cx: Any, node: Any, a: Value, b: Value) -> Value:
    """maximum/minimum that ignore a NaN operand (NaN only where both are)."""
    both = cx.op("maximum" if "fmax" in op_name(node.target) else "minimum", [a, b])
    return cx.op("where", [cx.op("isnan", [a]), b, cx.op("where", [cx.op("isnan", [b]), a, both])])


@converter("aten.index_select.default")
def _index_select(cx: Any, node: Any, x: Value, dim: int, index: Value) -> Value:
    if x.type.rank == 0:  # a scalar "selects" itself
        return cx.op("identity", [x])
    index = index if index.type.rank == 1 else cx.op("reshape", [index], shape=[-1])  # a 0-d index acts as [i]
    return cx.op("gather", [x, index], axis=dim)


@converter("aten.copy.default")
def _copy(cx: Any, node: Any, dst: Value, src: Value, non_blocking: bool = False) -> Value:
    """The functional copy: src broadcast to dst's shape, in dst's dtype (what an in-place `x[...] = y` becomes
    after functionalization)."""
    y = src if src.type.dtype == dst.type.dtype else cx.op("cast", [src], dtype=dst.type.dtype)
    return y if list(y.type.shape) == list(dst.type.shape) else cx.op("expand", [y], shape=list(dst.type.shape))


@converter("aten.max.default", "aten.min.default")
def _max_all(cx: Any, node: Any, x: Value) -> Value:
    return cx.op("reduce_max" if ".max." in op_name(node.target) else "reduce_min", [x], axes=None, keepdims=False)


@converter("aten.round.decimals")
def _round_decimals(cx: Any, node: Any, x: Value, decimals: int = 0) -> Value:
    scale = _const(cx, 10.0 ** decimals, x)
    return cx.op("div", [cx.op("round", [cx.op("mul", [x, scale])]), scale], rounding_mode="none")


@converter("aten.signbit.default")
def _signbit(cx: Any, node: Any, x: Value) -> Value:
    if not x.type.dtype.is_float:
        return cx.op("lt", [x, _scalar(cx, x, 0)])
    # -0.0 has its sign bit set: 1/x is -inf there
    neg_zero = cx.op("logical_and", [cx.op("eq", [x, _const(cx, 0.0, x)]),
                                     cx.op("lt", [cx.op("reciprocal", [x]), _const(cx, 0.0, x)])])
    return cx.op("logical_or", [cx.op("lt", [x, _const(cx, 0.0, x)]), neg_zero])


@converter("aten.hypot.default")
def _hypot(cx: Any, node: Any, a: Value, b: Value) -> Value:
    return cx.op("sqrt", [cx.op("add", [cx.op("mul", [a, a]), cx.op("mul", [b, b])])])


@converter("aten.erfc.default")
def _erfc(cx: Any, node: Any, x: Value) -> Value:
    return cx.op("sub", [_const(cx, 1.0, x), cx.op("erf", [x])])


@converter("aten.var_mean.correction")
def _var_mean(cx: Any, node: Any, x: Value, dims: Any = None, *, correction: Any = None,
              keepdim: bool = False) -> tuple[Value, Value]:
    axes = None if dims is None else [dims] if isinstance(dims, int) else list(dims)
    var = cx.op("var", [x], axes=axes, keepdims=bool(keepdim), correction=float(1 if correction is None else correction))
    return var, cx.op("reduce_mean", [x], axes=axes, keepdims=bool(keepdim))


@converter("aten.slice_scatter.default")
def _slice_scatter(cx: Any, node: Any, x: Value, src: Value, dim: int = 0, start: Any = None, end: Any = None,
                   step: int = 1) -> Value:
    """x with x[start:end:step] along dim replaced by src: a scatter of src at the sliced positions."""
    dim = dim % x.type.rank
    n = x.type.shape[dim]
    if not isinstance(n, int):
        raise NotImplementedError("slice_scatter along a symbolic dim")
    positions = np.arange(n)[slice(start, end, step)]
    shape = [1] * x.type.rank
    shape[dim] = len(positions)
    idx = cx.op("expand", [cx.const(positions.reshape(shape).astype(np.int64), DType.I64)],
                shape=list(src.type.shape))
    return cx.op("scatter_elements", [x, idx, src], axis=dim)


_IDENTITY = {"sum": 0.0, "prod": 1.0, "amax": -math.inf, "amin": math.inf}


@converter("aten.scatter_reduce.two")
def _scatter_reduce(cx: Any, node: Any, x: Value, dim: int, index: Value, src: Value, reduce: str,
                    include_self: bool = True) -> Value:
    """sum/prod/amax/amin as ScatterElements reductions; without include_self the indexed positions are first
    reset to the reduction's identity. mean is sum / count (the count scattered as ones)."""
    if list(src.type.shape) != list(index.type.shape):
        src = cx.op("slice", [src], starts=[0] * index.type.rank, ends=list(index.type.shape),
                    axes=list(range(index.type.rank)))
    base = x
    if reduce == "mean":
        ones = cx.op("full", [], shape=list(index.type.shape), value=1.0, dtype=x.type.dtype)
        zero = cx.op("mul", [x, _const(cx, 0.0, x)])
        count = cx.op("scatter_elements", [zero, index, ones], axis=dim, reduction="add")
        if not include_self:
            base = cx.op("scatter_elements", [x, index, cx.op("mul", [src, _const(cx, 0.0, src)])], axis=dim)
        total = cx.op("scatter_elements", [base, index, src], axis=dim, reduction="add")
        n = cx.op("add", [count, _const(cx, 1.0 if include_self else 0.0, x)])
        touched = cx.op("gt", [count, _const(cx, 0.0, x)])
        mean = cx.op("div", [total, cx.op("maximum", [n, _const(cx, 1.0, x)])], rounding_mode="none")
        if x.type.dtype.is_int:
            mean = cx.op("div", [total, cx.op("maximum", [n, _const(cx, 1, x)])], rounding_mode="floor")
        return cx.op("where", [touched, mean, x])
    reduction = {"sum": "add", "prod": "mul", "amax": "max", "amin": "min"}.get(reduce)
    if reduction is None:
        raise NotImplementedError(f"scatter_reduce with reduce={reduce!r}")
    if not include_self:
        fill = cx.op("full", [], shape=list(index.type.shape), value=_IDENTITY[reduce], dtype=x.type.dtype)
        base = cx.op("scatter_elements", [x, index, fill], axis=dim)
    return cx.op("scatter_elements", [base, index, src], axis=dim, reduction=reduction)


@converter("aten.masked_select.default")
def _masked_select(cx: Any, node: Any, x: Value, mask: Value) -> Value:
    from .aten import _index

    shape = list(np.broadcast_shapes(tuple(x.type.shape), tuple(mask.type.shape)))
    x = x if list(x.type.shape) == shape else cx.op("expand", [x], shape=shape)
    mask = mask if list(mask.type.shape) == shape else cx.op("expand", [mask], shape=shape)
    return _index(cx, node, x, [mask])


@converter("aten.kthvalue.default")
def _kthvalue(cx: Any, node: Any, x: Value, k: int, dim: int = -1, keepdim: bool = False) -> tuple[Value, Value]:
    if x.type.rank == 0:
        return cx.op("identity", [x]), cx.const(np.array(0, np.int64), DType.I64)
    dim = dim % x.type.rank
    values, indices = cx.op("topk", [x], k=k, axis=dim, largest=False, sorted=True)
    pick = [cx.op("slice", [t], starts=[k - 1], ends=[k], axes=[dim]) for t in (values, indices)]
    return tuple(p if keepdim else cx.op("squeeze", [p], axes=[dim]) for p in pick)  # type: ignore[return-value]


@converter("aten.median.default")
def _median(cx: Any, node: Any, x: Value) -> Value:
    """The lower median of all elements, as torch takes it."""
    flat = cx.op("reshape", [x], shape=[-1])
    n = flat.type.shape[0]
    if not isinstance(n, int):
        raise NotImplementedError("median over a symbolic size")
    values, _ = cx.op("topk", [flat], k=n, axis=0, largest=False, sorted=True)
    return cx.op("reshape", [cx.op("slice", [values], starts=[(n - 1) // 2], ends=[(n + 1) // 2], axes=[0])],
                 shape=[])


@converter("aten.dist.default")
def _dist(cx: Any, node: Any, a: Value, b: Value, p: float = 2.0) -> Value:
    return _vector_norm(cx, node, cx.op("sub", [a, b]), p)


@converter("aten._cdist_forward.default")
def _cdist(cx: Any, node: Any, a: Value, b: Value, p: float = 2.0, mode: Any = None) -> Value:
    """Pairwise distances [..., P, R] by broadcasting a[..., P, 1, M] - b[..., 1, R, M] (exact, not the
    matmul form torch may use for large inputs)."""
    diff = cx.op("sub", [cx.op("unsqueeze", [a], axes=[a.type.rank - 1]),
                         cx.op("unsqueeze", [b], axes=[b.type.rank - 2])])
    return _vector_norm(cx, node, diff, p, dim=-1)


@converter("aten.empty_permuted.default")
def _empty_permuted(cx: Any, node: Any, size: Any, layout: Any, dtype: Any = None, **kw: Any) -> Value:
    # contents are undefined until written; zeros are one valid choice
    dt = DType.from_torch(dtype) if dtype is not None else DType.F32
    return cx.op("full", [], shape=[cx.dim(d) for d in size], value=0.0, dtype=dt)


@converter("aten.ldexp.Tensor")
def _ldexp(cx: Any, node: Any, x: Value, e: Value) -> Value:
    x = x if x.type.dtype.is_float else cx.op("cast", [x], dtype=DType.F32)
    e = cx.op("cast", [e], dtype=x.type.dtype) if e.type.dtype != x.type.dtype else e
    return cx.op("mul", [x, cx.op("pow", [_const(cx, 2.0, x), e])])


@converter("aten.logcumsumexp.default")
def _logcumsumexp(cx: Any, node: Any, x: Value, dim: int) -> Value:
    """log(cumsum(exp(x - m))) + m with m the maximum along dim: no overflow, as torch's kernel."""
    dim = dim % max(x.type.rank, 1)
    if x.type.rank == 0:
        return cx.op("identity", [x])
    m = cx.op("reduce_max", [x], axes=[dim], keepdims=True)
    m = cx.op("where", [cx.op("isinf", [m]), _const(cx, 0.0, x), m])
    total = cx.op("cumsum", [cx.op("exp", [cx.op("sub", [x, m])])], axis=dim)
    return cx.op("add", [cx.op("log", [total]), m])


@converter("aten.bucketize.Tensor")
def _bucketize(cx: Any, node: Any, x: Value, boundaries: Value, *, out_int32: bool = False,
               right: bool = False) -> Value:
    """The number of boundaries below x (at or below, with right=True): a broadcast compare and a sum."""
    cmp = cx.op("ge" if right else "gt", [cx.op("unsqueeze", [x], axes=[x.type.rank]), boundaries])
    count = cx.op("reduce_sum", [cx.op("cast", [cmp], dtype=DType.I64)], axes=[-1], keepdims=False)
    return cx.op("cast", [count], dtype=DType.I32) if out_int32 else count


@converter("aten.searchsorted.Tensor")
def _searchsorted(cx: Any, node: Any, seq: Value, values: Value, *, out_int32: bool = False, right: bool = False,
                  side: Any = None, sorter: Any = None) -> Value:
    if sorter is not None or seq.type.rank != 1:
        raise NotImplementedError("searchsorted with a sorter or a batched sorted sequence")
    return _bucketize(cx, node, values, seq, out_int32=out_int32, right=right or side == "right")


@converter("aten._native_batch_norm_legit.no_stats")
def _batch_norm_no_stats(cx: Any, node: Any, x: Value, w: Any, b: Any, training: bool, momentum: float,
                         eps: float) -> tuple[Value, ...]:
    return batch_norm_batch_stats(cx, x, w, b, None, None, momentum, eps)


@converter("aten._batch_norm_with_update_functional.default")
def _batch_norm_with_update(cx: Any, node: Any, x: Value, w: Any, b: Any, rm: Value, rv: Value, momentum: float,
                            eps: float) -> tuple[Any, ...]:
    y, mean, rstd, new_rm, new_rv = batch_norm_batch_stats(cx, x, w, b, rm, rv, momentum, eps)
    reserve = cx.const(np.zeros(0, np.uint8), DType.U8)  # cuDNN's reserve space: empty on CPU, as torch returns it
    return y, mean, rstd, reserve, new_rm, new_rv


@converter("aten.grid_sampler_2d.default", "aten.grid_sampler_3d.default")
def _grid_sampler(cx: Any, node: Any, x: Value, grid: Value, mode: int, padding: int, align_corners: bool) -> Value:
    return cx.op("grid_sample", [x, grid], mode=("linear", "nearest", "cubic")[mode],
                 padding_mode=("zeros", "border", "reflection")[padding], align_corners=bool(align_corners))


@converter("aten._pdist_forward.default")
def _pdist(cx: Any, node: Any, x: Value, p: float = 2.0) -> Value:
    """The upper triangle (i < j, row-major) of the pairwise distance matrix."""
    n = x.type.shape[0]
    if not isinstance(n, int):
        raise NotImplementedError("pdist over a symbolic count")
    full = _cdist(cx, node, x, x, p)
    i, j = np.triu_indices(n, 1)
    flat = cx.op("reshape", [full], shape=[n * n])
    return cx.op("gather", [flat, cx.const((i * n + j).astype(np.int64), DType.I64)], axis=0)


@converter("aten.index_reduce.default")
def _index_reduce(cx: Any, node: Any, x: Value, dim: int, index: Value, source: Value, reduce: str,
                  include_self: bool = True) -> Value:
    """x's slices at index along dim reduced with source's: scatter_reduce with the index spread over the other
    axes."""
    if x.type.rank == 0:  # a scalar is a one-element vector here
        one = [cx.op("reshape", [t], shape=[1]) for t in (x, source)]
        return cx.op("reshape", [_index_reduce(cx, node, one[0], 0, index, one[1], reduce, include_self)], shape=[])
    dim = dim % x.type.rank
    shape = [1] * source.type.rank
    shape[dim] = -1
    full = cx.op("expand", [cx.op("reshape", [index], shape=shape)], shape=list(source.type.shape))
    return _scatter_reduce(cx, node, x, dim, full, source, reduce, include_self)


@converter("aten.diagonal_scatter.default")
def _diagonal_scatter(cx: Any, node: Any, x: Value, src: Value, offset: int = 0, dim1: int = 0,
                      dim2: int = 1) -> Value:
    """x with its diagonal (as aten.diagonal lays it out) replaced by src: a scatter into the flattened pair of
    axes."""
    rest, perm, pos = _diagonal_layout(x, offset, dim1, dim2, "diagonal_scatter")
    idx = cx.op("expand", [cx.const(pos.reshape([1] * len(rest) + [-1]), DType.I64)], shape=list(src.type.shape))
    out = cx.op("scatter_elements", [_flat_pair(cx, x, rest, perm), idx, src], axis=len(rest))
    back = cx.op("reshape", [out], shape=[*[x.type.shape[i] for i in rest], x.type.shape[perm[-2]],
                                          x.type.shape[perm[-1]]])
    return cx.op("transpose", [back], perm=[perm.index(i) for i in range(x.type.rank)])


@converter("aten.frexp.Tensor")
def _frexp(cx: Any, node: Any, x: Value) -> tuple[Value, Value]:
    """x = mantissa · 2^exponent with |mantissa| in [0.5, 1); zero gives (0, 0)."""
    a = cx.op("abs", [x])
    zero = cx.op("eq", [a, _const(cx, 0.0, x)])
    safe = cx.op("where", [zero, _const(cx, 1.0, x), a])
    e = cx.op("add", [cx.op("floor", [_log_base_of(cx, safe, 2.0)]), _const(cx, 1.0, x)])
    m = cx.op("div", [x, cx.op("pow", [_const(cx, 2.0, x), e])], rounding_mode="none")
    # log2 rounding can leave |m| at exactly 1 (or just under 0.5): one correction step
    big = cx.op("ge", [cx.op("abs", [m]), _const(cx, 1.0, x)])
    m = cx.op("where", [big, cx.op("mul", [m, _const(cx, 0.5, x)]), m])
    e = cx.op("where", [big, cx.op("add", [e, _const(cx, 1.0, x)]), e])
    small = cx.op("logical_and", [cx.op("lt", [cx.op("abs", [m]), _const(cx, 0.5, x)]), cx.op("logical_not", [zero])])
    m = cx.op("where", [small, cx.op("mul", [m, _const(cx, 2.0, x)]), m])
    e = cx.op("where", [small, cx.op("sub", [e, _const(cx, 1.0, x)]), e])
    e = cx.op("where", [zero, _const(cx, 0.0, x), e])
    return cx.op("where", [zero, x, m]), cx.op("cast", [e], dtype=DType.I32)


def _log_base_of(cx: Any, x: Value, base: float) -> Value:
    return cx.op("mul", [cx.op("log", [x]), _const(cx, 1.0 / math.log(base), x)])


def batch_norm_batch_stats(cx: Any, x: Value, w: Any, b: Any, running_mean: Any, running_var: Any, *rest: Any
                           ) -> tuple[Value, ...]:
    """Batch norm with the batch's own statistics (training-mode semantics, and instance norm, which torch runs
    as batch norm over [1, N*C, ...]): y, the saved mean and 1/std, and the updated running statistics."""
    momentum, eps = float(rest[-2]), float(rest[-1])
    axes = [0] + list(range(2, x.type.rank))
    mean = cx.op("reduce_mean", [x], axes=axes, keepdims=True)
    var = cx.op("var", [x], axes=axes, keepdims=True, correction=0.0)
    rstd = cx.op("rsqrt", [cx.op("add", [var, _const(cx, eps, x)])])
    y = cx.op("mul", [cx.op("sub", [x, mean]), rstd])
    c = x.type.shape[1]
    bshape = [c] + [1] * (x.type.rank - 2)
    if w is not None:
        y = cx.op("mul", [y, cx.op("reshape", [w], shape=bshape)])
    if b is not None:
        y = cx.op("add", [y, cx.op("reshape", [b], shape=bshape)])
    flat = [cx.op("reshape", [t], shape=[c]) for t in (mean, rstd)]
    out: list[Value] = [y, *flat]
    if running_mean is not None and running_var is not None:
        n = math.prod(d for i, d in enumerate(x.type.shape) if i != 1 and isinstance(d, int))
        unbiased = cx.op("mul", [cx.op("reshape", [var], shape=[c]), _const(cx, n / max(n - 1, 1), x)])
        keep = _const(cx, 1.0 - momentum, x)
        out += [cx.op("add", [cx.op("mul", [running_mean, keep]), cx.op("mul", [flat[0], _const(cx, momentum, x)])]),
                cx.op("add", [cx.op("mul", [running_var, keep]), cx.op("mul", [unbiased, _const(cx, momentum, x)])])]
    return tuple(out)


@converter("aten.unfold.default")
def _unfold(cx: Any, node: Any, x: Value, dim: int, size: int, step: int) -> Value:
    """Windows of `size` every `step` along dim, as a new last axis: one gather with a [windows, size] index."""
    if x.type.rank == 0:
        return cx.op("reshape", [x], shape=[1])
    dim = dim % x.type.rank
    n = x.type.shape[dim]
    if not isinstance(n, int):
        raise NotImplementedError("unfold along a symbolic dim")
    starts = np.arange(0, n - size + 1, step)
    idx = cx.const((starts[:, None] + np.arange(size)[None, :]).astype(np.int64), DType.I64)
    y = cx.op("gather", [x, idx], axis=dim)  # [..., windows, size, ...]
    perm = list(range(y.type.rank))
    perm.append(perm.pop(dim + 1))
    return y if dim + 1 == y.type.rank - 1 else cx.op("transpose", [y], perm=perm)


@converter("aten.narrow_copy.default", "aten.narrow.default")
def _narrow(cx: Any, node: Any, x: Value, dim: int, start: Any, length: Any) -> Value:
    start, length = cx.dim(start), cx.dim(length)
    end = start + length if isinstance(start, int) and isinstance(length, int) else None
    if end is None:
        raise NotImplementedError("narrow with symbolic bounds")
    return cx.op("slice", [x], starts=[start], ends=[end], axes=[dim % x.type.rank])


def _diagonal_layout(x: Value, offset: int, dim1: int, dim2: int, what: str) -> tuple[list[int], list[int], Any]:
    """(the other axes, the transpose putting dim1, dim2 last, the diagonal's flat positions in those two)."""
    r = x.type.rank
    d1, d2 = dim1 % r, dim2 % r
    n1, n2 = x.type.shape[d1], x.type.shape[d2]
    if not isinstance(n1, int) or not isinstance(n2, int):
        raise NotImplementedError(f"{what} over symbolic dims")
    rows = np.arange(max(0, -offset), min(n1, n2 - offset)) if n2 - offset > 0 else np.arange(0)
    rest = [i for i in range(r) if i not in (d1, d2)]
    return rest, rest + [d1, d2], (rows * n2 + rows + offset).astype(np.int64)


def _flat_pair(cx: Any, x: Value, rest: list[int], perm: list[int]) -> Value:
    """x with the two diagonal axes moved last and merged: [..., n1 * n2]."""
    n1, n2 = x.type.shape[perm[-2]], x.type.shape[perm[-1]]
    return cx.op("reshape", [cx.op("transpose", [x], perm=perm)], shape=[*[x.type.shape[i] for i in rest], n1 * n2])


@converter("aten.diagonal.default", "aten.diagonal_copy.default")
def _diagonal(cx: Any, node: Any, x: Value, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Value:
    """The diagonal as torch lays it out: dim1 and dim2 removed, the diagonal appended as the last axis."""
    rest, perm, pos = _diagonal_layout(x, offset, dim1, dim2, "diagonal")
    return cx.op("gather", [_flat_pair(cx, x, rest, perm), cx.const(pos, DType.I64)], axis=len(rest))


@converter("aten.nonzero.default")
def _nonzero(cx: Any, node: Any, x: Value) -> Value:
    """torch's [count, rank] layout of the IR's [rank, count]; count is torch.export's unbacked symbol."""
    count = cx.dim(node.meta["val"].shape[0])
    return cx.op("transpose", [cx.op("nonzero", [x], count=str(count))], perm=[1, 0])


def conv_transposed(cx: Any, x: Value, w: Value, b: Any, stride: Sequence[int], padding: Sequence[int],
                    dilation: Sequence[int], output_padding: Sequence[int], groups: int) -> Value:
    """aten.convolution with transposed=True: torch's weight is [C_in, C_out/groups, k...], as ONNX's."""
    nd = w.type.rank - 2
    pads = list(padding) * 2 if len(padding) == nd else list(padding)
    ins = [x, w] + ([b] if b is not None else [])
    return cx.op("conv_transpose", ins, strides=list(stride), pads=pads, dilations=list(dilation),
                 output_padding=list(output_padding), groups=groups)

