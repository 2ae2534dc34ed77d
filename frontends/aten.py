"""Core ATen → graphopt IR, as a table of small converters.

Each converter takes the converter context, the FX node, and its arguments with FX nodes already replaced by
graphopt Values (tensors) or dims (SymInts), and returns a Value or a tuple of them. Adding an ATen op is one
decorated function:

>>> from graphopt.frontends import aten
>>> @aten.converter("mylib.entr.default")
... def _entr(cx, node, x):
...     return cx.op("neg", [cx.op("mul", [x, cx.op("log", [x])])])
>>> aten.is_supported_name("mylib.entr.default")
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from graphopt.ir import SLICE_END, DType, Value

__all__ = ["converter", "convert", "is_supported", "is_supported_name", "op_name", "keep_whole", "UNAVAILABLE"]

Converter = Callable[..., Any]
_TABLE: dict[str, Converter] = {}
_BIG = SLICE_END  # the IR's "to the end" slice bound
_MATERIALIZE = 4096  # fills up to this many elements become constants


class _Unavailable:
    """Stands for an ATen output graphopt does not compute (layer-norm statistics, pooling indices)."""

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE = _Unavailable()


def keep_whole() -> list[Any]:
    """ATen ops not to decompose: decomposing LSTM/GRU unrolls them over a fixed length (a GRU unrolled per step
    ran 0.31x eager), and bicubic upsampling into per-pixel index arithmetic (0.12x eager); the IR has lstm, gru
    and interpolate ops."""
    import torch

    a = torch.ops.aten
    return [a.lstm.input, a.gru.input, a.rnn_tanh.input, a.rnn_relu.input, a.upsample_bicubic2d.vec,
            a.upsample_bilinear2d.vec, a.upsample_nearest2d.vec, a.upsample_linear1d.vec, a.upsample_nearest1d.vec,
            a.upsample_trilinear3d.vec, a.upsample_nearest3d.vec]


def op_name(target: Any) -> str:
    if getattr(target, "__module__", "") == "_operator":
        return f"operator.{target.__name__}"
    return str(target)


def converter(*names: str) -> Callable[[Converter], Converter]:
    """Register `fn` as the converter of the given ATen overloads (`aten.add.Tensor`)."""

    def deco(fn: Converter) -> Converter:
        for n in names:
            _TABLE[n] = fn
        return fn

    return deco


def is_supported_name(name: str) -> bool:
    return name in _TABLE


def is_sym(node: Any) -> bool:
    """Nodes that compute SymInts (sizes), not tensors."""
    import torch

    val = node.meta.get("val")
    return isinstance(val, (torch.SymInt, torch.SymBool, torch.SymFloat)) or (
        isinstance(val, (int, bool)) and op_name(node.target) not in _TABLE)


_NO_OPS = {"aten._assert_tensor_metadata.default", "aten._assert_scalar.default", "aten._assert_async.msg",
           "aten.sym_constrain_range_for_size.default", "aten.sym_constrain_range.default"}


def is_supported(node: Any) -> bool:
    name = op_name(node.target)
    return name in _TABLE or name in _NO_OPS or is_sym(node)


def convert(cx: Any, node: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    name = op_name(node.target)
    if name in _NO_OPS:
        return None
    for a in list(args) + list(kwargs.values()) if name != "operator.getitem" else ():
        if a is UNAVAILABLE or isinstance(a, (list, tuple)) and any(x is UNAVAILABLE for x in a):
            if not node.users:  # e.g. the squeeze of max_pool1d's unused indices: nothing reads it either
                return UNAVAILABLE
            raise NotImplementedError("it reads an output graphopt does not compute (e.g. layer-norm statistics)")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("device", "layout", "pin_memory", "memory_format")}
    return _TABLE[name](cx, node, *args, **kwargs)


# -- helpers -------------------------------------------------------------------------------------------------
def _scalar(cx: Any, like: Value, s: Any) -> Value:
    """A python scalar as a 0-d constant whose dtype follows torch's scalar rules against `like`."""
    if isinstance(s, Value):
        return s
    t = like.type.dtype
    if isinstance(s, bool):
        dt = DType.BOOL
    elif isinstance(s, int):
        dt = t if t != DType.BOOL else DType.I64
    else:
        dt = t if t.is_float else DType.F32
    return cx.const(s, dt)


def _binary(op: str) -> Converter:
    def conv(cx: Any, node: Any, a: Any, b: Any, alpha: Any = 1) -> Value:
        if not isinstance(a, Value):
            a = _scalar(cx, b, a)
        b = _scalar(cx, a, b)
        if alpha != 1:
            b = cx.op("mul", [b, _scalar(cx, b, alpha)])
        return cx.op(op, [a, b])

    return conv


for _op in ("add", "sub", "mul", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "remainder", "fmod",
            "logical_and", "logical_or", "logical_xor"):
    converter(f"aten.{_op}.Tensor", f"aten.{_op}.Scalar", f"aten.{_op}.default")(_binary(_op))
converter("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor")(_binary("pow"))
for _op, _ir in (("bitwise_and", "logical_and"), ("bitwise_or", "logical_or"), ("bitwise_xor", "logical_xor")):
    def _bitwise(cx: Any, node: Any, a: Any, b: Any, _ir: str = _ir) -> Value:
        if any(isinstance(v, Value) and v.type.dtype != DType.BOOL for v in (a, b)):
            raise NotImplementedError("bitwise ops are supported on bool tensors only")
        return _binary(_ir)(cx, node, a, b)
    converter(f"aten.{_op}.Tensor", f"aten.{_op}.Scalar")(_bitwise)


@converter("aten.pow.Scalar")
def _pow_scalar(cx: Any, node: Any, a: Any, b: Value) -> Value:
    return cx.op("pow", [_scalar(cx, b, a), b])


@converter("aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(cx: Any, node: Any, a: Value, b: Any, alpha: Any = 1) -> Value:
    return _binary("sub")(cx, node, b, a if alpha == 1 else cx.op("mul", [a, _scalar(cx, a, alpha)]))


@converter("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div(cx: Any, node: Any, a: Any, b: Any, rounding_mode: str | None = None) -> Value:
    if not isinstance(a, Value):
        a = _scalar(cx, b, a)
    b = _scalar(cx, a, b)
    return cx.op("div", [a, b], rounding_mode=rounding_mode or "none")


_UNARY = {
    "abs": "abs", "neg": "neg", "exp": "exp", "log": "log", "sqrt": "sqrt", "rsqrt": "rsqrt", "sin": "sin",
    "cos": "cos", "tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "erf": "erf", "floor": "floor",
    "ceil": "ceil", "round": "round", "trunc": "trunc", "sign": "sign", "reciprocal": "reciprocal",
    "logical_not": "logical_not", "isnan": "isnan", "isinf": "isinf", "log1p": "log1p", "expm1": "expm1", "silu": "silu",
    "hardswish": "hardswish", "hardsigmoid": "hardsigmoid",
}
for _op, _ir in _UNARY.items():
    converter(f"aten.{_op}.default")(lambda cx, node, x, _ir=_ir: cx.op(_ir, [x]))


@converter("aten.bitwise_not.default")
def _bitwise_not(cx: Any, node: Any, x: Value) -> Value:
    if x.type.dtype != DType.BOOL:
        raise NotImplementedError("bitwise_not is supported on bool tensors only")
    return cx.op("logical_not", [x])


@converter("aten.gelu.default")
def _gelu(cx: Any, node: Any, x: Value, approximate: str = "none") -> Value:
    return cx.op("gelu", [x], approximate=approximate)


@converter("aten.leaky_relu.default")
def _leaky_relu(cx: Any, node: Any, x: Value, negative_slope: float = 0.01) -> Value:
    return cx.op("leaky_relu", [x], negative_slope=float(negative_slope))


@converter("aten.elu.default")
def _elu(cx: Any, node: Any, x: Value, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0) -> Value:
    if input_scale != 1:  # the negative side is alpha * (exp(x * input_scale) - 1), the positive side x
        neg = cx.op("elu", [cx.op("mul", [x, _scalar(cx, x, float(input_scale))])], alpha=float(alpha))
        y = cx.op("where", [cx.op("gt", [x, _scalar(cx, x, 0.0)]), x, neg])
    else:
        y = cx.op("elu", [x], alpha=float(alpha))
    return y if scale == 1 else cx.op("mul", [y, _scalar(cx, x, float(scale))])


@converter("aten.softplus.default")
def _softplus(cx: Any, node: Any, x: Value, beta: float = 1.0, threshold: float = 20.0) -> Value:
    return cx.op("softplus", [x], beta=float(beta), threshold=float(threshold))


@converter("aten.clamp.default", "aten.hardtanh.default")
def _clamp(cx: Any, node: Any, x: Value, min: Any = None, max: Any = None) -> Value:  # noqa: A002
    if op_name(node.target) == "aten.hardtanh.default":
        min, max = (-1.0 if min is None else min), (1.0 if max is None else max)  # noqa: A001
    return cx.op("clamp", [x], min=None if min is None else float(min), max=None if max is None else float(max))


converter("aten.clamp_min.default")(lambda cx, node, x, m: cx.op("clamp", [x], min=float(m)))
converter("aten.clamp_max.default")(lambda cx, node, x, m: cx.op("clamp", [x], max=float(m)))


@converter("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def _where(cx: Any, node: Any, c: Value, a: Any, b: Any) -> Value:
    like = a if isinstance(a, Value) else b if isinstance(b, Value) else None
    if like is None:
        dt = DType.from_torch(node.meta["val"].dtype)
        a, b = cx.const(a, dt), cx.const(b, dt)
    return cx.op("where", [c, _scalar(cx, like or a, a), _scalar(cx, like or b, b)])


@converter("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(cx: Any, node: Any, x: Value, mask: Value, value: Any) -> Value:
    return cx.op("where", [mask, _scalar(cx, x, value), x])


@converter("aten._softmax.default", "aten.softmax.int")
def _softmax(cx: Any, node: Any, x: Value, dim: int, half_to_float: Any = False) -> Value:
    return cx.op("softmax", [x], axis=dim)


@converter("aten._log_softmax.default", "aten.log_softmax.int")
def _log_softmax(cx: Any, node: Any, x: Value, dim: int, half_to_float: Any = False) -> Value:
    return cx.op("log_softmax", [x], axis=dim)


# -- layout --------------------------------------------------------------------------------------------------
@converter("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.view_copy.default")
def _view(cx: Any, node: Any, x: Value, shape: Sequence[Any]) -> Value:
    return cx.op("reshape", [x], shape=[cx.dim(d) for d in shape])


@converter("aten.as_strided.default")
def _as_strided(cx: Any, node: Any, x: Value, size: Sequence[Any], stride: Sequence[Any], offset: Any = 0) -> Value:
    """Only the as_strided that export emits for a plain view (e.g. flatten of an input with odd strides)."""
    dims = [cx.dim(d) for d in size]
    want: list[Any] = []
    step: Any = 1
    for d in reversed(dims):
        want.append(step)
        step = step * d if isinstance(step, int) and isinstance(d, int) else None
    want.reverse()
    plain = all(d == 1 or w is None or cx.dim(s) == w for d, s, w in zip(dims, stride, want))
    if offset or not plain:
        raise NotImplementedError(f"as_strided with strides {list(stride)} and offset {offset} (not a plain view)")
    return cx.op("reshape", [x], shape=dims)


@converter("aten.permute.default", "aten.permute_copy.default")
def _permute(cx: Any, node: Any, x: Value, dims: Sequence[int]) -> Value:
    return cx.op("transpose", [x], perm=[d % max(x.type.rank, 1) for d in dims])


@converter("aten.t.default", "aten.numpy_T.default", "aten.t_copy.default")
def _t(cx: Any, node: Any, x: Value) -> Value:
    return cx.op("transpose", [x], perm=list(range(x.type.rank))[::-1]) if x.type.rank > 1 else x


@converter("aten.transpose.int", "aten.transpose_copy.int")
def _transpose(cx: Any, node: Any, x: Value, a: int, b: int) -> Value:
    perm = list(range(x.type.rank))
    a, b = a % x.type.rank, b % x.type.rank
    perm[a], perm[b] = perm[b], perm[a]
    return cx.op("transpose", [x], perm=perm)


@converter("aten.unsqueeze.default", "aten.unsqueeze_copy.default")
def _unsqueeze(cx: Any, node: Any, x: Value, dim: int) -> Value:
    return cx.op("unsqueeze", [x], axes=[dim % (x.type.rank + 1)])


@converter("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def _squeeze(cx: Any, node: Any, x: Value, dims: Any = None) -> Value:
    if dims is None:
        axes = [i for i, d in enumerate(x.type.shape) if d == 1]
    else:
        dims = [dims] if isinstance(dims, int) else dims
        axes = [d % max(x.type.rank, 1) for d in dims if x.type.shape[d] == 1]  # torch skips non-1 dims
    return cx.op("squeeze", [x], axes=axes) if axes else x


@converter("aten.expand.default", "aten.expand_copy.default")
def _expand(cx: Any, node: Any, x: Value, sizes: Sequence[Any], implicit: bool = False) -> Value:
    lead = len(sizes) - x.type.rank
    shape = [x.type.shape[i - lead] if (not isinstance(s, str) and s == -1) else cx.dim(s)
             for i, s in enumerate(sizes)]
    if tuple(shape) == x.type.shape:
        return x
    return cx.op("expand", [x], shape=shape)


@converter("aten.repeat.default")
def _repeat(cx: Any, node: Any, x: Value, repeats: Sequence[int]) -> Value:
    lead = len(repeats) - x.type.rank
    if lead:
        x = cx.op("reshape", [x], shape=[1] * lead + list(x.type.shape))
    return cx.op("tile", [x], repeats=list(repeats))


@converter("aten.clone.default", "aten.alias.default", "aten.contiguous.default", "aten.detach.default",
           "aten.lift_fresh_copy.default", "aten.dropout.default", "aten.native_dropout.default")
def _identity(cx: Any, node: Any, x: Value, *args: Any, **kwargs: Any) -> Any:
    if op_name(node.target) == "aten.native_dropout.default":
        return x, UNAVAILABLE
    return x  # values are immutable in the IR, so copies and aliases are the value itself


@converter("aten._to_copy.default", "aten.to.dtype")
def _to_copy(cx: Any, node: Any, x: Value, dtype: Any = None, **kwargs: Any) -> Value:
    if dtype is None or DType.from_torch(dtype) == x.type.dtype:
        return x
    return cx.op("cast", [x], dtype=DType.from_torch(dtype))


@converter("aten.slice.Tensor")
def _slice(cx: Any, node: Any, x: Value, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Value:
    start = 0 if start is None else cx.dim(start)
    end = _BIG if end is None else cx.dim(end)
    if isinstance(end, int) and end >= _BIG:
        end = _BIG
    dim = dim % x.type.rank
    if start == 0 and step == 1 and (end == _BIG or end == x.type.shape[dim]):
        return x
    return cx.op("slice", [x], starts=[start], ends=[end], axes=[dim], steps=[step])


@converter("aten.select.int")
def _select(cx: Any, node: Any, x: Value, dim: int, index: Any) -> Value:
    return cx.op("gather", [x, cx.const(cx.dim(index), DType.I64)], axis=dim % x.type.rank)


@converter("aten.cat.default")
def _cat(cx: Any, node: Any, xs: Sequence[Value], dim: int = 0) -> Value:
    xs = [x for x in xs if not (x.type.rank == 1 and x.type.shape[0] == 0)]  # torch.cat skips empty 1-d
    return xs[0] if len(xs) == 1 else cx.op("concat", xs, axis=dim)


@converter("aten.split_with_sizes.default", "aten.split.Tensor")
def _split(cx: Any, node: Any, x: Value, sizes: Any, dim: int = 0) -> tuple[Value, ...]:
    dim = dim % x.type.rank
    if isinstance(sizes, int):  # split.Tensor: chunks of `sizes`, the last one shorter
        total = x.type.shape[dim]
        if not isinstance(total, int):
            raise NotImplementedError("split by chunk size along a symbolic dim")
        sizes = [min(sizes, total - i) for i in range(0, total, sizes)]
    out = cx.op("split", [x], axis=dim, sizes=[int(s) for s in sizes])
    return out if isinstance(out, tuple) else (out,)


@converter("aten.unbind.int", "aten.unbind_copy.int")
def _unbind(cx: Any, node: Any, x: Value, dim: int = 0) -> tuple[Value, ...]:
    dim = dim % x.type.rank
    parts = _split(cx, node, x, [1] * int(x.type.shape[dim]), dim)
    return tuple(cx.op("squeeze", [p], axes=[dim]) for p in parts)


@converter("aten.constant_pad_nd.default")
def _pad(cx: Any, node: Any, x: Value, pad: Sequence[int], value: float = 0.0) -> Value:
    r = x.type.rank
    begins, ends = [0] * r, [0] * r
    for i in range(len(pad) // 2):  # torch: (last_begin, last_end, second_last_begin, ...)
        begins[r - 1 - i], ends[r - 1 - i] = pad[2 * i], pad[2 * i + 1]
    if min(pad, default=0) < 0:
        raise NotImplementedError("negative padding (cropping)")
    return cx.op("pad", [x], pads=begins + ends, value=float(value))


@converter("aten.index.Tensor")
def _index(cx: Any, node: Any, x: Value, indices: Sequence[Any]) -> Value:
    used = [i for i, t in enumerate(indices) if t is not None]
    if not used or used != list(range(used[0], used[-1] + 1)):
        raise NotImplementedError("advanced indexing with non-adjacent index tensors")
    idx = [indices[i] for i in used]
    if any(t.type.dtype == DType.BOOL for t in idx):
        if len(idx) != 1:
            raise NotImplementedError("boolean-mask indexing mixed with other index tensors")
        # x[mask]: the mask's non-zero positions (a data-dependent count, torch.export's unbacked symbol) index
        # x's leading axes, one index tensor per masked axis
        mask = idx[0]
        count = cx.dim(node.meta["val"].shape[used[0]])
        nz = cx.op("nonzero", [mask], count=str(count))
        idx = [cx.op("gather", [nz, cx.const(j, DType.I64)], axis=0) for j in range(mask.type.rank)]
    return cx.op("index", [x, *idx], axis=used[0])


@converter("aten.gather.default")
def _gather(cx: Any, node: Any, x: Value, dim: int, index: Value, sparse_grad: bool = False) -> Value:
    return cx.op("gather_elements", [x, index], axis=dim)


@converter("aten.embedding.default")
def _embedding(cx: Any, node: Any, weight: Value, indices: Value, *args: Any) -> Value:
    return cx.op("gather", [weight, indices], axis=0)


@converter("aten.triu.default", "aten.tril.default")
def _tri(cx: Any, node: Any, x: Value, diagonal: int = 0) -> Value:
    return cx.op(op_name(node.target).split(".")[1], [x], diagonal=diagonal)


@converter("aten.cumsum.default", "aten.cumprod.default")
def _cumsum(cx: Any, node: Any, x: Value, dim: int, dtype: Any = None) -> Value:
    if dtype is not None and DType.from_torch(dtype) != x.type.dtype:
        x = cx.op("cast", [x], dtype=DType.from_torch(dtype))
    return cx.op(op_name(node.target).split(".")[1], [x], axis=dim)


@converter("aten.topk.default")
def _topk(cx: Any, node: Any, x: Value, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
    return cx.op("topk", [x], k=k, axis=dim, largest=largest, sorted=sorted)


# -- creation ------------------------------------------------------------------------------------------------
def _fill_dtype(value: Any, dtype: Any) -> DType:
    if dtype is not None:
        return DType.from_torch(dtype)
    return DType.BOOL if isinstance(value, bool) else DType.I64 if isinstance(value, int) else DType.F32


def _full(cx: Any, shape: Sequence[Any], value: Any, dt: DType) -> Value:
    import numpy as np

    # small fills become constants (folding sees them); big ones stay a `full` op: cheap to compute, and stored
    # they bloat the artifact (nn.MultiheadAttention's [batch, heads, seq, seq] zeros were 8.5 MB)
    if all(isinstance(d, int) for d in shape) and math.prod(shape) <= _MATERIALIZE:
        return cx.const(np.full(shape, value, dtype=dt.numpy), dt)
    return cx.op("full", [], shape=list(shape), value=float(value), dtype=dt)


@converter("aten.full.default")
def _full_default(cx: Any, node: Any, size: Sequence[Any], fill_value: Any, dtype: Any = None) -> Value:
    return _full(cx, [cx.dim(d) for d in size], fill_value, _fill_dtype(fill_value, dtype))


@converter("aten.zeros.default", "aten.ones.default", "aten.empty.memory_format")
def _zeros(cx: Any, node: Any, size: Sequence[Any], dtype: Any = None) -> Value:
    value = 1 if "ones" in op_name(node.target) else 0
    return _full(cx, [cx.dim(d) for d in size], value, DType.from_torch(dtype) if dtype else DType.F32)


@converter("aten.full_like.default", "aten.zeros_like.default", "aten.ones_like.default",
           "aten.empty_like.default")
def _full_like(cx: Any, node: Any, x: Value, *args: Any, dtype: Any = None) -> Value:
    name = op_name(node.target)
    value = args[0] if args else (1 if "ones" in name else 0)
    return _full(cx, list(x.type.shape), value, DType.from_torch(dtype) if dtype else x.type.dtype)


@converter("aten.scalar_tensor.default")
def _scalar_tensor(cx: Any, node: Any, value: Any, dtype: Any = None) -> Value:
    return cx.const(value, DType.from_torch(dtype) if dtype else DType.F32)


@converter("aten.arange.start_step", "aten.arange.start", "aten.arange.default")
def _arange(cx: Any, node: Any, *args: Any, dtype: Any = None) -> Value:
    start, end, step = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) > 2 else 1)
    if any(isinstance(v, float) for v in (start, end, step)):
        raise NotImplementedError("arange with float bounds")
    dt = DType.from_torch(dtype) if dtype is not None else DType.I64
    return cx.op("arange", [], start=int(start), end=cx.dim(end), step=int(step), dtype=dt)


# -- reductions ----------------------------------------------------------------------------------------------
def _reduce(op: str) -> Converter:
    def conv(cx: Any, node: Any, x: Value, dims: Any = None, keepdim: bool = False, dtype: Any = None) -> Value:
        if dtype is not None and DType.from_torch(dtype) != x.type.dtype:
            x = cx.op("cast", [x], dtype=DType.from_torch(dtype))
        axes = None if dims is None or dims == [] else [dims] if isinstance(dims, int) else list(dims)
        return cx.op(op, [x], axes=axes, keepdims=bool(keepdim))

    return conv


converter("aten.mean.dim", "aten.mean.default")(_reduce("reduce_mean"))
converter("aten.sum.dim_IntList", "aten.sum.default")(_reduce("reduce_sum"))
converter("aten.amax.default")(_reduce("reduce_max"))
converter("aten.amin.default")(_reduce("reduce_min"))
converter("aten.prod.dim_int", "aten.prod.default")(_reduce("reduce_prod"))


@converter("aten.any.dim", "aten.any.dims", "aten.any.default", "aten.all.dim", "aten.all.dims", "aten.all.default")
def _any(cx: Any, node: Any, x: Value, dims: Any = None, keepdim: bool = False) -> Value:
    op = "reduce_max" if ".any." in op_name(node.target) else "reduce_min"
    if x.type.dtype != DType.BOOL:
        x = cx.op("ne", [x, _scalar(cx, x, 0)])
    y = _reduce(op)(cx, node, cx.op("cast", [x], dtype=DType.U8), dims, keepdim)
    return cx.op("cast", [y], dtype=DType.BOOL)


@converter("aten.max.dim", "aten.min.dim")
def _max_dim(cx: Any, node: Any, x: Value, dim: int, keepdim: bool = False) -> tuple[Value, Value]:
    big = ".max." in op_name(node.target)
    values = cx.op("reduce_max" if big else "reduce_min", [x], axes=[dim], keepdims=keepdim)
    return values, cx.op("argmax" if big else "argmin", [x], axis=dim, keepdims=keepdim)


@converter("aten.argmax.default", "aten.argmin.default")
def _argmax(cx: Any, node: Any, x: Value, dim: Any = None, keepdim: bool = False) -> Value:
    op = op_name(node.target).split(".")[1]
    if dim is None:
        x, dim = cx.op("reshape", [x], shape=[-1]), 0
    return cx.op(op, [x], axis=dim, keepdims=keepdim)


@converter("aten.var.correction", "aten.var.dim")
def _var(cx: Any, node: Any, x: Value, dims: Any = None, *args: Any, correction: Any = None,
         keepdim: bool = False) -> Value:
    if args:  # var.dim(x, dims, unbiased, keepdim)
        correction, keepdim = (1 if args[0] else 0), (args[1] if len(args) > 1 else keepdim)
    axes = None if dims is None else [dims] if isinstance(dims, int) else list(dims)
    return cx.op("var", [x], axes=axes, keepdims=bool(keepdim),
                  correction=float(1 if correction is None else correction))


# -- linear algebra and nn -----------------------------------------------------------------------------------
converter("aten.mm.default", "aten.bmm.default", "aten.matmul.default")(
    lambda cx, node, a, b: cx.op("matmul", [a, b]))


@converter("aten.addmm.default", "aten.baddbmm.default", "aten.addmv.default", "aten.addbmm.default")
def _addmm(cx: Any, node: Any, bias: Value, a: Value, b: Value, beta: Any = 1, alpha: Any = 1) -> Value:
    y = cx.op("matmul", [a, b])
    if op_name(node.target) == "aten.addbmm.default":  # the batch of products is summed
        y = cx.op("reduce_sum", [y], axes=[0], keepdims=False)
    if alpha != 1:
        y = cx.op("mul", [y, _scalar(cx, y, alpha)])
    if beta == 0:
        return y
    if beta != 1:
        bias = cx.op("mul", [bias, _scalar(cx, bias, beta)])
    return cx.op("add", [y, bias])


@converter("aten.linear.default")
def _linear(cx: Any, node: Any, x: Value, w: Value, b: Value | None = None) -> Value:
    return cx.op("linear", [x, w] + ([b] if b is not None else []))


@converter("aten.native_layer_norm.default")
def _layer_norm(cx: Any, node: Any, x: Value, shape: Sequence[int], w: Any, b: Any, eps: float) -> Any:
    ins = [x] + ([w] if w is not None else []) + ([b] if b is not None else [])
    if w is None and b is not None:
        raise NotImplementedError("layer norm with a bias but no weight")
    y = cx.op("layer_norm", ins, axis=-len(shape), eps=float(eps))
    if len(node.users) <= 1 and all(u.target is not None and "getitem" in str(u.target) and u.args[1] == 0
                                    for u in node.users):
        return y, UNAVAILABLE, UNAVAILABLE
    # the statistics are read (native_layer_norm called directly): mean and 1/std over the normalized axes
    axes = list(range(x.type.rank - len(shape), x.type.rank))
    mean = cx.op("reduce_mean", [x], axes=axes, keepdims=True)
    var = cx.op("var", [x], axes=axes, keepdims=True, correction=0.0)
    return y, mean, cx.op("rsqrt", [cx.op("add", [var, _scalar(cx, x, float(eps))])])


@converter("aten._native_batch_norm_legit_no_training.default", "aten.native_batch_norm.default",
           "aten._native_batch_norm_legit.default", "aten._native_batch_norm_legit_functional.default")
def _batch_norm(cx: Any, node: Any, x: Value, w: Any, b: Any, mean: Value, var: Value, *rest: Any) -> Any:
    import numpy as np

    name = op_name(node.target)
    training = rest[0] if name != "aten._native_batch_norm_legit_no_training.default" else False
    if training is True:  # batch statistics (instance norm is this, over [1, N*C, ...])
        from .aten_composite import batch_norm_batch_stats

        return batch_norm_batch_stats(cx, x, w, b, mean, var, *rest[1:])
    eps = rest[-1]
    c = x.type.shape[1]
    w = w if w is not None else cx.const(np.ones(c), x.type.dtype)
    b = b if b is not None else cx.const(np.zeros(c), x.type.dtype)
    return cx.op("batch_norm", [x, w, b, mean, var], eps=float(eps)), UNAVAILABLE, UNAVAILABLE


@converter("aten.convolution.default")
def _conv(cx: Any, node: Any, x: Value, w: Value, b: Any, stride: Sequence[int], padding: Sequence[int],
          dilation: Sequence[int], transposed: bool, output_padding: Sequence[int], groups: int) -> Value:
    if transposed:
        from .aten_composite import conv_transposed

        return conv_transposed(cx, x, w, b, stride, padding, dilation, output_padding, groups)
    nd = w.type.rank - 2
    pads = list(padding) * 2 if len(padding) == nd else list(padding)
    ins = [x, w] + ([b] if b is not None else [])
    return cx.op("conv", ins, strides=list(stride), pads=pads, dilations=list(dilation), groups=groups)


def _pool_args(kernel: Sequence[int], stride: Sequence[int], padding: Any, nd: int) -> tuple[list, list, list]:
    kernel = list(kernel) * (nd if len(kernel) == 1 else 1)
    stride = list(stride) if stride else kernel
    stride = stride * (nd if len(stride) == 1 else 1)
    padding = [padding] * nd if isinstance(padding, int) else list(padding) * (nd if len(padding) == 1 else 1)
    return kernel, stride, padding * 2


@converter("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default", "aten.max_pool1d.default",
           "aten.max_pool3d_with_indices.default")
def _max_pool(cx: Any, node: Any, x: Value, kernel: Sequence[int], stride: Sequence[int] = (), padding: Any = 0,
              dilation: Any = 1, ceil_mode: bool = False) -> Any:
    nd = x.type.rank - 2
    k, s, p = _pool_args(kernel, stride, padding, nd)
    d = [dilation] * nd if isinstance(dilation, int) else list(dilation) * (nd if len(dilation) == 1 else 1)
    y = cx.op("max_pool", [x], kernel=k, strides=s, pads=p, dilations=d, ceil_mode=ceil_mode)
    return (y, UNAVAILABLE) if "with_indices" in op_name(node.target) else y


@converter("aten.avg_pool2d.default", "aten.avg_pool1d.default", "aten.avg_pool3d.default")
def _avg_pool(cx: Any, node: Any, x: Value, kernel: Sequence[int], stride: Sequence[int] = (), padding: Any = 0,
              ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Any = None) -> Value:
    k, s, p = _pool_args(kernel, stride, padding, x.type.rank - 2)
    if divisor_override is not None:  # the window's sum over a fixed divisor: the padded mean times k / divisor
        y = cx.op("avg_pool", [x], kernel=k, strides=s, pads=p, ceil_mode=ceil_mode, count_include_pad=True)
        return cx.op("mul", [y, _scalar(cx, y, math.prod(k) / divisor_override)])
    return cx.op("avg_pool", [x], kernel=k, strides=s, pads=p, ceil_mode=ceil_mode,
                  count_include_pad=count_include_pad)


@converter("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default",
           "aten._adaptive_avg_pool1d.default", "aten.adaptive_avg_pool1d.default", "aten._adaptive_avg_pool3d.default")
def _adaptive_avg_pool(cx: Any, node: Any, x: Value, output_size: Sequence[int]) -> Value:
    return cx.op("adaptive_avg_pool", [x], output_size=list(output_size))


@converter("aten.lstm.input")
def _lstm(cx: Any, node: Any, x: Value, hx: Sequence[Value], params: Sequence[Value], has_biases: bool,
          num_layers: int, dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> Any:
    dirs = 2 if bidirectional else 1
    if len(params) != (4 if has_biases else 2) * num_layers * dirs or \
            getattr(hx[0].type, "shape", (0,))[0] != num_layers * dirs:
        raise NotImplementedError("LSTM with projections (proj_size)")
    return _recurrent(cx, "lstm", x, list(hx), params, has_biases, num_layers, bidirectional, batch_first)


@converter("aten.gru.input")
def _gru(cx: Any, node: Any, x: Value, h0: Value, params: Sequence[Value], has_biases: bool, num_layers: int,
         dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> Any:
    return _recurrent(cx, "gru", x, [h0], params, has_biases, num_layers, bidirectional, batch_first)


@converter("aten.rnn_tanh.input", "aten.rnn_relu.input")
def _rnn(cx: Any, node: Any, x: Value, h0: Value, params: Sequence[Value], has_biases: bool, num_layers: int,
         dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> Any:
    act = "relu" if "relu" in op_name(node.target) else "tanh"
    return _recurrent(cx, "rnn", x, [h0], params, has_biases, num_layers, bidirectional, batch_first,
                      nonlinearity=act)


def reverse_time(cx: Any, x: Value, batch_first: bool) -> Value:
    """x with its time axis reversed (a backward direction runs the forward op on this, and reverses back)."""
    axis = 1 if batch_first else 0
    return cx.op("slice", [x], starts=[-1], ends=[-_BIG], axes=[axis], steps=[-1])


def _recurrent(cx: Any, op: str, x: Value, states: list[Value], params: Sequence[Value], has_biases: bool,
               num_layers: int, bidirectional: bool, batch_first: bool, **attrs: Any) -> Any:
    """A stack of `op` layers (the IR's lstm/gru/rnn run one layer, one direction each); states are
    [layers * directions, B, H] per kind. A backward direction runs on the time-reversed sequence, and the two
    directions' outputs are concatenated on the feature axis, as torch lays them out."""
    import numpy as np

    per = 4 if has_biases else 2
    dirs = 2 if bidirectional else 1
    y, finals = x, [[] for _ in states]  # type: ignore[var-annotated]
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh, *bias = params[per * k: per * k + per]
            if not bias:
                zeros = cx.const(np.zeros(w_ih.type.shape[0]), x.type.dtype)
                bias = [zeros, zeros]
            picked = [cx.op("slice", [s], starts=[k], ends=[k + 1], axes=[0]) for s in states]
            src = reverse_time(cx, y, batch_first) if d else y
            out, *new = cx.op(op, [src, *picked, w_ih, w_hh, *bias], batch_first=batch_first, **attrs)
            outs.append(reverse_time(cx, out, batch_first) if d else out)
            for kind, v in zip(finals, new):
                kind.append(v)
        y = outs[0] if dirs == 1 else cx.op("concat", outs, axis=-1)
    return (y, *(vs[0] if len(vs) == 1 else cx.op("concat", vs, axis=0) for vs in finals))


@converter("aten.upsample_bicubic2d.vec", "aten.upsample_bilinear2d.vec", "aten.upsample_nearest2d.vec",
           "aten.upsample_linear1d.vec", "aten.upsample_nearest1d.vec", "aten.upsample_trilinear3d.vec",
           "aten.upsample_nearest3d.vec")
def _upsample(cx: Any, node: Any, x: Value, output_size: Sequence[Any] | None, *args: Any) -> Value:
    """F.interpolate (nearest, linear, cubic): the `interpolate` op, whose sizes may be symbolic; the cpu target
    picks torch's kernel or per-axis GEMMs by measuring."""
    kind = op_name(node.target).split(".")[1]
    nearest = kind.startswith("upsample_nearest")
    align_corners, scale_factors = (False, args[0]) if nearest else (args[0], args[1])
    sizes = [cx.dim(d) for d in node.meta["val"].shape[2:]]
    scales = None if output_size is not None or scale_factors is None else [float(f) for f in scale_factors]
    mode = "nearest" if nearest else "cubic" if kind == "upsample_bicubic2d" else "linear"
    return cx.op("interpolate", [x], mode=mode, sizes=sizes, scales=scales, align_corners=bool(align_corners))


@converter("operator.getitem")
def _getitem(cx: Any, node: Any, seq: Any, i: int) -> Any:
    return seq[i]


from . import aten_composite  # noqa: E402,F401 - registers the composite converters
