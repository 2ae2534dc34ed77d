"""Converters of the plain ONNX ops: elementwise, shape arithmetic (folded to dim expressions while the values
are known), layout, casts and constants. Ops expressed through several IR ops live in `composite`, Resize in
`resize`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from graphopt.ir import SLICE_END, DType, Value
from graphopt.ir.symbolic import dim_add, dim_compare, dim_floordiv, dim_max, dim_min, dim_mul, dim_sub

from .context import (ConversionContext, Converter, Known, Unprovable, attrs_of, converter, fold_known, from_known,
                      known_array, need)

# -- converters ----------------------------------------------------------------------------------------------
def _simple(op: str, **fixed: Any) -> Converter:
    return lambda cx, n, a: cx.op(op, a, **fixed)


for _ox, _ir in {"Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Sin": "sin", "Cos": "cos",
                 "Tanh": "tanh", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh", "Sigmoid": "sigmoid", "Relu": "relu", "Erf": "erf", "Floor": "floor", "Ceil": "ceil",
                 "Round": "round", "Sign": "sign", "Reciprocal": "reciprocal", "Not": "logical_not",
                 "IsNaN": "isnan", "HardSwish": "hardswish", "And": "logical_and",
                 "Or": "logical_or", "Xor": "logical_xor", "MatMul": "matmul"}.items():
    converter(_ox)(_simple(_ir))


def _fold_binary(cx: ConversionContext, n: Any, a: list[Any], fn: Callable[[Any, Any], Any], op: str) -> Any:
    """Shape arithmetic on values known at import time folds entrywise, with numpy's broadcasting (a shape
    scalar against a matrix, `batch_index * seq + arange(seq)` in attention masks, gives the matrix); what
    cannot fold runs at run time on the materialized dims."""
    folded = fold_known(cx, a, fn)
    return folded if folded is not None else _variadic(cx, a, op)


def _compare(relation: str) -> Callable[[Any, Any], bool]:
    def fn(x: Any, y: Any) -> bool:
        out = dim_compare(relation, x, y)
        if out is None:
            raise Unprovable(f"{x} {relation} {y}")
        return out

    return fn


def _floordiv(x: Any, y: Any) -> Any:
    if not isinstance(y, int) or y <= 0 or (isinstance(x, int) and x < 0):
        raise Unprovable(f"{x} / {y}")  # ONNX truncates: equal to floor division only for these signs
    return dim_floordiv(x, y)


def _variadic(cx: ConversionContext, a: list[Any], op: str) -> Any:
    out = a[0]
    for x in a[1:]:
        out = cx.op(op, [out, x])
    return out if len(a) > 1 else cx.op("identity", [out])


converter("Add")(lambda cx, n, a: _fold_binary(cx, n, a, dim_add, "add"))
converter("Mul")(lambda cx, n, a: _fold_binary(cx, n, a, dim_mul, "mul"))
converter("Sub")(lambda cx, n, a: _fold_binary(cx, n, a, dim_sub, "sub"))
converter("Sum")(lambda cx, n, a: _variadic(cx, a, "add"))
converter("Max")(lambda cx, n, a: _fold_binary(cx, n, a, dim_max, "maximum") if len(a) == 2 else _variadic(cx, a, "maximum"))
converter("Min")(lambda cx, n, a: _fold_binary(cx, n, a, dim_min, "minimum") if len(a) == 2 else _variadic(cx, a, "minimum"))
def _comparison(relation: str) -> Converter:
    def conv(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
        folded = fold_known(cx, a, _compare(relation), DType.BOOL)
        return folded if folded is not None else cx.op(relation, a)

    return conv


for _ox, _rel in {"Equal": "eq", "Less": "lt", "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge"}.items():
    converter(_ox)(_comparison(_rel))


def _select(c: Any, x: Any, y: Any) -> Any:
    if not isinstance(c, (bool, int)):
        raise Unprovable(f"a condition of {c}")
    return x if c else y


@converter("Where")
def _where(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    folded = fold_known(cx, a, _select)
    return folded if folded is not None else cx.op("where", a)


@converter("Identity")
def _identity(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    return a[0] if isinstance(a[0], Known) else cx.op("identity", a)


@converter("Mean")
def _mean(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    total = _variadic(cx, a, "add")
    return cx.op("div", [total, cx.const(len(a), total.type.dtype)], rounding_mode="none")


@converter("Pow")
def _pow(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    y = cx.op("pow", a)  # ONNX: the result has the base's type, whatever the exponent's
    return y if y.type.dtype == a[0].type.dtype else cx.op("cast", [y], dtype=a[0].type.dtype)


@converter("Div")
def _div(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    folded = fold_known(cx, a, _floordiv)
    if folded is not None:
        return folded
    a = [cx.tensor(x) for x in a]
    int_div = a[0].type.dtype.is_int and a[1].type.dtype.is_int  # ONNX integer Div truncates
    return cx.op("div", a, rounding_mode="trunc" if int_div else "none")


@converter("Mod")
def _mod(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    return cx.op("fmod" if attrs_of(n).get("fmod", 0) else "remainder", a)


@converter("IsInf")
def _isinf(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    y = cx.op("isinf", a)
    if at.get("detect_negative", 1) and at.get("detect_positive", 1):
        return y
    sign = cx.op("gt" if at.get("detect_positive", 1) else "lt", [a[0], cx.const(0, a[0].type.dtype)])
    return cx.op("logical_and", [y, sign])


converter("Softmax")(lambda cx, n, a: cx.op("softmax", a, axis=attrs_of(n).get("axis", -1)))
converter("LogSoftmax")(lambda cx, n, a: cx.op("log_softmax", a, axis=attrs_of(n).get("axis", -1)))
converter("LeakyRelu")(lambda cx, n, a: cx.op("leaky_relu", a, negative_slope=attrs_of(n).get("alpha", 0.01)))
converter("Elu")(lambda cx, n, a: cx.op("elu", a, alpha=attrs_of(n).get("alpha", 1.0)))
converter("Softplus")(lambda cx, n, a: cx.op("softplus", a))
converter("Gelu")(lambda cx, n, a: cx.op("gelu", a, approximate=attrs_of(n).get("approximate", "none")))
@converter("Dropout")
def _dropout(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    training = cx.known(a[2]) if len(a) > 2 and a[2] is not None else [0]
    ratio = cx.known(a[1]) if len(a) > 1 and a[1] is not None else [0.5]
    if training is None or training[0] and (ratio is None or ratio[0] != 0):
        raise NotImplementedError("Dropout in training mode (graphopt compiles inference graphs)")
    y = cx.op("identity", [a[0]])
    if len(n.output) < 2 or not n.output[1]:
        return y
    shape = list(y.type.shape)
    return y, cx.op("full", [], shape=shape, value=1.0, dtype=DType.BOOL)


@converter("HardSigmoid")
def _hardsigmoid(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    alpha, beta = at.get("alpha", 0.2), at.get("beta", 0.5)
    if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5:
        return cx.op("hardsigmoid", a)
    dt = a[0].type.dtype
    return cx.op("clamp", [cx.op("add", [cx.op("mul", [a[0], cx.const(alpha, dt)]), cx.const(beta, dt)])],
                  min=0.0, max=1.0)


@converter("Clip")
def _clip(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    y = a[0]
    lo = a[1] if len(a) > 1 else None
    hi = a[2] if len(a) > 2 else None
    if y.type.dtype.is_float and (lo is None or cx.known(lo)) and (hi is None or cx.known(hi)):
        return cx.op("clamp", [y], min=float(cx.known(lo)[0]) if lo is not None else None,  # type: ignore[index]
                      max=float(cx.known(hi)[0]) if hi is not None else None)  # type: ignore[index]
    if lo is not None:  # run-time bounds (or integer data): max then min, as the spec defines Clip
        y = cx.op("maximum", [y, lo])
    if hi is not None:
        y = cx.op("minimum", [y, hi])
    return y if lo is not None or hi is not None else cx.op("identity", [y])


@converter("Cast")
def _cast(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    from onnx import helper

    dt = DType.from_numpy(helper.tensor_dtype_to_np_dtype(attrs_of(n)["to"]))
    if isinstance(a[0], Known) and dt.is_int:
        return Known(a[0].dims, a[0].shape, dt)
    return cx.op("cast", a, dtype=dt)


@converter("CastLike")
def _cast_like(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    dt = cx.tensor(a[1]).type.dtype
    if isinstance(a[0], Known) and dt.is_int:
        return Known(a[0].dims, a[0].shape, dt)
    return cx.op("cast", [a[0]], dtype=dt)


@converter("Gemm")
def _gemm(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.op("transpose", [a[0]], perm=[1, 0]) if at.get("transA", 0) else a[0]
    w = cx.op("transpose", [a[1]], perm=[1, 0]) if at.get("transB", 0) else a[1]
    y = cx.op("matmul", [x, w])
    if at.get("alpha", 1.0) != 1.0:
        y = cx.op("mul", [y, cx.const(at["alpha"], y.type.dtype)])
    if len(a) > 2 and a[2] is not None:
        c = a[2] if at.get("beta", 1.0) == 1.0 else cx.op("mul", [a[2], cx.const(at["beta"], y.type.dtype)])
        y = cx.op("add", [y, c])
    return y


# -- shapes and layout ---------------------------------------------------------------------------------------
@converter("Shape")
def _shape(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    dims = list(a[0].shape) if isinstance(a[0], Known) else list(cx.tensor(a[0]).type.shape)
    start, end = at.get("start", 0), at.get("end", len(dims))
    return Known(dims[start:end])


@converter("Size")
def _size(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    shape = a[0].shape if isinstance(a[0], Known) else cx.tensor(a[0]).type.shape
    return Known([dim_mul(*shape)], ())


@converter("Constant")
def _constant(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    from onnx import numpy_helper

    at = attrs_of(n)
    if "value" in at:
        return cx.graph.add_constant(numpy_helper.to_array(at["value"]))
    for key, dt in (("value_float", np.float32), ("value_int", np.int64), ("value_floats", np.float32),
                    ("value_ints", np.int64)):
        if key in at:
            return cx.graph.add_constant(np.array(at[key], dtype=dt))
    raise NotImplementedError(f"Constant with {', '.join(at)}")


@converter("Reshape")
def _reshape(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    shape = need(cx, a[1], "the target shape")
    if isinstance(a[0], Known) and all(isinstance(d, int) for d in shape):  # shape arithmetic stays symbolic
        arr = a[0].array()
        return from_known(cx, arr.reshape([arr.shape[i] if d == 0 else d for i, d in enumerate(shape)]), a[0].dtype)
    x = cx.tensor(a[0])
    if not attrs_of(n).get("allowzero", 0):
        shape = [x.type.shape[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(shape)]
    return cx.op("reshape", [x], shape=shape)


@converter("Flatten")
def _flatten(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    ax = attrs_of(n).get("axis", 1)
    ax = ax + x.type.rank if ax < 0 else ax  # axis may equal the rank: [b, s] with axis 2 is [b*s, 1]
    return cx.op("reshape", [x], shape=[dim_mul(*x.type.shape[:ax]), dim_mul(*x.type.shape[ax:])])


@converter("Transpose")
def _transpose(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    return cx.op("transpose", [x], perm=attrs_of(n).get("perm", list(range(x.type.rank))[::-1]))


@converter("Unsqueeze")
def _unsqueeze(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    axes = need(cx, a[1], "Unsqueeze axes")
    if isinstance(a[0], Known):
        arr = a[0].array()
        return from_known(cx, np.expand_dims(arr, [int(x) % (arr.ndim + len(axes)) for x in axes]), a[0].dtype)
    return cx.op("unsqueeze", [a[0]], axes=axes)


@converter("Squeeze")
def _squeeze(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    axes = need(cx, a[1], "Squeeze axes") if len(a) > 1 and a[1] is not None else None
    if isinstance(a[0], Known):
        arr = a[0].array()
        drop = [i for i, d in enumerate(arr.shape) if d == 1] if axes is None else [int(x) % arr.ndim for x in axes]
        return from_known(cx, np.squeeze(arr, tuple(drop)), a[0].dtype)
    return cx.op("squeeze", [a[0]], axes=axes)


@converter("Concat")
def _concat(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    arrays = [known_array(cx, x) for x in a]
    if any(isinstance(x, Known) for x in a) and all(arr is not None for arr in arrays):
        dtype = next(x.dtype for x in a if isinstance(x, Known))
        return from_known(cx, np.concatenate(arrays, axis=attrs_of(n)["axis"]), dtype)  # type: ignore[arg-type]
    return cx.op("concat", a, axis=attrs_of(n)["axis"])


@converter("Gather")
def _gather(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    axis = attrs_of(n).get("axis", 0)
    idx = known_array(cx, a[1])
    if isinstance(a[0], Known) and idx is not None and all(isinstance(i, int) for i in idx.ravel()):
        return from_known(cx, np.take(a[0].array(), idx.astype(np.int64), axis=axis), a[0].dtype)
    return cx.op("gather", a, axis=axis)


@converter("GatherElements")
def _gather_elements(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x, idx = cx.tensor(a[0]), cx.tensor(a[1])
    axis = attrs_of(n).get("axis", 0) % x.type.rank
    if idx.const is None or (idx.const < 0).any():  # ONNX counts negative indices from the end
        size = cx.const(x.type.shape[axis], idx.type.dtype) if isinstance(x.type.shape[axis], int) else None
        if size is None:
            raise NotImplementedError("GatherElements along a symbolic dim")
        idx = cx.op("where", [cx.op("lt", [idx, cx.const(0, idx.type.dtype)]), cx.op("add", [idx, size]), idx])
    return cx.op("gather_elements", [x, idx], axis=axis)


@converter("Slice")
def _slice(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    starts, ends = need(cx, a[1], "Slice starts"), need(cx, a[2], "Slice ends")
    axes = need(cx, a[3], "Slice axes") if len(a) > 3 and a[3] is not None else None
    steps = need(cx, a[4], "Slice steps") if len(a) > 4 and a[4] is not None else None
    clip = lambda v: SLICE_END if isinstance(v, int) and v >= SLICE_END else (-SLICE_END if isinstance(v, int) and v <= -SLICE_END else v)  # noqa: E731
    if isinstance(a[0], Known) and all(isinstance(v, int) for v in (*starts, *ends, *(steps or ()))):
        arr = a[0].array()
        picks = [slice(None)] * arr.ndim
        for k, ax in enumerate(axes if axes is not None else range(len(starts))):
            picks[int(ax) % arr.ndim] = slice(starts[k], ends[k], steps[k] if steps else 1)
        return from_known(cx, arr[tuple(picks)], a[0].dtype)
    return cx.op("slice", [a[0]], starts=[clip(s) for s in starts], ends=[clip(e) for e in ends], axes=axes,
                  steps=steps)


@converter("Expand")
def _expand(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    shape = need(cx, a[1], "the Expand shape")
    if isinstance(a[0], Known) and all(isinstance(d, int) for d in shape):
        arr = a[0].array()
        return from_known(cx, np.broadcast_to(arr, np.broadcast_shapes(arr.shape, tuple(shape))), a[0].dtype)
    x = cx.tensor(a[0])
    lead = len(shape) - x.type.rank
    out = [d if i < lead or d != 1 else x.type.shape[i - lead] for i, d in enumerate(shape)]
    if len(out) < x.type.rank:  # ONNX Expand broadcasts both ways: a shorter shape keeps x's leading dims
        out = list(x.type.shape[: x.type.rank - len(out)]) + out
    return cx.op("expand", [x], shape=out)


converter("Tile")(lambda cx, n, a: cx.op("tile", [a[0]], repeats=need(cx, a[1], "Tile repeats")))


@converter("Split")
def _split(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x, at = cx.tensor(a[0]), attrs_of(n)
    axis = at.get("axis", 0) % x.type.rank
    sizes = need(cx, a[1], "Split sizes") if len(a) > 1 and a[1] is not None else at.get("split")
    if sizes is None:
        total, parts = x.type.shape[axis], len(n.output)
        if not isinstance(total, int):
            raise NotImplementedError("equal Split along a symbolic dim")
        chunk = -(-total // parts)
        sizes = [min(chunk, total - i * chunk) for i in range(parts)]
    out = cx.op("split", [x], axis=axis, sizes=list(sizes))
    return out if isinstance(out, tuple) else (out,)


@converter("Pad")
def _pad(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    rank = x.type.rank
    given = [int(p) for p in need(cx, a[1], "Pad pads")]
    value = need(cx, a[2], "the Pad value") if len(a) > 2 and a[2] is not None else [0.0]
    axes = [int(i) % rank for i in need(cx, a[3], "Pad axes")] if len(a) > 3 and a[3] is not None else list(range(rank))
    pads = [0] * (2 * rank)
    for k, ax in enumerate(axes):
        pads[ax], pads[rank + ax] = given[k], given[len(axes) + k]
    if any(p < 0 for p in pads):  # negative pads crop
        starts = [max(-pads[i], 0) for i in range(rank)]
        ends = [dim_add(x.type.shape[i], pads[rank + i]) if pads[rank + i] < 0 else SLICE_END for i in range(rank)]
        x = cx.op("slice", [x], starts=starts, ends=ends, axes=list(range(rank)))
        pads = [max(p, 0) for p in pads]
    mode = attrs_of(n).get("mode", "constant")
    if mode == "wrap":  # take from the other end, one concat per padded axis
        for ax in range(rank):
            b, e = pads[ax], pads[rank + ax]
            size = x.type.shape[ax]
            parts = ([cx.op("slice", [x], starts=[size - b], ends=[size], axes=[ax])] if b else []) + [x] + (
                [cx.op("slice", [x], starts=[0], ends=[e], axes=[ax])] if e else [])
            x = cx.op("concat", parts, axis=ax) if len(parts) > 1 else x
        return cx.op("identity", [x])
    if not any(pads):
        return cx.op("identity", [x])
    return cx.op("pad", [x], pads=pads, mode=mode, value=float(value[0]))


@converter("ConstantOfShape")
def _constant_of_shape(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    from onnx import numpy_helper

    shape = need(cx, a[0], "the ConstantOfShape shape")
    t = attrs_of(n).get("value")
    value = numpy_helper.to_array(t) if t is not None else np.zeros(1, np.float32)
    dt = DType.from_numpy(value.dtype)
    if all(isinstance(d, int) for d in shape):
        return cx.graph.add_constant(np.full(shape, value.ravel()[0], dtype=value.dtype))
    return cx.op("full", [], shape=shape, value=float(value.ravel()[0]), dtype=dt)


@converter("Range")
def _range(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    start, limit, delta = (need(cx, x, "Range bounds") for x in a)
    dt = cx.tensor(a[0]).type.dtype if isinstance(a[0], Value) else DType.I64
    if dt.is_float:
        return cx.graph.add_constant(np.arange(start[0], limit[0], delta[0], dtype=dt.numpy))
    return cx.op("arange", [], start=int(start[0]), end=limit[0], step=int(delta[0]), dtype=dt)


@converter("Trilu")
def _trilu(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    k = need(cx, a[1], "Trilu k")[0] if len(a) > 1 and a[1] is not None else 0
    return cx.op("triu" if attrs_of(n).get("upper", 1) else "tril", [a[0]], diagonal=int(k))


@converter("CumSum")
def _cumsum(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.tensor(a[0])
    axis = int(need(cx, a[1], "CumSum axis")[0]) % x.type.rank
    flip = None
    if at.get("reverse", 0):
        size = x.type.shape[axis]
        if not isinstance(size, int):
            raise NotImplementedError("reverse CumSum along a symbolic dim")
        flip = cx.const(np.arange(size - 1, -1, -1), DType.I64)
        x = cx.op("gather", [x, flip], axis=axis)
    y = cx.op("cumsum", [x], axis=axis)
    if y.type.dtype != x.type.dtype:
        y = cx.op("cast", [y], dtype=x.type.dtype)
    if at.get("exclusive", 0):
        y = cx.op("sub", [y, x])
    return cx.op("gather", [y, flip], axis=axis) if flip is not None else y


# -- reductions ----------------------------------------------------------------------------------------------
def _reduce(op: str) -> Converter:
    def conv(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
        at = attrs_of(n)
        axes = at.get("axes")
        if axes is None and len(a) > 1 and a[1] is not None:
            axes = need(cx, a[1], "reduce axes")
        if not axes and at.get("noop_with_empty_axes", 0):
            return a[0]
        y = cx.op(op, [a[0]], axes=list(axes) if axes else None, keepdims=bool(at.get("keepdims", 1)))
        return y if y.type.dtype == a[0].type.dtype else cx.op("cast", [y], dtype=a[0].type.dtype)

    return conv


for _ox, _ir in {"ReduceSum": "reduce_sum", "ReduceMean": "reduce_mean", "ReduceMax": "reduce_max",
                 "ReduceMin": "reduce_min", "ReduceProd": "reduce_prod"}.items():
    converter(_ox)(_reduce(_ir))


@converter("ArgMax", "ArgMin")
def _argmax(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x, axis, keep = cx.tensor(a[0]), at.get("axis", 0), bool(at.get("keepdims", 1))
    if not at.get("select_last_index", 0):
        return cx.op(n.op_type.lower(), [x], axis=axis, keepdims=keep)
    size = x.type.shape[axis]
    if not isinstance(size, int):
        raise NotImplementedError("select_last_index along a symbolic dim")
    flipped = cx.op("gather", [x, cx.const(np.arange(size - 1, -1, -1), DType.I64)], axis=axis)
    idx = cx.op(n.op_type.lower(), [flipped], axis=axis, keepdims=keep)
    return cx.op("sub", [cx.const(size - 1, DType.I64), idx])


@converter("TopK")
def _topk(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    return cx.op("topk", [a[0]], k=int(need(cx, a[1], "TopK k")[0]), axis=at.get("axis", -1),
                  largest=bool(at.get("largest", 1)), sorted=bool(at.get("sorted", 1)))


# -- nn ------------------------------------------------------------------------------------------------------
def _spatial(at: dict[str, Any], x: Value, kernel: list[int]) -> dict[str, Any]:
    nd = len(kernel)
    strides, dil = list(at.get("strides", [1] * nd)), list(at.get("dilations", [1] * nd))
    pads = list(at.get("pads", [0] * 2 * nd))
    mode = at.get("auto_pad", "NOTSET")
    if mode == "VALID":
        pads = [0] * 2 * nd
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        sizes = x.type.shape[2:]
        if not all(isinstance(d, int) for d in sizes):
            raise NotImplementedError(f"auto_pad={mode} on symbolic spatial dims")
        total = [max((-(-d // s) - 1) * s + (k - 1) * dl + 1 - d, 0)
                 for d, s, k, dl in zip(sizes, strides, kernel, dil)]
        small = [t // 2 for t in total]
        begin = small if mode == "SAME_UPPER" else [t - h for t, h in zip(total, small)]
        pads = begin + [t - b for t, b in zip(total, begin)]
    return {"strides": strides, "pads": pads, "dilations": dil}


@converter("Conv")
def _conv(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    kernel = list(at.get("kernel_shape", cx.tensor(a[1]).type.shape[2:]))
    return cx.op("conv", [x for x in a if x is not None], groups=at.get("group", 1),
                  **_spatial(at, cx.tensor(a[0]), kernel))


@converter("MaxPool", "AveragePool", "LpPool")
def _pool(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    if len(n.output) > 1 and n.output[1]:
        raise NotImplementedError("MaxPool indices output")
    k = list(at["kernel_shape"])
    sp = _spatial(at, cx.tensor(a[0]), k)
    if n.op_type == "LpPool":
        p = at.get("p", 2)
        if any(d != 1 for d in sp["dilations"]):
            raise NotImplementedError("dilated LpPool")
        del sp["dilations"]
        dt = cx.tensor(a[0]).type.dtype
        powered = cx.op("pow", [cx.op("abs", [a[0]]), cx.const(p, dt)])
        mean = cx.op("avg_pool", [powered], kernel=k, ceil_mode=bool(at.get("ceil_mode", 0)), count_include_pad=True,
                      **sp)
        total = cx.op("mul", [mean, cx.const(float(np.prod(k)), dt)])
        return cx.op("pow", [total, cx.const(1.0 / p, dt)])
    if n.op_type == "MaxPool":
        return cx.op("max_pool", [a[0]], kernel=k, ceil_mode=bool(at.get("ceil_mode", 0)), **sp)
    if at.get("dilations") and any(d != 1 for d in at["dilations"]):
        raise NotImplementedError("dilated AveragePool")
    del sp["dilations"]
    return cx.op("avg_pool", [a[0]], kernel=k, ceil_mode=bool(at.get("ceil_mode", 0)),
                  count_include_pad=bool(at.get("count_include_pad", 0)), **sp)


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    op = "reduce_mean" if n.op_type == "GlobalAveragePool" else "reduce_max"
    return cx.op(op, [x], axes=list(range(2, x.type.rank)), keepdims=True)


@converter("BatchNormalization")
def _batch_norm(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    if len(n.output) > 1 and any(n.output[1:]):
        raise NotImplementedError("BatchNormalization in training mode")
    return cx.op("batch_norm", a[:5], eps=attrs_of(n).get("epsilon", 1e-5))


@converter("QuantizeLinear", "DequantizeLinear")
def _qdq(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    op = "quantize_linear" if n.op_type == "QuantizeLinear" else "dequantize_linear"
    block = attrs_of(n).get("block_size", 0)
    if block and op == "quantize_linear":
        raise NotImplementedError("blocked QuantizeLinear (block_size); blocked DequantizeLinear is supported")
    if len(a) < 3 or a[2] is None:
        zp_dt = DType.U8 if op == "quantize_linear" else cx.tensor(a[0]).type.dtype
        a = [a[0], a[1], cx.const(np.zeros(cx.tensor(a[1]).type.shape), zp_dt)]
    return cx.op(op, a, axis=attrs_of(n).get("axis", 1), **({"block_size": block} if block else {}))


@converter("GatherND")
def _gather_nd(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    if attrs_of(n).get("batch_dims", 0):
        raise NotImplementedError("GatherND with batch_dims")
    idx = cx.tensor(a[1])
    k = idx.type.shape[-1]
    if not isinstance(k, int):
        raise NotImplementedError("GatherND with a symbolic index depth")
    last = idx.type.rank - 1
    parts = [cx.op("squeeze", [cx.op("slice", [idx], starts=[j], ends=[j + 1], axes=[last])], axes=[last])
             for j in range(k)]
    return cx.op("index", [a[0], *parts], axis=0)


@converter("If")
def _if(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    """A condition known at import time (shape checks, export flags) takes its branch; a run-time condition
    computes both branches and selects with `where` (exact when both branches agree in shape and dtype)."""
    at = attrs_of(n)
    cond = cx.known(a[0])

    def branch(g: Any) -> list[Any]:
        cx.convert_nodes(g.node)
        return [cx.env[o.name] for o in g.output]

    if cond is not None:
        return branch(at["then_branch"] if cond[0] else at["else_branch"])
    then, other = branch(at["then_branch"]), branch(at["else_branch"])
    out = []
    for t, e in zip(then, other):
        t, e = cx.tensor(t), cx.tensor(e)
        if t.type != e.type:
            raise NotImplementedError(f"If on a run-time condition whose branches differ ({t.type} vs {e.type})")
        out.append(cx.op("where", [a[0], t, e]))
    return out


converter("NonZero")(lambda cx, n, a: cx.op("nonzero", a, count=cx.fresh_symbol("nonzero")))
converter("DynamicQuantizeLinear")(lambda cx, n, a: cx.op("dynamic_quantize_linear", a))


@converter("Compress")
def _compress(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    """The slices where the condition is true: a data-dependent count (nonzero's fresh symbol), then a gather."""
    x, cond = cx.tensor(a[0]), cx.tensor(a[1])
    axis = attrs_of(n).get("axis")
    if axis is None:
        x, axis = cx.op("reshape", [x], shape=[-1]), 0
    axis = axis % x.type.rank
    size = x.type.shape[axis]
    if isinstance(size, int) and cond.type.shape[0] != size:  # a shorter condition keeps only its own length
        x = cx.op("slice", [x], starts=[0], ends=[cond.type.shape[0]], axes=[axis])
    nz = cx.op("nonzero", [cond], count=cx.fresh_symbol("compress"))
    return cx.op("gather", [x, cx.op("reshape", [nz], shape=[nz.type.shape[1]])], axis=axis)
