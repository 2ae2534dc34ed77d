"""ONNX ops that graphopt expresses with its core IR ops instead of giving each its own IR op.

Norms, losses, attention, rotary embeddings and the rarer reductions and activations decompose into a handful of
core ops, so every backend runs them without new kernels and the fusion passes see the same shapes they see in
exporter output. Each converter follows the op's definition in the ONNX spec (and `onnx.reference`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphopt.ir import DType, Value

from .context import ConversionContext, attrs_of, converter, need

_NEG_INF = float("-inf")


def _axes_of(cx: ConversionContext, n: Any, a: list[Any], rank: int) -> list[int] | None:
    """Reduce axes from the attribute (opset < 18) or the second input; None = all."""
    axes = attrs_of(n).get("axes")
    if axes is None and len(a) > 1 and a[1] is not None:
        axes = need(cx, a[1], "reduce axes")
    return [int(x) % rank for x in axes] if axes else None


def _reduce_args(cx: ConversionContext, n: Any, a: list[Any], x: Any) -> tuple[list[int] | None, bool, bool]:
    """(axes, keepdims, noop) of an ONNX Reduce*: noop when empty axes mean "leave x as it is"."""
    at = attrs_of(n)
    axes = _axes_of(cx, n, a, x.type.rank)
    return axes, bool(at.get("keepdims", 1)), axes is None and bool(at.get("noop_with_empty_axes", 0))


def _reduce_composite(pre: str | None, op: str, post: str | None) -> Any:
    def conv(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
        x = cx.tensor(a[0])
        axes, keep, noop = _reduce_args(cx, n, a, x)
        if noop:
            return cx.op("identity", [x])
        y = {"abs": lambda: cx.op("abs", [x]), "square": lambda: cx.op("mul", [x, x]), None: lambda: x}[pre]()
        y = cx.op(op, [y], axes=axes, keepdims=keep)
        if post is not None:
            y = cx.op(post, [y])
        return y if y.type.dtype == x.type.dtype else cx.op("cast", [y], dtype=x.type.dtype)

    return conv


converter("ReduceL1")(_reduce_composite("abs", "reduce_sum", None))
converter("ReduceL2")(_reduce_composite("square", "reduce_sum", "sqrt"))
converter("ReduceSumSquare")(_reduce_composite("square", "reduce_sum", None))
converter("ReduceLogSum")(_reduce_composite(None, "reduce_sum", "log"))


@converter("ReduceLogSumExp")
def _reduce_log_sum_exp(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    axes, keep, noop = _reduce_args(cx, n, a, x)
    if noop:
        return cx.op("identity", [x])
    if x.type.is_static and x.type.numel() == 0:
        return cx.op("log", [cx.op("reduce_sum", [cx.op("exp", [x])], axes=axes, keepdims=keep)])
    # log(sum(exp(x - m))) + m with m the max (finite: an all -inf slice gives -inf either way)
    m = cx.op("reduce_max", [x], axes=axes, keepdims=True)
    m = cx.op("where", [cx.op("isinf", [m]), cx.const(0, x.type.dtype), m])
    s = cx.op("reduce_sum", [cx.op("exp", [cx.op("sub", [x, m])])], axes=axes, keepdims=True)
    y = cx.op("add", [cx.op("log", [s]), m])
    if not keep:
        y = cx.op("squeeze", [y], axes=axes if axes is not None else list(range(x.type.rank)))
    return y


# -- activations ---------------------------------------------------------------------------------------------
def _f(cx: ConversionContext, v: float, like: Value) -> Value:
    return cx.const(v, like.type.dtype)


@converter("Selu")
def _selu(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    alpha, gamma = at.get("alpha", 1.67326319217681884765625), at.get("gamma", 1.05070102214813232421875)
    return cx.op("mul", [cx.op("elu", [a[0]], alpha=alpha), _f(cx, gamma, a[0])])


@converter("Celu")
def _celu(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    alpha = attrs_of(n).get("alpha", 1.0)
    scaled = cx.op("div", [a[0], _f(cx, alpha, a[0])], rounding_mode="none")
    return cx.op("mul", [cx.op("elu", [scaled], alpha=1.0), _f(cx, alpha, a[0])])


@converter("ThresholdedRelu")
def _thresholded_relu(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = a[0]
    return cx.op("where", [cx.op("gt", [x, _f(cx, attrs_of(n).get("alpha", 1.0), x)]), x, _f(cx, 0, x)])


@converter("Softsign")
def _softsign(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = a[0]
    return cx.op("div", [x, cx.op("add", [cx.op("abs", [x]), _f(cx, 1, x)])], rounding_mode="none")


converter("Mish")(lambda cx, n, a: cx.op("mul", [a[0], cx.op("tanh", [cx.op("softplus", [a[0]])])]))


@converter("Swish")
def _swish(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    alpha = attrs_of(n).get("alpha", 1.0)
    x = a[0]
    return cx.op("mul", [x, cx.op("sigmoid", [cx.op("mul", [x, _f(cx, alpha, x)]) if alpha != 1.0 else x])])


@converter("PRelu")
def _prelu(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x, slope = a
    return cx.op("where", [cx.op("lt", [x, _f(cx, 0, x)]), cx.op("mul", [x, slope]), x])


@converter("Shrink")
def _shrink(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    lambd, bias = at.get("lambd", 0.5), at.get("bias", 0.0)
    x = a[0]
    f = x.type.dtype.is_float
    low = cx.op("lt", [x, cx.const(-lambd, x.type.dtype) if f else cx.const(int(-lambd), x.type.dtype)])
    high = cx.op("gt", [x, cx.const(lambd if f else int(lambd), x.type.dtype)])
    b = cx.const(bias if f else int(bias), x.type.dtype)
    zero = cx.const(0, x.type.dtype)
    return cx.op("where", [low, cx.op("add", [x, b]), cx.op("where", [high, cx.op("sub", [x, b]), zero])])


@converter("Hardmax")
def _hardmax(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    axis = attrs_of(n).get("axis", -1) % x.type.rank
    idx = cx.op("argmax", [x], axis=axis, keepdims=True)
    size = x.type.shape[axis]
    rng = cx.op("arange", [], end=size, dtype=DType.I64)
    rng = cx.op("reshape", [rng], shape=[size] + [1] * (x.type.rank - 1 - axis))
    return cx.op("cast", [cx.op("eq", [idx, rng])], dtype=x.type.dtype)


# -- normalizations ------------------------------------------------------------------------------------------
def _moments(cx: ConversionContext, x: Value, axes: list[int]) -> tuple[Value, Value]:
    mean = cx.op("reduce_mean", [x], axes=axes, keepdims=True)
    centered = cx.op("sub", [x, mean])
    var = cx.op("reduce_mean", [cx.op("mul", [centered, centered])], axes=axes, keepdims=True)
    return mean, var


@converter("LpNormalization")
def _lp_normalization(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.tensor(a[0])
    axis, p = at.get("axis", -1) % x.type.rank, at.get("p", 2)
    if p == 1:
        norm = cx.op("reduce_sum", [cx.op("abs", [x])], axes=[axis], keepdims=True)
    elif p == 2:
        norm = cx.op("sqrt", [cx.op("reduce_sum", [cx.op("mul", [x, x])], axes=[axis], keepdims=True)])
    else:
        raise NotImplementedError(f"LpNormalization with p={p}")
    y = cx.op("div", [x, norm], rounding_mode="none")
    return cx.op("where", [cx.op("eq", [norm, _f(cx, 0, x)]), _f(cx, 0, x), y])


@converter("MeanVarianceNormalization")
def _mvn(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    axes = [int(i) % x.type.rank for i in attrs_of(n).get("axes", [0, 2, 3])]
    mean = cx.op("reduce_mean", [x], axes=axes, keepdims=True)
    sq_mean = cx.op("reduce_mean", [cx.op("mul", [x, x])], axes=axes, keepdims=True)
    var = cx.op("sub", [sq_mean, cx.op("mul", [mean, mean])])
    std = cx.op("sqrt", [cx.op("add", [var, _f(cx, 1e-9, x)])])
    return cx.op("div", [cx.op("sub", [x, mean]), std], rounding_mode="none")


def _channel_param(cx: ConversionContext, p: Value, rank: int) -> Value:
    """A per-channel (C,) parameter shaped to broadcast against N, C, spatial..."""
    return cx.op("reshape", [p], shape=[p.type.shape[0]] + [1] * (rank - 2))


@converter("InstanceNormalization")
def _instance_norm(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x, scale, bias = cx.tensor(a[0]), a[1], a[2]
    eps = attrs_of(n).get("epsilon", 1e-5)
    mean, var = _moments(cx, x, list(range(2, x.type.rank)))
    y = cx.op("mul", [cx.op("sub", [x, mean]), cx.op("rsqrt", [cx.op("add", [var, _f(cx, eps, x)])])])
    y = cx.op("mul", [y, _channel_param(cx, scale, x.type.rank)])
    return cx.op("add", [y, _channel_param(cx, bias, x.type.rank)])


@converter("GroupNormalization")
def _group_norm(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x, scale, bias = cx.tensor(a[0]), cx.tensor(a[1]), cx.tensor(a[2])
    groups, eps = at["num_groups"], at.get("epsilon", 1e-5)
    shape = list(x.type.shape)
    c = shape[1]
    if not isinstance(c, int):
        raise NotImplementedError("GroupNormalization with a symbolic channel count")
    grouped = cx.op("reshape", [x], shape=[shape[0], groups, -1])
    mean, var = _moments(cx, grouped, [2])
    y = cx.op("mul", [cx.op("sub", [grouped, mean]), cx.op("rsqrt", [cx.op("add", [var, _f(cx, eps, x)])])])
    y = cx.op("reshape", [y], shape=shape)
    if scale.type.shape[0] != c:  # opset 18: one scale/bias per group
        scale = cx.op("reshape", [cx.op("expand", [cx.op("reshape", [scale], shape=[groups, 1])],
                                          shape=[groups, c // groups])], shape=[c])
        bias = cx.op("reshape", [cx.op("expand", [cx.op("reshape", [bias], shape=[groups, 1])],
                                         shape=[groups, c // groups])], shape=[c])
    y = cx.op("mul", [y, _channel_param(cx, scale, x.type.rank)])
    return cx.op("add", [y, _channel_param(cx, bias, x.type.rank)])


@converter("LRN")
def _lrn(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.tensor(a[0])
    size, alpha, beta, bias = at["size"], at.get("alpha", 1e-4), at.get("beta", 0.75), at.get("bias", 1.0)
    shape = list(x.type.shape)
    sq = cx.op("mul", [x, x])
    # sum over a window of `size` channels: an average pool along C on an (N, 1, C, rest) view
    view = cx.op("reshape", [sq], shape=[shape[0], 1, shape[1], -1])
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    window = cx.op("avg_pool", [view], kernel=[size, 1], strides=[1, 1], pads=[lo, 0, hi, 0],
                    count_include_pad=True)
    window = cx.op("reshape", [window], shape=shape)
    denom = cx.op("pow", [cx.op("add", [cx.op("mul", [window, _f(cx, alpha, x)]), _f(cx, bias, x)]),
                           _f(cx, beta, x)])
    return cx.op("div", [x, denom], rounding_mode="none")


@converter("RMSNormalization")
def _rms_normalization(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    if at.get("stash_type", 1) != 1:
        raise NotImplementedError("RMSNormalization with stash_type other than float")
    return cx.op("rms_norm", [a[0], a[1]], axis=at.get("axis", -1), eps=at.get("epsilon", 1e-5))


@converter("LayerNormalization")
def _layer_norm(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.tensor(a[0])
    axis, eps = at.get("axis", -1) % x.type.rank, at.get("epsilon", 1e-5)
    args = [v for v in a[1:3] if v is not None]
    if len(n.output) == 1 or not any(n.output[1:]):
        return cx.op("layer_norm", [x, *args], axis=axis, eps=eps)
    # the mean and 1/std outputs are asked for: spell it out, in float32 (stash_type) like the spec
    z = x if x.type.dtype == DType.F32 else cx.op("cast", [x], dtype=DType.F32)
    mean, var = _moments(cx, z, list(range(axis, x.type.rank)))
    inv = cx.op("rsqrt", [cx.op("add", [var, cx.const(eps, DType.F32)])])
    y = cx.op("mul", [cx.op("sub", [z, mean]), inv])
    if z is not x:
        y = cx.op("cast", [y], dtype=x.type.dtype)
    y = cx.op("mul", [y, args[0]])
    if len(args) > 1:
        y = cx.op("add", [y, args[1]])
    return y, mean, inv


# -- layout --------------------------------------------------------------------------------------------------
@converter("DepthToSpace")
def _depth_to_space(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.tensor(a[0])
    b, c, h, w = x.type.shape
    bs = at["blocksize"]
    if at.get("mode", "DCR") == "DCR":
        t = cx.op("reshape", [x], shape=[b, bs, bs, c // bs // bs, h, w])
        t = cx.op("transpose", [t], perm=[0, 3, 4, 1, 5, 2])
    else:
        t = cx.op("reshape", [x], shape=[b, c // bs // bs, bs, bs, h, w])
        t = cx.op("transpose", [t], perm=[0, 1, 4, 2, 5, 3])
    return cx.op("reshape", [t], shape=[b, c // bs // bs, h * bs, w * bs])


@converter("SpaceToDepth")
def _space_to_depth(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    b, c, h, w = x.type.shape
    at = attrs_of(n)
    bs = at["blocksize"]
    t = cx.op("reshape", [x], shape=[b, c, h // bs, bs, w // bs, bs])
    crd = at.get("mode", "DCR") == "CRD"  # the inverse of DepthToSpace's channel orders
    t = cx.op("transpose", [t], perm=[0, 1, 3, 5, 2, 4] if crd else [0, 3, 5, 1, 2, 4])
    return cx.op("reshape", [t], shape=[b, c * bs * bs, h // bs, w // bs])


@converter("EyeLike")
def _eye_like(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    from onnx import helper

    at = attrs_of(n)
    x = cx.tensor(a[0])
    if not x.type.is_static:
        raise NotImplementedError("EyeLike of a tensor with symbolic dims")
    dtype = helper.tensor_dtype_to_np_dtype(at["dtype"]) if "dtype" in at else x.type.dtype.numpy
    return cx.graph.add_constant(np.eye(*x.type.shape, k=at.get("k", 0), dtype=dtype))


@converter("OneHot")
def _one_hot(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    idx, values = cx.tensor(a[0]), cx.tensor(a[2])
    depth = int(need(cx, a[1], "OneHot depth")[0])
    axis = attrs_of(n).get("axis", -1) % (idx.type.rank + 1)
    idx = idx if idx.type.dtype == DType.I64 else cx.op("cast", [idx], dtype=DType.I64)
    idx = cx.op("where", [cx.op("lt", [idx, cx.const(0, DType.I64)]),
                           cx.op("add", [idx, cx.const(depth, DType.I64)]), idx])
    rng = cx.op("reshape", [cx.op("arange", [], end=depth, dtype=DType.I64)],
                 shape=[depth] + [1] * (idx.type.rank - axis))
    hot = cx.op("eq", [cx.op("unsqueeze", [idx], axes=[axis]), rng])
    off, on = (cx.op("slice", [values], starts=[i], ends=[i + 1], axes=[0]) for i in (0, 1))
    return cx.op("where", [hot, on, off])


@converter("CenterCropPad")
def _center_crop_pad(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x = cx.tensor(a[0])
    target = need(cx, a[1], "CenterCropPad shape")
    rank = x.type.rank
    axes = [int(i) % rank for i in attrs_of(n).get("axes", range(rank))]
    starts, ends, pads = [], [], [0] * (2 * rank)
    for ax, want in zip(axes, target):
        have = x.type.shape[ax]
        if not isinstance(have, int):
            raise NotImplementedError("CenterCropPad on a symbolic dim")
        if have > want:
            s = (have - want) // 2
            starts.append(s)
            ends.append(s + want)
        else:
            starts.append(0)
            ends.append(have)
            pads[ax], pads[rank + ax] = (want - have) // 2, want - have - (want - have) // 2
    y = cx.op("slice", [x], starts=starts, ends=ends, axes=axes)
    return cx.op("pad", [y], pads=pads) if any(pads) else y


# -- losses --------------------------------------------------------------------------------------------------
def _nll(cx: ConversionContext, logp: Value, target: Value, weight: Value | None, reduction: str,
         ignore_index: int | None) -> Value:
    target = target if target.type.dtype == DType.I64 else cx.op("cast", [target], dtype=DType.I64)
    dt = logp.type.dtype
    valid = None
    if ignore_index is not None:
        valid = cx.op("ne", [target, cx.const(ignore_index, DType.I64)])
        target = cx.op("where", [valid, target, cx.const(0, DType.I64)])
    picked = cx.op("squeeze", [cx.op("gather_elements", [logp, cx.op("unsqueeze", [target], axes=[1])], axis=1)],
                    axes=[1])
    loss = cx.op("neg", [picked])
    w = cx.op("gather", [weight, target], axis=0) if weight is not None else None
    if valid is not None:
        mask = cx.op("cast", [valid], dtype=dt)
        w = cx.op("mul", [w, mask]) if w is not None else mask
    if w is not None:
        loss = cx.op("mul", [loss, w])
    if reduction == "none":
        return loss
    total = cx.op("reduce_sum", [loss], keepdims=False)
    if reduction == "sum":
        return total
    denom = cx.op("reduce_sum", [w], keepdims=False) if w is not None else cx.const(
        float(np.prod(target.type.shape)) if target.type.is_static else 0.0, dt)
    if w is None and not target.type.is_static:
        raise NotImplementedError("mean reduction over symbolic dims")
    return cx.op("div", [total, denom], rounding_mode="none")


@converter("NegativeLogLikelihoodLoss")
def _nll_loss(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    weight = cx.tensor(a[2]) if len(a) > 2 and a[2] is not None else None
    return _nll(cx, cx.tensor(a[0]), cx.tensor(a[1]), weight, at.get("reduction", "mean"), at.get("ignore_index"))


@converter("SoftmaxCrossEntropyLoss")
def _sce_loss(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    logp = cx.op("log_softmax", [a[0]], axis=1)
    weight = cx.tensor(a[2]) if len(a) > 2 and a[2] is not None else None
    loss = _nll(cx, logp, cx.tensor(a[1]), weight, at.get("reduction", "mean"), at.get("ignore_index"))
    return (loss, logp) if len(n.output) > 1 and n.output[1] else loss


# -- attention -----------------------------------------------------------------------------------------------
def _heads(cx: ConversionContext, x: Value, heads: int) -> Value:
    """(B, S, H*D) → (B, H, S, D)."""
    b, s, hidden = x.type.shape
    y = cx.op("reshape", [x], shape=[b, s, heads, -1])
    return cx.op("transpose", [y], perm=[0, 2, 1, 3])


def _bias_from_mask(cx: ConversionContext, mask: Value, dt: DType) -> Value:
    if mask.type.dtype == DType.BOOL:
        return cx.op("where", [mask, cx.const(0, dt), cx.const(_NEG_INF, dt)])
    return mask


def _offset_bias(cx: ConversionContext, nq: int, nkv: int, offset: Any, dt: DType, allowed: Any) -> Value:
    """0 where allowed(i + offset - j) else -inf, as (q, kv) for a static offset or (B, 1, q, kv) per batch."""
    i, j = np.arange(nq)[:, None], np.arange(nkv)[None, :]
    if isinstance(offset, int):
        return cx.const(np.where(allowed(i + offset - j), 0.0, -np.inf), dt)
    diff = cx.op("sub", [cx.op("add", [cx.const(i, DType.I64), offset]), cx.const(j, DType.I64)])
    ok = allowed(diff)
    return cx.op("unsqueeze", [cx.op("where", [ok, cx.const(0, dt), cx.const(_NEG_INF, dt)])], axes=[1])


@converter("Attention")
def _attention(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    a = a + [None] * (7 - len(a))
    q, k, v, mask, past_k, past_v, nonpad = a[:7]
    three_d = q.type.rank == 3
    if three_d:
        q, k, v = _heads(cx, q, at["q_num_heads"]), _heads(cx, k, at["kv_num_heads"]), _heads(cx, v, at["kv_num_heads"])
    dt = q.type.dtype
    scale = at.get("scale", 1 / np.sqrt(q.type.shape[3]))
    root = cx.const(np.sqrt(scale), dt)  # like the spec: both Q and K scaled by sqrt(scale)
    present_k = cx.op("concat", [past_k, k], axis=2) if past_k is not None else k
    present_v = cx.op("concat", [past_v, v], axis=2) if past_v is not None else v
    nq, nkv = q.type.shape[2], present_k.type.shape[2]
    if not (isinstance(nq, int) and isinstance(nkv, int)):
        raise NotImplementedError("Attention over symbolic sequence lengths")
    if mask is not None and mask.type.shape[-1] != nkv:
        fill = 0.0 if mask.type.dtype == DType.BOOL else _NEG_INF
        pads = [0] * (2 * mask.type.rank)
        pads[2 * mask.type.rank - 1] = nkv - mask.type.shape[-1]
        mask = cx.op("pad", [mask], pads=pads, value=fill)
    bias = _bias_from_mask(cx, mask, dt) if mask is not None else None
    # where this query block sits among the keys: after the past, or per batch before nonpad_kv_seqlen
    offset: Any = past_k.type.shape[2] if past_k is not None else 0
    if nonpad is not None:
        lens = cx.op("reshape", [cx.op("cast", [nonpad], dtype=DType.I64)], shape=[-1, 1, 1])
        offset = cx.op("sub", [lens, cx.const(nq, DType.I64)])
    if at.get("is_causal", 0):
        causal = _offset_bias(cx, nq, nkv, offset, dt, lambda d: d >= 0 if not isinstance(d, Value) else
                              cx.op("ge", [d, cx.const(0, DType.I64)]))
        bias = cx.op("add", [bias, causal]) if bias is not None else causal
    left, right = at.get("left_window_size", -1), at.get("right_window_size", -1)
    if left >= 0 or right >= 0:
        def in_window(d: Any) -> Any:
            if not isinstance(d, Value):
                return (d <= left if left >= 0 else True) & (-d <= right if right >= 0 else True)
            ok = cx.op("le", [d, cx.const(left if left >= 0 else 2**62, DType.I64)])
            return cx.op("logical_and", [ok, cx.op("ge", [d, cx.const(-right if right >= 0 else -2**62, DType.I64)])])

        window = _offset_bias(cx, nq, nkv, offset, dt, in_window)
        bias = cx.op("add", [bias, window]) if bias is not None else window
    if nonpad is not None:
        keep = cx.op("lt", [cx.const(np.arange(nkv)[None, :], DType.I64), cx.op("reshape", [lens], shape=[-1, 1])])
        pad_bias = cx.op("where", [keep, cx.const(0, dt), cx.const(_NEG_INF, dt)])
        pad_bias = cx.op("reshape", [pad_bias], shape=[-1, 1, 1, nkv])
        bias = cx.op("add", [bias, pad_bias]) if bias is not None else pad_bias
    kk, vv = present_k, present_v
    hq, hk = q.type.shape[1], kk.type.shape[1]
    if hq != hk:  # grouped-query attention: repeat each KV head (h0, h0, h1, h1, ...)
        reps = hq // hk

        def repeat(t: Value) -> Value:
            b, h, s, d = t.type.shape
            e = cx.op("expand", [cx.op("unsqueeze", [t], axes=[2])], shape=[b, h, reps, s, d])
            return cx.op("reshape", [e], shape=[b, h * reps, s, d])

        kk, vv = repeat(kk), repeat(vv)
    qk = cx.op("matmul", [cx.op("mul", [q, root]),
                           cx.op("transpose", [cx.op("mul", [kk, root])], perm=[0, 1, 3, 2])])
    softcap = at.get("softcap")
    if softcap:
        cap = cx.const(softcap, dt)
        qk = cx.op("mul", [cx.op("tanh", [cx.op("div", [qk, cap], rounding_mode="none")]), cap])
    scores = cx.op("add", [qk, bias]) if bias is not None else qk
    mode = at.get("qk_matmul_output_mode", 0)
    qk_out = scores if mode == 2 else qk
    sm = scores
    if "softmax_precision" in at:
        from onnx import helper

        sm = cx.op("cast", [sm], dtype=DType.from_numpy(helper.tensor_dtype_to_np_dtype(at["softmax_precision"])))
    probs = cx.op("softmax", [sm], axis=-1)
    if bias is not None:  # a fully masked row attends to nothing: zeros, not NaN
        dead = cx.op("isinf", [cx.op("reduce_max", [bias], axes=[bias.type.rank - 1], keepdims=True)])
        probs = cx.op("where", [dead, cx.const(0, probs.type.dtype), probs])
    if mode == 3:
        qk_out = probs
    if probs.type.dtype != dt:
        probs = cx.op("cast", [probs], dtype=dt)
    y = cx.op("matmul", [probs, vv])
    if three_d:
        b, h, s, d = y.type.shape
        y = cx.op("reshape", [cx.op("transpose", [y], perm=[0, 2, 1, 3])], shape=[b, s, -1])
    if qk_out.type.dtype != dt:
        qk_out = cx.op("cast", [qk_out], dtype=dt)
    return y, present_k, present_v, qk_out


@converter("RotaryEmbedding")
def _rotary(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x, cos, sin = cx.tensor(a[0]), cx.tensor(a[1]), cx.tensor(a[2])
    pos = cx.tensor(a[3]) if len(a) > 3 and a[3] is not None else None
    shape = list(x.type.shape)
    if x.type.rank == 4:  # (B, H, S, D) → (B, S, H, D)
        t = cx.op("transpose", [x], perm=[0, 2, 1, 3])
    else:
        t = cx.op("reshape", [x], shape=[shape[0], shape[1], at["num_heads"], -1])
    d = t.type.shape[3]
    rot = at.get("rotary_embedding_dim", 0) or d
    if pos is not None:
        cos, sin = cx.op("gather", [cos, pos], axis=0), cx.op("gather", [sin, pos], axis=0)
    cos, sin = cx.op("unsqueeze", [cos], axes=[2]), cx.op("unsqueeze", [sin], axes=[2])
    x_rot = cx.op("slice", [t], starts=[0], ends=[rot], axes=[3])
    if at.get("interleaved", 0):
        x1 = cx.op("slice", [x_rot], starts=[0], ends=[rot], axes=[3], steps=[2])
        x2 = cx.op("slice", [x_rot], starts=[1], ends=[rot], axes=[3], steps=[2])
    else:
        x1, x2 = cx.op("split", [x_rot], axis=3, sizes=[rot // 2, rot // 2])
    real = cx.op("sub", [cx.op("mul", [cos, x1]), cx.op("mul", [sin, x2])])
    imag = cx.op("add", [cx.op("mul", [sin, x1]), cx.op("mul", [cos, x2])])
    if at.get("interleaved", 0):
        pair = cx.op("concat", [cx.op("unsqueeze", [real], axes=[4]), cx.op("unsqueeze", [imag], axes=[4])], axis=4)
        rotated = cx.op("reshape", [pair], shape=list(x_rot.type.shape))
    else:
        rotated = cx.op("concat", [real, imag], axis=3)
    if rot < d:
        rotated = cx.op("concat", [rotated, cx.op("slice", [t], starts=[rot], ends=[d], axes=[3])], axis=3)
    if x.type.rank == 4:
        return cx.op("transpose", [rotated], perm=[0, 2, 1, 3])
    return cx.op("reshape", [rotated], shape=shape)


# -- quantized matmul ----------------------------------------------------------------------------------------
@converter("QLinearMatMul")
def _qlinear_matmul(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    xa, sa, za, xb, sb, zb, sy, zy = (cx.tensor(v) for v in a)
    fa = cx.op("dequantize_linear", [xa, sa, za], axis=1)
    fb = cx.op("dequantize_linear", [xb, sb, zb], axis=1)
    return cx.op("quantize_linear", [cx.op("matmul", [fa, fb]), sy, zy], axis=1)


# -- windows: constants once the size is known ---------------------------------------------------------------
def _window(kind: str) -> Any:
    def conv(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
        from onnx import helper

        at = attrs_of(n)
        size = int(need(cx, a[0], f"{n.op_type} size")[0])
        periodic = at.get("periodic", 1)
        denom = size if periodic else size - 1
        k = np.arange(size, dtype=np.float64)
        x = 2 * np.pi * k / max(denom, 1)
        w = {"hann": lambda: 0.5 - 0.5 * np.cos(x),
             "hamming": lambda: 25 / 46 - (21 / 46) * np.cos(x),
             "blackman": lambda: 0.42 - 0.5 * np.cos(x) + 0.08 * np.cos(2 * x)}[kind]()
        dtype = helper.tensor_dtype_to_np_dtype(at.get("output_datatype", 1))
        return cx.graph.add_constant(w.astype(dtype))

    return conv


converter("HannWindow")(_window("hann"))
converter("HammingWindow")(_window("hamming"))
converter("BlackmanWindow")(_window("blackman"))


# -- integer bit ops, scans, einsum, scatter, transposed convolution -----------------------------------------
for _ox, _ir in {"BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor",
                 "BitwiseNot": "bitwise_not"}.items():
    converter(_ox)(lambda cx, n, a, _ir=_ir: cx.op(_ir, a))
converter("BitShift")(lambda cx, n, a: cx.op("shift", a, left=attrs_of(n)["direction"] == "LEFT"))
converter("Einsum")(lambda cx, n, a: cx.op("einsum", a, equation=attrs_of(n)["equation"]))


@converter("BitCast")
def _bitcast(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    from onnx import helper

    return cx.op("bitcast", a, dtype=DType.from_numpy(helper.tensor_dtype_to_np_dtype(attrs_of(n)["to"])))


@converter("CumProd")
def _cumprod(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x = cx.tensor(a[0])
    axis = int(need(cx, a[1], "CumProd axis")[0]) % x.type.rank
    size = x.type.shape[axis]
    if not isinstance(size, int):
        raise NotImplementedError("CumProd along a symbolic dim")
    flip = cx.const(np.arange(size - 1, -1, -1), DType.I64) if at.get("reverse", 0) else None
    if flip is not None:
        x = cx.op("gather", [x, flip], axis=axis)
    if at.get("exclusive", 0):  # shift right by one, a 1 coming in
        ones_shape = list(x.type.shape)
        ones_shape[axis] = 1
        head = cx.op("full", [], shape=ones_shape, value=1.0, dtype=x.type.dtype)
        x = cx.op("concat", [head, cx.op("slice", [x], starts=[0], ends=[size - 1], axes=[axis])], axis=axis)
    y = cx.op("cumprod", [x], axis=axis)
    return cx.op("gather", [y, flip], axis=axis) if flip is not None else y


def _wrap_indices(cx: ConversionContext, idx: Value, size: Value) -> Value:
    """ONNX indices may count from the end; the IR's scatter/gather_elements take them non-negative."""
    if idx.const is not None and not (idx.const < 0).any():
        return idx
    return cx.op("where", [cx.op("lt", [idx, cx.const(0, idx.type.dtype)]), cx.op("add", [idx, size]), idx])


@converter("ScatterElements", "Scatter")
def _scatter_elements(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x, idx = cx.tensor(a[0]), cx.tensor(a[1])
    axis = at.get("axis", 0) % x.type.rank
    if not isinstance(x.type.shape[axis], int):
        raise NotImplementedError("ScatterElements along a symbolic dim")
    idx = _wrap_indices(cx, idx, cx.const(x.type.shape[axis], idx.type.dtype))
    return cx.op("scatter_elements", [x, idx, a[2]], axis=axis, reduction=at.get("reduction", "none"))


@converter("ScatterND")
def _scatter_nd(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    x, idx = cx.tensor(a[0]), cx.tensor(a[1])
    k = idx.type.shape[-1]
    if not isinstance(k, int):
        raise NotImplementedError("ScatterND with a symbolic index depth")
    lead = x.type.shape[:k]
    # negative indices count from the end of each axis: its size, from the bound symbols where it is symbolic
    sizes = cx.const(np.array(lead), idx.type.dtype) if all(isinstance(d, int) for d in lead) else cx.op(
        "shape_tensor", [], values=list(lead), dtype=idx.type.dtype)
    idx = _wrap_indices(cx, idx, sizes)
    return cx.op("scatter_nd", [x, idx, a[2]], reduction=attrs_of(n).get("reduction", "none"))


@converter("ConvTranspose")
def _conv_transpose(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    x, w = cx.tensor(a[0]), cx.tensor(a[1])
    nd = w.type.rank - 2
    kernel = list(at.get("kernel_shape", w.type.shape[2:]))
    strides, dil = list(at.get("strides", [1] * nd)), list(at.get("dilations", [1] * nd))
    extra = list(at.get("output_padding", [0] * nd))
    pads = list(at.get("pads", [0] * 2 * nd))
    sizes = x.type.shape[2:]
    mode = at.get("auto_pad", "NOTSET")
    want = at.get("output_shape")
    if want is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
        if not all(isinstance(d, int) for d in sizes):
            raise NotImplementedError("ConvTranspose output_shape/auto_pad on symbolic dims")
        want = list(want)[-nd:] if want is not None else [d * s for d, s in zip(sizes, strides)]
        total = [s * (d - 1) + e + (k - 1) * dl + 1 - o
                 for d, s, e, k, dl, o in zip(sizes, strides, extra, kernel, dil, want)]
        lower = mode == "SAME_LOWER"
        begin = [t - t // 2 if lower else t // 2 for t in total]
        pads = begin + [t - b for t, b in zip(total, begin)]
        if any(t < 0 for t in total):
            extra = [e - min(t, 0) for e, t in zip(extra, total)]
            pads = [max(p, 0) for p in pads]
    elif mode == "VALID":
        pads = [0] * 2 * nd
    return cx.op("conv_transpose", [v for v in a if v is not None], strides=strides, pads=pads, dilations=dil,
                  output_padding=extra if any(extra) else None, groups=at.get("group", 1))


@converter("GridSample")
def _grid_sample(cx: ConversionContext, n: Any, a: list[Any]) -> Any:
    at = attrs_of(n)
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(at.get("mode", "linear"), at.get("mode", "linear"))
    return cx.op("grid_sample", a, mode=mode, padding_mode=at.get("padding_mode", "zeros"),
                  align_corners=bool(at.get("align_corners", 0)))
